/*
 * orchestrator.c - one generation: system prompt, cache, quota, single
 * flight, upstream, store, commit, usage.  Each step's failure undoes the
 * steps before it (see the header's promise).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "settings.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "orchestrator.h"
#include "upstream.h"
#include "usage.h"

#define POLL_MS 25

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
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long chars(const char *s, size_t len)
{
	long long n = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

static void event(const struct auth_user *u, const struct gen_request *in, const struct gen_result *r,
		  const char *outcome, long long saved_tokens, long long saved_micro, time_t now)
{
	struct usage_event ev;

	memset(&ev, 0, sizeof ev);
	ev.user_id = u->id;
	snprintf(ev.plan, sizeof ev.plan, "%s", u->plan);
	snprintf(ev.task, sizeof ev.task, "%s", in->task);
	snprintf(ev.model, sizeof ev.model, "%s", r->model);
	ev.prompt_tokens = r->cached ? 0 : r->prompt_tokens;
	ev.completion_tokens = r->cached ? 0 : r->completion_tokens;
	ev.cost_micro = r->cached ? 0 : r->cost_micro;
	ev.saved_tokens = saved_tokens;
	ev.saved_micro = saved_micro;
	ev.cached = r->cached;
	ev.outcome = outcome;
	ev.latency_ms = r->latency_ms;
	ev.created_at = now;
	usage_note(&ev);
}

/* Serve r from a cache entry; what the entry's generation cost is "saved". */
static void serve_hit(struct cache_entry *e, struct gen_result *r, long long *saved_tokens,
		      long long *saved_micro)
{
	json_object *m = e->metadata ? json_tokener_parse(e->metadata) : NULL, *v;

	*saved_tokens = *saved_micro = 0;
	if (m) {
		if (json_object_object_get_ex(m, "total_tokens", &v))
			*saved_tokens = json_object_get_int64(v);
		if (json_object_object_get_ex(m, "cost_micro", &v))
			*saved_micro = json_object_get_int64(v);
		if (json_object_object_get_ex(m, "model", &v) && json_object_is_type(v, json_type_string))
			snprintf(r->model, sizeof r->model, "%s", json_object_get_string(v));
		json_object_put(m);
	}
	r->content = e->value;
	r->content_len = e->value_len;
	e->value = NULL;
	r->cached = 1;
	r->prompt_tokens = r->completion_tokens = r->cost_micro = 0;
}

/* Flight row: 1 = we lead, 0 = someone else does, -1 = db error. */
static int flight_acquire(struct db *db, const char *fkey, const char *owner, time_t now,
			  long long hold_s)
{
	static const char sql[] =
		"INSERT INTO generate_flights (flight_key, owner, started_at, expires_at)"
		" VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
		" owner = IF(expires_at < VALUES(started_at), VALUES(owner), owner),"
		" started_at = IF(expires_at < VALUES(started_at), VALUES(started_at), started_at),"
		" expires_at = IF(expires_at < VALUES(started_at), VALUES(expires_at), expires_at)";
	struct db_val p[4] = { DB_STR(fkey), DB_STR(owner), DB_INT(now), DB_INT(now + hold_s) };
	unsigned long long n = 0;

	if (db_exec(db, sql, p, 4, &n) != QC_OK)
		return -1;
	return n > 0;   /* 1 inserted, 2 taken over from a dead leader, 0 busy */
}

static int flight_exists(struct db *db, const char *fkey)
{
	static const char sql[] = "SELECT 1 FROM generate_flights WHERE flight_key = ?";
	struct db_val p[1] = { DB_STR(fkey) };
	struct db_rows *r = NULL;
	int n;

	if (db_query(db, sql, p, 1, &r) != QC_OK)
		return -1;
	n = r->nrows > 0;
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

enum qc_err orch_generate(struct db *db, struct upstream *up, const struct config *cfg,
			  const struct auth_user *user, time_t now,
			  const struct gen_request *in, struct gen_result *r)
{
	long long t0 = mono_ms(), saved_t = 0, saved_m = 0, min;
	long long hold_s = cfg->upstream_timeout_ms / 1000 + 5;   /* a dead leader's row lapses */
	double up_secs = 0;
	const char *model = in->model ? in->model : cfg->upstream_model;
	const char *key = in->cache_key;
	size_t klen = in->ck_len;
	struct cache_entry sys = { 0 }, e = { 0 };
	struct upstream_result ur = { 0 };
	json_object *msgs = NULL, *m;
	char rid[QUOTA_ID_LEN + 1] = "", fkey[65] = "", owner[33] = "";
	time_t exp;
	enum qc_err rc;
	int caches, leading = 0;

	memset(r, 0, sizeof *r);
	r->tier = in->tier;
	snprintf(r->model, sizeof r->model, "%s", model);
	if (!key) {
		orch_default_key(in->task, model, in->system_prompt_key, in->spk_len, in->prompt,
				 in->prompt_len, r->cache_key);
		key = r->cache_key;
		klen = 64;
	}

	/* 1. the cache: a hit costs one query */
	if ((caches = cache_plan_caches(db, user->plan, in->tier, now)) < 0) {
		rc = QC_EDBDOWN;
		goto out;
	}
	if (caches) {
		rc = cache_get(db, user->id, in->tier, key, klen, now, &e);
		if (rc == QC_OK) {
			cache_note_hit(e.id, user->id, in->tier, user->plan, now,
				       cache_parse_micro(in->tier == CACHE_CONTENT ? cfg->cache_saving_content
									     : cfg->cache_saving_session));
			serve_hit(&e, r, &saved_t, &saved_m);
			r->latency_ms = mono_ms() - t0;
			event(user, in, r, "cached", saved_t, saved_m, now);
			goto out;
		}
		if (rc != QC_ENOTFOUND)
			goto out;
	}
	cache_note_miss(user->id, in->tier, user->plan, now);

	/* 2. the system prompt (a miss only: a hit needs no upstream call) must
	 * exist before anything is reserved */
	if (in->system_prompt_key) {
		rc = cache_get(db, 0, CACHE_SYSTEM, in->system_prompt_key, in->spk_len, now, &sys);
		if (rc == QC_ENOTFOUND) {
			snprintf(r->error, sizeof r->error, "field 'system_prompt_key' names no system-tier entry");
			rc = QC_EINPUT;
			goto out;
		}
		if (rc != QC_OK)
			goto out;
		cache_note_hit(sys.id, user->id, CACHE_SYSTEM, user->plan, now,
			       cache_parse_micro(cfg->cache_saving_system));
	}

	/* 3. quota, and for cacheable plans the single-flight row of this
	 * (user, tier, key) taken in the same transaction */
	min = quota_prompt_min(in->prompt, in->prompt_len, in->max_tokens) +
	      (sys.value ? chars(sys.value, sys.value_len) / 4 : 0);
	if (caches) {
		char buf[400];
		int n = snprintf(buf, sizeof buf, "%lld|%s|", user->id, cache_tier_name(in->tier));
		memcpy(buf + n, key, klen);
		qc_sha256_hex(buf, (size_t)n + klen, fkey);
		if (qc_random_hex(owner, 16) < 0) {
			rc = QC_EIO;
			goto out;
		}
	}
	rc = quota_reserve_flight(db, user->id, in->task, min, now, cfg->reservation_ttl,
				  caches ? fkey : NULL, caches ? owner : NULL, hold_s, rid, &exp,
				  &r->quota, &leading);
	if (rc == QC_EQUOTA) {
		r->latency_ms = mono_ms() - t0;
		event(user, in, r, "quota", 0, 0, now);
		goto out;
	}
	if (rc != QC_OK)
		goto out;

	/* 4. an identical miss is already calling the upstream: wait for its
	 * cache entry (bounded); if its leader gives up, try to lead */
	if (caches && !leading) {
		long long wait_until = mono_ms() + cfg->upstream_timeout_ms + 2000;
		for (;;) {
			struct timespec ts = { 0, POLL_MS * 1000000L };
			if (mono_ms() >= wait_until) {
				snprintf(r->error, sizeof r->error,
					 "an identical request is still running; gave up waiting for it");
				rc = QC_ETIMEOUT;
				r->latency_ms = mono_ms() - t0;
				event(user, in, r, "timeout", 0, 0, now);
				goto release;
			}
			nanosleep(&ts, NULL);
			rc = cache_get(db, user->id, in->tier, key, klen, now, &e);
			if (rc == QC_OK) {
				settle(db, user->id, rid, -1, now);
				rid[0] = 0;
				serve_hit(&e, r, &saved_t, &saved_m);
				r->latency_ms = mono_ms() - t0;
				event(user, in, r, "cached", saved_t, saved_m, now);
				goto out;
			}
			if (rc != QC_ENOTFOUND)
				goto release;
			if (flight_exists(db, fkey) == 0) {
				int got = flight_acquire(db, fkey, owner, time(NULL), hold_s);
				if (got < 0) {
					rc = QC_EDBDOWN;
					goto release;
				}
				if (got) {
					leading = 1;
					break;
				}
			}
		}
	}

	/* 5. the upstream */
	msgs = json_object_new_array();
	if (sys.value) {
		m = json_object_new_object();
		json_object_object_add(m, "role", json_object_new_string("system"));
		json_object_object_add(m, "content", json_object_new_string_len(sys.value, (int)sys.value_len));
		json_object_array_add(msgs, m);
	}
	m = json_object_new_object();
	json_object_object_add(m, "role", json_object_new_string("user"));
	json_object_object_add(m, "content", json_object_new_string_len(in->prompt, (int)in->prompt_len));
	json_object_array_add(msgs, m);
	{
		long long u0 = mono_ms();
		rc = upstream_chat(up, model, msgs, in->max_tokens, &ur);
		up_secs = (double)(mono_ms() - u0) / 1000.0;
	}
	r->upstream_calls = ur.attempts;
	if (rc != QC_OK) {
		metrics_upstream(rc == QC_ETIMEOUT ? "timeout" : "upstream_error", ur.attempts, up_secs, 0, 0, 0);
		snprintf(r->error, sizeof r->error, "%s", ur.error);
		r->latency_ms = mono_ms() - t0;
		event(user, in, r, rc == QC_ETIMEOUT ? "timeout" : "upstream_error", 0, 0, now);
		goto release;
	}
	if (ur.model[0])
		snprintf(r->model, sizeof r->model, "%s", ur.model);
	if (ur.has_usage) {
		r->prompt_tokens = ur.prompt_tokens;
		r->completion_tokens = ur.completion_tokens;
	} else {   /* no usage block: estimate from the text, 4 characters a token */
		r->prompt_tokens = (chars(in->prompt, in->prompt_len) +
				    (sys.value ? chars(sys.value, sys.value_len) : 0) + 3) / 4;
		r->completion_tokens = (chars(ur.content, ur.content_len) + 3) / 4;
	}
	r->cost_micro = upstream_cost_micro(cfg->upstream_prices, r->model, r->prompt_tokens,
					    r->completion_tokens);
	metrics_upstream("ok", ur.attempts, up_secs, r->prompt_tokens, r->completion_tokens, r->cost_micro);

	/* 6. store, then let the waiters in */
	if (caches) {
		enum cache_put_outcome po;
		json_object *meta = json_object_new_object();
		size_t mlen = 0;
		const char *ms;
		time_t cexp;
		json_object_object_add(meta, "task", json_object_new_string(in->task));
		json_object_object_add(meta, "model", json_object_new_string(r->model));
		json_object_object_add(meta, "prompt_tokens", json_object_new_int64(r->prompt_tokens));
		json_object_object_add(meta, "completion_tokens", json_object_new_int64(r->completion_tokens));
		json_object_object_add(meta, "total_tokens", json_object_new_int64(r->prompt_tokens + r->completion_tokens));
		json_object_object_add(meta, "cost_micro", json_object_new_int64(r->cost_micro));
		ms = json_object_to_json_string_length(meta, JSON_C_TO_STRING_PLAIN, &mlen);
		rc = cache_put(db, user->id, in->tier, key, klen, ur.content, ur.content_len, 0, ms, mlen, 0,
			       now, cfg->cache_user_max_bytes, &po, &cexp);
		json_object_put(meta);
		if (rc != QC_OK)
			log_warn("orch", "storing the answer failed: %s", qc_strerror(rc));
		else if (po == CACHE_FULL)
			log_info("orch", "user %lld cache is full; answer not stored", user->id);
	}
	/* bill, and let the waiters of a flight go, in one transaction */
	{
		char state[16];
		rc = quota_settle_flight(db, user->id, rid, r->prompt_tokens + r->completion_tokens, now,
					 leading ? fkey : NULL, leading ? owner : NULL, state, NULL);
		if (rc == QC_OK)
			leading = 0;
		else
			log_warn("orch", "billing failed (%s, %s); the reservation expires by itself",
				 qc_strerror(rc), state);
	}
	rid[0] = 0;
	r->content = ur.content;
	r->content_len = ur.content_len;
	ur.content = NULL;
	r->latency_ms = mono_ms() - t0;
	event(user, in, r, "ok", 0, 0, now);
	rc = QC_OK;
	goto out;

release:
	if (rid[0])
		settle(db, user->id, rid, -1, now);
out:
	if (leading)
		flight_drop(db, fkey, owner);
	json_object_put(msgs);
	upstream_result_release(&ur);
	cache_entry_release(&sys);
	cache_entry_release(&e);
	return rc;
}
