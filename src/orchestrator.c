/*
 * orchestrator.c - one generation: system prompt, cache, quota, single
 * flight, upstream, store, commit, usage.  Each step's failure undoes the
 * steps before it (see the header's promise).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "settings.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "experiment.h"
#include "orchestrator.h"
#include "upstream.h"
#include "usage.h"


const char *orch_api_name(int api)
{
	return api == ORCH_API_OPENAI ? "openai" : "generate";
}

int orch_model_ok(const char *m, size_t len)
{
	if (len == 0 || len > ORCH_MODEL_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = m[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == ':' || c == '/'))
			return 0;
	}
	return 1;
}

void orch_default_key(const char *task, const char *model, const char *spk, size_t spk_len,
		      const char *prompt, size_t prompt_len, char out[65])
{
	/* a JSON array makes the parts unambiguous */
	json_object *a = json_object_new_array();
	size_t len = 0;
	const char *s;

	json_object_array_add(a, json_object_new_string(task));
	json_object_array_add(a, json_object_new_string(model));
	json_object_array_add(a, spk ? json_object_new_string_len(spk, (int)spk_len) : NULL);
	json_object_array_add(a, json_object_new_string_len(prompt, (int)prompt_len));
	s = json_object_to_json_string_length(a, JSON_C_TO_STRING_PLAIN, &len);
	qc_sha256_hex(s ? s : "", s ? len : 0, out);
	json_object_put(a);
}

void gen_result_release(struct gen_result *r)
{
	free(r->content);
	r->content = NULL;
	free(r->message);
	r->message = NULL;
}

void orch_test_sleep(long long ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long long chars(const char *s, size_t len)
{
	long long n = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

static void event(const struct orch *o, const char *outcome, long long saved_tokens,
		  long long saved_micro)
{
	const struct auth_user *u = &o->user;
	const struct gen_request *in = &o->in;
	const struct gen_result *r = &o->r;
	struct usage_event ev;

	memset(&ev, 0, sizeof ev);
	ev.user_id = u->id;
	qc_copy_utf8(ev.plan, sizeof ev.plan, u->plan);
	if (in->warm_for) {   /* the warming spend (sql/015): task 'warm:TASK' */
		char t[80];
		snprintf(t, sizeof t, "warm:%s", in->task);
		qc_copy_utf8(ev.task, sizeof ev.task, t);
	} else {
		qc_copy_utf8(ev.task, sizeof ev.task, in->task);
	}
	qc_copy_utf8(ev.model, sizeof ev.model, r->model);
	ev.prompt_tokens = r->cached ? 0 : r->prompt_tokens;
	ev.completion_tokens = r->cached ? 0 : r->completion_tokens;
	ev.cost_micro = r->cached ? 0 : r->cost_micro;
	ev.saved_tokens = saved_tokens;
	ev.saved_micro = saved_micro;
	ev.cached = r->cached;
	ev.outcome = outcome;
	ev.latency_ms = r->latency_ms;
	ev.created_at = o->now;
	ev.experiment_id = o->exp_id;
	ev.arm = exp_arm_name((enum exp_arm)o->exp_arm);
	ev.api = orch_api_name(in->api);
	ev.streamed = in->stream;
	ev.tier = r->cached ? cache_tier_name(in->tier) : NULL;
	usage_note(&ev);
}

/* Serve r from a cache entry.  What the entry's generation cost is
 * "saved": the columns only the billing transaction writes, never the
 * metadata a user can PUT (0 for a user's own entries). */
static void serve_hit(struct cache_entry *e, struct gen_result *r, long long *saved_tokens,
		      long long *saved_micro)
{
	*saved_tokens = e->gen_tokens > 0 ? e->gen_tokens : 0;
	*saved_micro = e->gen_cost_micro > 0 ? e->gen_cost_micro : 0;
	r->content = e->value;
	r->content_len = e->value_len;
	e->value = NULL;
	r->cached = 1;
	r->prompt_tokens = r->completion_tokens = r->cost_micro = 0;
}

/* The flight row of fkey: 1 live (another leader), 0 absent or lapsed, -1 error. */
static int flight_live(struct db *db, const char *fkey, time_t now)
{
	static const char sql[] = "SELECT expires_at >= ? FROM generate_flights WHERE flight_key = ?";
	struct db_val p[2] = { DB_INT(now), DB_STR(fkey) };
	struct db_rows *r = NULL;
	int n;

	if (db_query(db, sql, p, 2, &r) != QC_OK)
		return -1;
	n = r->nrows > 0 && db_cell_ll(r, 0, 0) == 1;
	db_rows_free(r);
	return n;
}

static void flight_drop(struct db *db, const char *fkey, const char *owner)
{
	static const char sql[] = "DELETE FROM generate_flights WHERE flight_key = ? AND owner = ?";
	struct db_val p[2] = { DB_STR(fkey), DB_STR(owner) };

	if (db_exec(db, sql, p, 2, NULL) != QC_OK)
		log_warn("orch", "could not drop a flight row; it expires by itself");
}

static void settle(struct db *db, long long user, const char *rid, long long actual, time_t now)
{
	char state[16];
	enum qc_err rc = quota_settle(db, user, rid, actual, now, state, NULL);

	if (rc != QC_OK)
		log_warn("orch", "settling reservation failed (%s, %s); it expires by itself",
			 qc_strerror(rc), state);
}

/* The configured saving of a hit of tier in micro-dollars; a bad or
 * negative setting counts as 0, never as a negative saving. */
static long long saving_micro(const struct config *cfg, enum cache_tier t)
{
	long long v = cache_parse_micro(t == CACHE_SYSTEM ? cfg->cache_saving_system
					: t == CACHE_CONTENT ? cfg->cache_saving_content
					: cfg->cache_saving_session);
	return v < 0 ? 0 : v;
}

/* End the generation with rc; releases what is held.  Always ORCH_DONE. */
static enum orch_step done(struct orch *o, struct db *db, enum qc_err rc, const char *outcome)
{
	if (o->rid[0] && db)
		settle(db, o->user.id, o->rid, -1, o->now);
	o->rid[0] = 0;
	if (o->leading && db)
		flight_drop(db, o->fkey, o->owner);
	o->leading = 0;
	o->rc = rc;
	o->r.latency_ms = qc_mono_ms() - o->t0_ms;
	if (outcome)
		event(o, outcome, 0, 0);
	return ORCH_DONE;
}

/* A hit (first look, or a waiter's answer landed): bill 0, count the saving. */
static enum orch_step hit(struct orch *o, struct cache_entry *e)
{
	long long saved_t, saved_m;

	cache_note_hit(e->id, o->user.id, o->in.tier, o->user.plan, o->now, saving_micro(o->cfg, o->in.tier));
	snprintf(o->r.finish_reason, sizeof o->r.finish_reason, "stop");
	if (e->gen_tokens > 0 && e->metadata) {   /* our own metadata: how the answer ended */
		json_object *m = json_tokener_parse(e->metadata), *fr;
		if (m && json_object_object_get_ex(m, "finish_reason", &fr) && json_object_is_type(fr, json_type_string))
			snprintf(o->r.finish_reason, sizeof o->r.finish_reason, "%s", json_object_get_string(fr));
		json_object_put(m);
	}
	serve_hit(e, &o->r, &saved_t, &saved_m);
	cache_entry_release(e);
	o->rc = QC_OK;
	o->r.latency_ms = qc_mono_ms() - o->t0_ms;
	event(o, "cached", saved_t, saved_m);
	return ORCH_DONE;
}

/* We lead: build the messages for the upstream. */
static enum orch_step call(struct orch *o)
{
	json_object *m;

	if (o->in.messages) {
		o->msgs = json_object_get(o->in.messages);
		return ORCH_CALL;
	}
	if (!(o->msgs = json_object_new_array()))
		return done(o, NULL, QC_ENOMEM, NULL);
	if (o->sys.value) {
		m = json_object_new_object();
		json_object_object_add(m, "role", json_object_new_string("system"));
		json_object_object_add(m, "content", json_object_new_string_len(o->sys.value, (int)o->sys.value_len));
		json_object_array_add(o->msgs, m);
	}
	m = json_object_new_object();
	json_object_object_add(m, "role", json_object_new_string("user"));
	json_object_object_add(m, "content", json_object_new_string_len(o->in.prompt, (int)o->in.prompt_len));
	json_object_array_add(o->msgs, m);
	return ORCH_CALL;
}

/* Reserve for the call, and with flight take its row in the same
 * transaction; o->leading says who leads.  Nothing is held on failure, nor
 * when another request leads the flight (sql/018). */
static enum qc_err reserve(struct orch *o, struct db *db, time_t now, int flight)
{
	time_t exp;
	enum qc_err rc = quota_reserve_flight(db, o->user.id, o->in.task, o->min, now,
					      o->cfg->reservation_ttl, 1, flight ? o->fkey : NULL,
					      flight ? o->owner : NULL, o->hold_s, o->rid, &exp,
					      &o->r.quota, &o->leading);
	if (rc != QC_OK)
		o->rid[0] = 0;
	return rc;
}

enum orch_step orch_begin(struct orch *o, struct db *db, const struct config *cfg,
			  const struct auth_user *user, time_t now, const struct gen_request *in)
{
	struct cache_entry e = { 0 };
	enum qc_err rc;
	int flight;

	memset(o, 0, sizeof *o);
	o->cfg = cfg;
	o->user = *user;
	o->in = *in;
	o->now = now;
	o->t0_ms = qc_mono_ms();
	/* a dead leader's row lapses 2 s after its call would have timed out */
	o->hold_s = cfg->upstream_timeout_ms / 1000 + 2;
	o->model = in->model ? in->model : cfg->upstream_model;
	o->key = in->cache_key;
	o->klen = in->ck_len;
	o->r.tier = in->tier;
	snprintf(o->r.model, sizeof o->r.model, "%s", o->model);
	if (!o->key && in->key[0]) {
		memcpy(o->r.cache_key, in->key, sizeof o->r.cache_key);
		o->key = o->r.cache_key;
		o->klen = strlen(o->key);
	}
	if (!o->key) {
		orch_default_key(in->task, o->model, in->system_prompt_key, in->spk_len, in->prompt,
				 in->prompt_len, o->r.cache_key);
		o->key = o->r.cache_key;
		o->klen = 64;
	}

	/* 0. an A/B experiment's control arm goes without the cache (SPEC §13) */
	{
		struct exp_running x;
		if (!in->warm_for && exp_running(db, &x) == QC_OK && x.id) {
			o->exp_id = x.id;
			o->exp_arm = (int)exp_arm_of(user->id, x.name, x.control_pct);
		}
	}
	/* 1. the cache: a hit costs one query */
	if (in->bypass || o->exp_arm == EXP_CONTROL)
		o->caches = 0;
	else if ((o->caches = cache_plan_caches(db, user->plan, in->tier, now)) < 0)
		return done(o, NULL, QC_EDBDOWN, NULL);
	if (in->warm_for) {
		/* warming: only for a plan that caches the tier; next-task warming
		 * only when the user has no such entry yet (a refresh replaces it) */
		if (!o->caches)
			return done(o, NULL, QC_EINPUT, NULL);
		if (in->warm_kind == ORCH_WARM_NEXT) {
			rc = cache_get(db, in->warm_for, in->tier, o->key, o->klen, now, &e);
			if (rc == QC_OK) {
				cache_entry_release(&e);
				o->r.cached = 1;
				return done(o, NULL, QC_OK, NULL);
			}
			if (rc != QC_ENOTFOUND)
				return done(o, NULL, rc, NULL);
		}
	} else if (o->caches) {
		rc = cache_get(db, user->id, in->tier, o->key, o->klen, now, &e);
		if (rc == QC_OK)
			return hit(o, &e);
		if (rc != QC_ENOTFOUND)
			return done(o, NULL, rc, NULL);
	}
	if (!in->bypass && !in->warm_for && o->exp_arm != EXP_CONTROL)
		cache_note_miss(user->id, in->tier, user->plan, now);

	/* 2. the system prompt (a miss only) must exist before anything is reserved */
	if (in->system_prompt_key) {
		rc = cache_get(db, 0, CACHE_SYSTEM, in->system_prompt_key, in->spk_len, now, &o->sys);
		if (rc == QC_ENOTFOUND) {
			snprintf(o->r.error, sizeof o->r.error, "field 'system_prompt_key' names no system-tier entry");
			return done(o, NULL, QC_EINPUT, NULL);
		}
		if (rc != QC_OK)
			return done(o, NULL, rc, NULL);
		if (!in->warm_for)
			cache_note_hit(o->sys.id, user->id, CACHE_SYSTEM, user->plan, now,
				       saving_micro(cfg, CACHE_SYSTEM));
	}

	/* 3. quota, and for cacheable plans the single-flight row of this
	 * (user, tier, key) taken in the same transaction */
	o->min = quota_prompt_min(in->prompt, in->prompt_len, in->max_tokens) +
		 (o->sys.value ? chars(o->sys.value, o->sys.value_len) / 4 : 0);
	flight = o->caches;
	if (flight) {
		/* a warming call leads the flight of the user it is for: their own
		 * identical request meanwhile waits for its answer */
		long long fu = in->warm_for ? in->warm_for : user->id;
		char buf[400];
		int n = snprintf(buf, sizeof buf, "%lld|%s|%s|", fu, cache_tier_name(in->tier), cache_region(fu));
		memcpy(buf + n, o->key, o->klen);
		qc_sha256_hex(buf, (size_t)n + o->klen, o->fkey);
		/* the owner names the process first (8 hex), so operators can see
		 * which worker leads a flight */
		snprintf(o->owner, sizeof o->owner, "%08x", (unsigned)getpid());
		if (qc_random_hex(o->owner + 8, 12) < 0)
			return done(o, NULL, QC_EIO, NULL);
	}
	return ORCH_RESERVE;   /* orch_reserve, with other misses when it can */
}

/* After the reserve of orch_begin's step 3 (rc its outcome). */
static enum orch_step reserved(struct orch *o, struct db *db, enum qc_err rc)
{
	int flight = o->caches;

	if (rc != QC_OK)
		return done(o, NULL, rc, rc == QC_EQUOTA ? "quota" : NULL);
	if (flight && !o->leading && o->in.warm_for) {
		/* the user's own identical request is calling: nothing to warm */
		o->r.cached = 1;
		return done(o, db, QC_OK, NULL);
	}
	if (flight && !o->leading) {
		/* 4. an identical miss is already calling the upstream: wait for
		 * its answer; past the lapse of its row (and a second), give up */
		o->wait_deadline_ms = o->t0_ms + (o->hold_s + 1) * 1000;
		metrics_count("qc_flight_waits_total", "", 1);
		return ORCH_WAIT;
	}
	return call(o);
}

/* Misses that can be reserved for in one transaction with os[0]: the same
 * user and second, not warming, no flight key twice. */
int orch_reserve_with(const struct orch *a, const struct orch *b)
{
	return a->user.id == b->user.id && a->now == b->now && !a->in.warm_for && !b->in.warm_for &&
	       !(a->caches && b->caches && strcmp(a->fkey, b->fkey) == 0);
}

/* The shared reserve transaction; test builds lose its connection where a
 * miss's X-QC-Test-Stall says (orchestrator.h). */
static enum qc_err reserve_batch(struct orch **os, unsigned n, struct db *db,
				 struct quota_batch_item *it, int *taken)
{
	const struct orch *o = os[0];
	enum qc_err rc;
	int point = ORCH_STALL_NONE;

#ifdef QC_TEST_CLOCK
	for (unsigned k = 0; k < n; k++)
		if (os[k]->in.test_stall == ORCH_STALL_RESERVE_LOST_BEFORE ||
		    os[k]->in.test_stall == ORCH_STALL_RESERVE_LOST_AFTER)
			point = os[k]->in.test_stall;
	if (point == ORCH_STALL_RESERVE_LOST_BEFORE) {
		db_drop(db);
		*taken = 0;
		return QC_EDBDOWN;
	}
#endif
	rc = quota_reserve_batch(db, o->user.id, o->now, o->cfg->reservation_ttl, o->hold_s, it, n, taken);
	if (point == ORCH_STALL_RESERVE_LOST_AFTER && rc == QC_OK && *taken) {
		db_drop(db);   /* it committed; its answer is lost */
		*taken = 0;
		return QC_EDBDOWN;
	}
	return rc;
}

void orch_reserve(struct orch **os, unsigned n, struct db *db, enum orch_step *steps)
{
	struct quota_batch_item it[QUOTA_BATCH_MAX];
	int alone = 0;
	int taken = 0;
	enum qc_err rc = QC_OK;

	for (unsigned k = 1; k < n && n <= QUOTA_BATCH_MAX; k++)
		for (unsigned i = 0; i < k; i++)
			if (!orch_reserve_with(os[i], os[k]))
				alone = 1;   /* not one user's misses together: one by one */
	if (n >= 2 && n <= QUOTA_BATCH_MAX && !alone) {
		for (unsigned k = 0; k < n; k++) {
			memset(&it[k], 0, sizeof it[k]);
			it[k].task = os[k]->in.task;
			it[k].min = os[k]->min;
			it[k].flight = os[k]->caches ? os[k]->fkey : NULL;
			it[k].owner = os[k]->caches ? os[k]->owner : NULL;
		}
		rc = reserve_batch(os, n, db, it, &taken);
		metrics_count("qc_reserved_together_total",
			      taken ? "outcome=\"together\"" : rc == QC_EDBDOWN ? "outcome=\"lost\"" :
			      "outcome=\"declined\"", n);
		if (taken)
			metrics_count("qc_batches_total", "kind=\"reserve\"", 1);
	}
	for (unsigned k = 0; k < n; k++) {
		struct orch *o = os[k];
		if (taken) {
			memcpy(o->rid, it[k].id, sizeof o->rid);
			o->r.quota = it[k].st;
			o->leading = o->caches;
			steps[k] = reserved(o, db, QC_OK);
		} else if (rc == QC_EDBDOWN) {
			/* lost with the batch: whatever landed lapses (as one reserve's) */
			steps[k] = reserved(o, db, rc);
		} else {
			steps[k] = reserved(o, db, reserve(o, db, o->now, o->caches));
		}
	}
}

enum orch_step orch_recheck(struct orch *o, struct db *db)
{
	struct cache_entry e = { 0 };
	enum qc_err rc;
	int live;

	metrics_count("qc_flight_checks_total", "", 1);
	rc = cache_get(db, o->user.id, o->in.tier, o->key, o->klen, o->now, &e);
	if (rc == QC_OK)
		return hit(o, &e);
	if (rc != QC_ENOTFOUND)
		return done(o, db, rc, NULL);
	if ((live = flight_live(db, o->fkey, time(NULL))) < 0)
		return done(o, db, QC_EDBDOWN, NULL);
	if (!live) {
		/* the leader's answer and the end of its flight commit together:
		 * if the flight ended after the read above, the answer is there now */
		rc = cache_get(db, o->user.id, o->in.tier, o->key, o->klen, o->now, &e);
		if (rc == QC_OK)
			return hit(o, &e);
		if (rc != QC_ENOTFOUND)
			return done(o, db, rc, NULL);
		/* the leader finished without storing, failed or died: lead,
		 * reserving for the call now (a waiter holds nothing) */
		if ((rc = reserve(o, db, time(NULL), 1)) != QC_OK)
			return done(o, NULL, rc, rc == QC_EQUOTA ? "quota" : NULL);
		if (o->leading)
			return call(o);
	}
	if (qc_mono_ms() >= o->wait_deadline_ms) {
		snprintf(o->r.error, sizeof o->r.error,
			 "an identical request is still running; gave up waiting for it");
		return done(o, db, QC_EBUSY, "timeout");
	}
	return ORCH_WAIT;
}

/* On a plan that warms (sql/015), an entry keeps what regenerating it needs:
 * the prompt, the system prompt's key and max_tokens (not for OpenAI-style
 * messages, which are never refreshed). */
static void add_regen(struct orch *o, struct db *db, json_object *meta)
{
	long long budget = 0, hits, pct;
	json_object *g;

	if (o->in.messages || !o->in.prompt ||
	    cache_plan_warming(db, o->user.plan, o->now, &budget, &hits, &pct) <= 0 || budget <= 0)
		return;
	g = json_object_new_object();
	json_object_object_add(g, "prompt", json_object_new_string_len(o->in.prompt, (int)o->in.prompt_len));
	if (o->in.system_prompt_key)
		json_object_object_add(g, "system_prompt_key",
				       json_object_new_string_len(o->in.system_prompt_key, (int)o->in.spk_len));
	if (o->in.max_tokens)
		json_object_object_add(g, "max_tokens", json_object_new_int64(o->in.max_tokens));
	json_object_object_add(g, "model", json_object_new_string(o->model));
	json_object_object_add(meta, "regen", g);
	if (o->in.warm_for)
		json_object_object_add(meta, "warmed", json_object_new_string(
					       o->in.warm_kind == ORCH_WARM_REFRESH ? "refresh" : "next"));
}

/* The metadata stored with an answer. */
static json_object *store_meta(struct orch *o, struct db *db)
{
	json_object *meta = json_object_new_object();

	json_object_object_add(meta, "task", json_object_new_string(o->in.task));
	json_object_object_add(meta, "model", json_object_new_string(o->r.model));
	json_object_object_add(meta, "prompt_tokens", json_object_new_int64(o->r.prompt_tokens));
	json_object_object_add(meta, "completion_tokens", json_object_new_int64(o->r.completion_tokens));
	json_object_object_add(meta, "finish_reason", json_object_new_string(o->r.finish_reason));
	add_regen(o, db, meta);
	return meta;
}

/* The end of a warming call (sql/015_warming.sql): settle the warming user's
 * reservation, store the answer for the user it is for, record the spend. */
static enum qc_err finish_warming(struct orch *o, struct db *db, const struct upstream_result *ur,
				  int estimated, int store, const char *ms, size_t mlen)
{
	static const char sql[] =
		"CALL qc_finish_warming(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	char plan[33], task[65], model[65];
	struct db_rows *r = NULL;
	enum qc_err rc;

	qc_copy_utf8(plan, sizeof plan, o->user.plan);
	qc_copy_utf8(task, sizeof task, o->in.task);
	qc_copy_utf8(model, sizeof model, o->r.model);
	o->r.latency_ms = qc_mono_ms() - o->t0_ms;
	{
		struct db_val p[19] = {
			DB_STR(o->rid), DB_INT(o->user.id), DB_INT(o->now),
			DB_INT(o->r.prompt_tokens), DB_INT(o->r.completion_tokens), DB_INT(o->r.cost_micro),
			DB_INT(store ? 1 : 0), DB_STR(cache_tier_name(o->in.tier)),
			DB_BLOB(o->key, o->klen), DB_BLOB(ur->content, ur->content_len),
			ms ? DB_BLOB(ms, mlen) : DB_NULLV, DB_INT(o->cfg->cache_user_max_bytes),
			DB_STR(plan), DB_STR(task), DB_STR(model), DB_INT(o->r.latency_ms),
			DB_INT(estimated), DB_STR(cache_region(o->in.warm_for)), DB_INT(o->in.warm_for),
		};
		rc = db_query(db, sql, p, 19, &r);
	}
	if (rc != QC_OK)
		return rc;
	db_rows_free(r);
	o->rid[0] = 0;
	return QC_OK;
}

/* The billing transaction of a fresh answer (sql/007_billing.sql). */
static enum qc_err finish_tx(struct orch *o, struct db *db, const struct upstream_result *ur,
			     int estimated, int store, const char *outcome)
{
	static const char sql[] =
		"CALL qc_finish_generation(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	char plan[33], task[65], model[65];
	json_object *meta = NULL;
	const char *ms = NULL;
	size_t mlen = 0;
	struct db_rows *r = NULL;
	enum qc_err rc;

	if (store) {
		meta = store_meta(o, db);
		ms = json_object_to_json_string_length(meta, JSON_C_TO_STRING_PLAIN, &mlen);
	}
	if (o->in.warm_for) {
		rc = finish_warming(o, db, ur, estimated, store, ms, mlen);
		json_object_put(meta);
		return rc;
	}
	qc_copy_utf8(plan, sizeof plan, o->user.plan);
	qc_copy_utf8(task, sizeof task, o->in.task);
	qc_copy_utf8(model, sizeof model, o->r.model);
	o->r.latency_ms = qc_mono_ms() - o->t0_ms;
	{
		const char *arm = exp_arm_name((enum exp_arm)o->exp_arm);
		struct db_val p[25] = {
			DB_STR(o->rid), DB_INT(o->user.id), DB_INT(o->now),
			DB_INT(o->r.prompt_tokens), DB_INT(o->r.completion_tokens), DB_INT(o->r.cost_micro),
			DB_INT(store ? 1 : 0), DB_STR(cache_tier_name(o->in.tier)),
			DB_BLOB(o->key, o->klen), DB_BLOB(ur->content, ur->content_len),
			ms ? DB_BLOB(ms, mlen) : DB_NULLV, DB_INT(o->cfg->cache_user_max_bytes),
			DB_STR(plan), DB_STR(task), DB_STR(model), DB_INT(o->r.latency_ms),
			DB_INT(estimated), o->leading ? DB_STR(o->fkey) : DB_NULLV,
			o->leading ? DB_STR(o->owner) : DB_NULLV,
			DB_STR(outcome), DB_STR(orch_api_name(o->in.api)),
			DB_INT(o->in.stream ? 1 : 0),
			o->exp_id ? DB_INT(o->exp_id) : DB_NULLV, arm ? DB_STR(arm) : DB_NULLV,
			DB_STR(cache_region(o->user.id)),
		};
		rc = db_query(db, sql, p, 25, &r);
	}
	json_object_put(meta);
	if (rc != QC_OK)
		return rc;
	if (r->nrows != 1) {
		db_rows_free(r);
		return QC_EDB;
	}
	if (strcmp(db_cell(r, 0, 0), "ok") != 0)
		log_warn("orch", "billing settled reservation %s as '%s' (the tokens are recorded)",
			 o->rid, db_cell(r, 0, 0));
	if (strcmp(db_cell(r, 0, 1), "full") == 0)
		log_info("orch", "user %lld cache is full; answer not stored", o->user.id);
	db_rows_free(r);
	o->rid[0] = 0;
	o->leading = 0;
	return QC_OK;
}

/* The first billing transaction of an answer; test builds lose its
 * connection where X-QC-Test-Stall says (orchestrator.h). */
static enum qc_err finish_first(struct orch *o, struct db *db, const struct upstream_result *ur,
				int store)
{
#ifdef QC_TEST_CLOCK
	int point = o->in.test_stall;

	if (point == ORCH_STALL_BILLING_LOST_BEFORE || point == ORCH_STALL_BILLING_LOST_AFTER) {
		char rid[sizeof o->rid];
		int leading = o->leading;

		o->in.test_stall = ORCH_STALL_NONE;
		memcpy(rid, o->rid, sizeof rid);
		if (point == ORCH_STALL_BILLING_LOST_AFTER &&
		    finish_tx(o, db, ur, !ur->has_usage, store, "ok") != QC_OK)
			return QC_EDB;
		memcpy(o->rid, rid, sizeof rid);   /* as if its answer never came */
		o->leading = leading;
		db_drop(db);
		return QC_EDBDOWN;
	}
#endif
	return finish_tx(o, db, ur, !ur->has_usage, store, "ok");
}

/* After a lost connection at the billing commit: 1 if the generation's
 * reservation was committed (the transaction landed), 0 if it is still
 * active or expired (it did not: nothing of it is written), -1 if that cannot be told. */
static int finish_landed(struct orch *o, struct db *db)
{
	static const char sql[] =
		"SELECT state FROM quota_reservations WHERE id = ? AND user_id = ?";
	struct db_val p[2] = { DB_STR(o->rid), DB_INT(o->user.id) };
	struct db_rows *r = NULL;
	int st = -1;

	if (db_query_synced(db, sql, p, 2, &r) != QC_OK)
		return -1;
	if (r->nrows == 1) {
		if (strcmp(db_cell(r, 0, 0), "committed") == 0)
			st = 1;
		else if (strcmp(db_cell(r, 0, 0), "active") == 0 ||
			 strcmp(db_cell(r, 0, 0), "expired") == 0)
			st = 0;
	}
	db_rows_free(r);
	return st;
}

/* Cost-aware plans (SPEC §13): 1 if the answer is worth storing.  A plan
 * that is not cost-aware, or a read that fails, stores as before. */
static int worth_storing(struct orch *o, struct db *db, const struct upstream_result *ur)
{
	long long ttl = 0, hits, stores;
	int cost_aware = 0;
	unsigned long h = 5381;
	enum cache_worth w;
	char label[32];

	if (cache_plan_policy(db, o->user.plan, o->in.tier, o->now, &ttl, &cost_aware) <= 0 ||
	    !cost_aware)
		return 1;
	if (cache_task_value(db, o->in.task, o->in.tier, o->now, o->cfg->cache_value_window_s,
			     &hits, &stores) < 0)
		return 1;
	for (size_t i = 0; i < o->klen; i++)
		h = h * 33 + (unsigned char)o->key[i];
	w = cache_store_worth(o->r.cost_micro, hits, stores,
			      (long long)ur->content_len + 256, ttl,
			      cache_parse_micro(o->cfg->cache_storage_price), h);
	snprintf(label, sizeof label, "decision=\"%s\"", cache_worth_name(w));
	metrics_count("qc_cache_store_decisions_total", label, 1);
	return w != CACHE_WORTH_SKIP;
}

/* Tokens and cost of the answer in ur: the upstream's usage, else
 * estimated from the text (4 characters a token). */
static void price(struct orch *o, const struct upstream_result *ur)
{
	if (ur->has_usage) {
		o->r.prompt_tokens = ur->prompt_tokens;
		o->r.completion_tokens = ur->completion_tokens;
	} else {
		o->r.prompt_tokens = (chars(o->in.prompt, o->in.prompt_len) +
				      (o->sys.value ? chars(o->sys.value, o->sys.value_len) : 0) + 3) / 4;
		o->r.completion_tokens = (chars(ur->content ? ur->content : "", ur->content_len) + 3) / 4;
	}
	/* priced as the configured model that was asked for (whatever name
	 * the upstream answers with) */
	o->r.cost_micro = upstream_cost_micro(o->cfg->upstream_prices, o->model, o->r.prompt_tokens,
					      o->r.completion_tokens);
}

/* The first part of finishing an answer: 1 when the answer came back well and is
 * to be billed (*store: whether it is stored too), else 0 with *step set. */
static int finish_start(struct orch *o, struct db *db, enum qc_err uprc,
			struct upstream_result *ur, double up_secs, int *store, enum orch_step *step)
{
	const char *fr = ur->finish_reason;
	enum qc_err rc;

	o->r.upstream_calls = ur->attempts;
	if (ur->model[0])
		snprintf(o->r.model, sizeof o->r.model, "%s", ur->model);
	snprintf(o->r.finish_reason, sizeof o->r.finish_reason, "%s", fr[0] ? fr : "stop");
	if (uprc != QC_OK && ur->streamed > 0) {
		/* the stream broke after chunks went out: bill what was streamed
		 * (the usage if it came), cache nothing */
		price(o, ur);
		metrics_upstream(uprc == QC_ETIMEOUT ? "timeout" : "upstream_error", ur->attempts, up_secs,
				 o->r.prompt_tokens, o->r.completion_tokens, o->r.cost_micro);
		snprintf(o->r.error, sizeof o->r.error, "%s", ur->error);
		if ((rc = finish_tx(o, db, ur, !ur->has_usage, 0, "partial")) != QC_OK)
			log_error("orch", "billing a broken stream failed (%s); its reservation expires",
				  qc_strerror(rc));
		*step = done(o, db, uprc, NULL);
		return 0;
	}
	if (uprc != QC_OK) {
		metrics_upstream(uprc == QC_ETIMEOUT ? "timeout" : "upstream_error", ur->attempts, up_secs, 0, 0, 0);
		snprintf(o->r.error, sizeof o->r.error, "%s", ur->error);
		*step = done(o, db, uprc, uprc == QC_ETIMEOUT ? "timeout" : "upstream_error");
		return 0;
	}
	price(o, ur);
	metrics_upstream("ok", ur->attempts, up_secs, o->r.prompt_tokens, o->r.completion_tokens,
			 o->r.cost_micro);

	/* stored only when it ended normally (never a cut or a tool call), and
	 * on a cost-aware plan only when it is worth its bytes */
	*store = o->caches && !ur->tool_calls &&
		(strcmp(o->r.finish_reason, "stop") == 0 || strcmp(o->r.finish_reason, "length") == 0) &&
		worth_storing(o, db, ur);
	return 1;
}

/* The answer is billed (and stored): it is served. */
static enum orch_step served(struct orch *o, struct db *db, struct upstream_result *ur)
{
	o->rid[0] = 0;
	o->r.content = ur->content;
	o->r.content_len = ur->content_len;
	ur->content = NULL;
	o->r.message = ur->message;
	ur->message = NULL;
	if (o->leading)
		flight_drop(db, o->fkey, o->owner);
	o->leading = 0;
	o->rc = QC_OK;
	return ORCH_DONE;
}

/* The answer could not be billed: it is not served. */
static enum orch_step not_billed(struct orch *o, struct db *db, enum qc_err rc)
{
	log_error("orch", "billing the answer failed (%s); it is not served and not stored",
		  qc_strerror(rc));
	snprintf(o->r.error, sizeof o->r.error, "the answer could not be billed; retry");
	return done(o, db, rc == QC_EDBDOWN ? QC_EDBDOWN : QC_EDB, NULL);
}

/* Bill one answer: store, bill, ledger row and flight row in one transaction. */
static enum orch_step finish_bill(struct orch *o, struct db *db, struct upstream_result *ur, int store)
{
	enum qc_err rc = finish_first(o, db, ur, store);

	if (rc == QC_EDBDOWN && o->rid[0]) {
		/* the connection was lost at the commit: it may have landed
		 * (on a cluster, through the node that died).  Ask again on a
		 * fresh connection; billed means served, not yet means once more. */
		int st = finish_landed(o, db);
		if (st == 1) {
			log_warn("orch", "billing of %s landed although its connection was lost", o->rid);
			o->rid[0] = 0;
			rc = QC_OK;
		} else if (st == 0) {
			rc = finish_tx(o, db, ur, !ur->has_usage, store, "ok");
		}
	}
	if (rc != QC_OK)
		return not_billed(o, db, rc);
	return served(o, db, ur);
}

/* --- billing answers together (sql/019_batch_billing.sql) ----------------- */

#define BATCH_MAX_BYTES (256 * 1024)   /* an answer larger than this is billed alone */

/* 1 when o's answer may be billed with others: a user's generation holding
 * its reservation, no warming call, no test fault point, not too large. */
static int batchable(const struct orch *o, const struct upstream_result *ur)
{
	return o->rid[0] && o->user.id > 0 && !o->in.warm_for &&
	       (o->in.test_stall == ORCH_STALL_NONE || o->in.test_stall == ORCH_STALL_BATCH_LOST_BEFORE ||
		o->in.test_stall == ORCH_STALL_BATCH_LOST_AFTER) &&
	       o->klen <= 255 && ur->content_len <= BATCH_MAX_BYTES;
}

static void add_hex(json_object *obj, const char *name, const char *s, size_t n)
{
	char *h = malloc(2 * n + 1);

	if (!h) {
		json_object_object_add(obj, name, NULL);   /* the batch then fails: one by one */
		return;
	}
	qc_hex((const unsigned char *)(s ? s : ""), s ? n : 0, h);
	json_object_object_add(obj, name, json_object_new_string_len(h, (int)(2 * (s ? n : 0))));
	free(h);
}

static void add_str_or_null(json_object *obj, const char *name, const char *s)
{
	json_object_object_add(obj, name, s ? json_object_new_string(s) : NULL);
}

/* The batch document: one object per answer, as sql/019 reads it. */
static json_object *batch_doc(struct orch_done *it, const unsigned *idx, unsigned n,
			      const int *store, struct db *db)
{
	json_object *doc = json_object_new_array();

	for (unsigned k = 0; k < n; k++) {
		struct orch *o = it[idx[k]].o;
		const struct upstream_result *ur = it[idx[k]].ur;
		int st = store[idx[k]];
		const char *arm = exp_arm_name((enum exp_arm)o->exp_arm);
		char plan[33], task[65], model[65];
		json_object *a = json_object_new_object();

		qc_copy_utf8(plan, sizeof plan, o->user.plan);
		qc_copy_utf8(task, sizeof task, o->in.task);
		qc_copy_utf8(model, sizeof model, o->r.model);
		o->r.latency_ms = qc_mono_ms() - o->t0_ms;
		json_object_object_add(a, "id", json_object_new_string(o->rid));
		json_object_object_add(a, "u", json_object_new_int64(o->user.id));
		json_object_object_add(a, "pt", json_object_new_int64(o->r.prompt_tokens));
		json_object_object_add(a, "ct", json_object_new_int64(o->r.completion_tokens));
		json_object_object_add(a, "cost", json_object_new_int64(o->r.cost_micro));
		json_object_object_add(a, "st", json_object_new_int(st ? 1 : 0));
		json_object_object_add(a, "tier", json_object_new_string(cache_tier_name(o->in.tier)));
		if (st) {
			json_object *meta = store_meta(o, db);
			size_t mlen;
			const char *ms = json_object_to_json_string_length(meta, JSON_C_TO_STRING_PLAIN, &mlen);
			add_hex(a, "k", o->key, o->klen);
			add_hex(a, "v", ur->content, ur->content_len);
			json_object_object_add(a, "m", json_object_new_string_len(ms, (int)mlen));
			json_object_put(meta);
		}
		json_object_object_add(a, "plan", json_object_new_string(plan));
		json_object_object_add(a, "task", json_object_new_string(task));
		json_object_object_add(a, "model", json_object_new_string(model));
		json_object_object_add(a, "lat", json_object_new_int64(o->r.latency_ms));
		json_object_object_add(a, "est", json_object_new_int(!ur->has_usage));
		add_str_or_null(a, "fk", o->leading ? o->fkey : NULL);
		add_str_or_null(a, "ow", o->leading ? o->owner : NULL);
		json_object_object_add(a, "api", json_object_new_string(
					       orch_api_name(o->in.api)));
		json_object_object_add(a, "str", json_object_new_int(o->in.stream ? 1 : 0));
		json_object_object_add(a, "exp", o->exp_id ? json_object_new_int64(o->exp_id) : NULL);
		add_str_or_null(a, "arm", arm);
		json_object_object_add(a, "reg", json_object_new_string(cache_region(o->user.id)));
		json_object_array_add(doc, a);
	}
	return doc;
}

struct by_user_key { long long user; unsigned i; };

static int by_user(const void *a, const void *b)
{
	const struct by_user_key *x = a, *y = b;

	if (x->user != y->user)
		return x->user < y->user ? -1 : 1;
	return (x->i > y->i) - (x->i < y->i);
}

/* The shared billing transaction; test builds lose its connection where an
 * answer's X-QC-Test-Stall says (orchestrator.h). */
static enum qc_err batch_first(struct orch_done *it, const unsigned *idx, unsigned n, struct db *db,
			       const char *sql, const struct db_val *p, struct db_rows **r)
{
#ifdef QC_TEST_CLOCK
	int point = ORCH_STALL_NONE;

	for (unsigned k = 0; k < n; k++) {
		struct orch *o = it[idx[k]].o;
		if (o->in.test_stall == ORCH_STALL_BATCH_LOST_BEFORE ||
		    o->in.test_stall == ORCH_STALL_BATCH_LOST_AFTER) {
			point = o->in.test_stall;
			o->in.test_stall = ORCH_STALL_NONE;
		}
	}
	if (point == ORCH_STALL_BATCH_LOST_BEFORE) {
		db_drop(db);
		*r = NULL;
		return QC_EDBDOWN;
	}
	if (point == ORCH_STALL_BATCH_LOST_AFTER) {
		enum qc_err rc = db_query(db, sql, p, 3, r);
		if (rc != QC_OK)
			return rc;
		db_rows_free(*r);   /* as if its answer never came */
		*r = NULL;
		db_drop(db);
		return QC_EDBDOWN;
	}
#else
	(void)it;
	(void)idx;
	(void)n;
#endif
	return db_query(db, sql, p, 3, r);
}

/* Bill the n answers it[idx[..]] in one transaction: 1 billed, 0 not (the
 * database declined the batch, or it failed before anything landed: bill
 * them one by one), -1 unknown (the connection was lost at the commit and
 * the question could not be asked again). */
static int bill_batch(struct orch_done *it, unsigned *idx, unsigned n, const int *store, struct db *db)
{
	static const char sql[] = "CALL qc_finish_batch(?, ?, ?)";
	struct by_user_key keys[ORCH_BATCH_MAX];
	struct orch *first;
	json_object *doc;
	const char *text;
	size_t len;
	struct db_rows *r = NULL;
	enum qc_err rc;
	int billed;

	/* users' rows are taken in one order by every batch */
	for (unsigned k = 0; k < n; k++)
		keys[k] = (struct by_user_key){ it[idx[k]].o->user.id, idx[k] };
	qsort(keys, n, sizeof *keys, by_user);
	for (unsigned k = 0; k < n; k++)
		idx[k] = keys[k].i;
	first = it[idx[0]].o;
	if (!(doc = batch_doc(it, idx, n, store, db)))
		return 0;
	text = json_object_to_json_string_length(doc, JSON_C_TO_STRING_PLAIN, &len);
	{
		struct db_val p[3] = { DB_BLOB(text, len), DB_INT(first->now),
				       DB_INT(first->cfg->cache_user_max_bytes) };
		rc = batch_first(it, idx, n, db, sql, p, &r);
	}
	json_object_put(doc);
	if (rc == QC_OK) {
		billed = r->nrows == 1 && db_cell(r, 0, 0) && strcmp(db_cell(r, 0, 0), "ok") == 0;
		db_rows_free(r);
		metrics_count("qc_billed_together_total", billed ? "outcome=\"together\"" : "outcome=\"declined\"", n);
		if (billed)
			metrics_count("qc_batches_total", "kind=\"bill\"", 1);
		return billed;
	}
	if (rc != QC_EDBDOWN)
		return 0;
	/* lost at the commit: the batch is one transaction, so its first
	 * reservation tells for all of them */
	switch (finish_landed(first, db)) {
	case 1:
		log_warn("orch", "a batch of %u answers was billed although its connection was lost", n);
		metrics_count("qc_billed_together_total", "outcome=\"together\"", n);
		metrics_count("qc_batches_total", "kind=\"bill\"", 1);
		return 1;
	case 0:
		metrics_count("qc_billed_together_total", "outcome=\"lost\"", n);
		return 0;
	default:
		return -1;
	}
}

void orch_finish(struct orch_done *it, unsigned n, struct db *db, enum orch_step *steps)
{
	unsigned idx[ORCH_BATCH_MAX], nb = 0;
	int store[ORCH_BATCH_MAX], billed = 0;

	for (unsigned i = 0; i < n; i++) {
		log_set_request_id(it[i].req_id);
		if (finish_start(it[i].o, db, it[i].uprc, it[i].ur, it[i].secs, &store[i], &steps[i])) {
			if (batchable(it[i].o, it[i].ur))
				idx[nb++] = i;
			else
				steps[i] = finish_bill(it[i].o, db, it[i].ur, store[i]);
		}
	}
	if (nb >= 2)
		billed = bill_batch(it, idx, nb, store, db);
	for (unsigned k = 0; k < nb; k++) {
		struct orch_done *d = &it[idx[k]];
		log_set_request_id(d->req_id);
		if (billed == 1) {
			d->o->leading = 0;   /* the batch ended its flight */
			steps[idx[k]] = served(d->o, db, d->ur);
		} else if (billed == 0) {
			steps[idx[k]] = finish_bill(d->o, db, d->ur, store[idx[k]]);
		} else {
			steps[idx[k]] = not_billed(d->o, db, QC_EDBDOWN);
		}
	}
}

void orch_abort(struct orch *o, struct db *db, enum qc_err why, const char *msg)
{
	if (msg)
		snprintf(o->r.error, sizeof o->r.error, "%s", msg);
	done(o, db, why, "error");
}

void orch_release(struct orch *o)
{
	json_object_put(o->msgs);
	o->msgs = NULL;
	json_object_put(o->in.extra);
	o->in.extra = NULL;
	cache_entry_release(&o->sys);
	gen_result_release(&o->r);
}
