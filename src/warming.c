/*
 * warming.c - predictive warming (see warming.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "auth.h"
#include "cache.h"
#include "db.h"
#include "dbpool.h"
#include "inflight.h"
#include "log.h"
#include "metrics.h"
#include "orchestrator.h"
#include "settings.h"
#include "warming.h"

/* --- pure ------------------------------------------------------------ */

static int task_index(struct warm_model *m, const char *task, int add)
{
	for (unsigned i = 0; i < m->ntasks; i++)
		if (strcmp(m->task[i], task) == 0)
			return (int)i;
	if (!add || m->ntasks >= WARM_MAX_TASKS)
		return -1;
	snprintf(m->task[m->ntasks], sizeof m->task[0], "%s", task);
	return (int)m->ntasks++;
}

void warm_learn(const struct warm_event *ev, size_t n, long long gap_s, struct warm_model *m)
{
	memset(m, 0, sizeof *m);
	for (size_t i = 0; i < n; i++) {
		int a = task_index(m, ev[i].task, 1), b;
		if (a < 0)
			continue;
		m->n[a]++;
		if (i + 1 < n && ev[i + 1].user == ev[i].user && ev[i + 1].at >= ev[i].at &&
		    ev[i + 1].at - ev[i].at <= gap_s && (b = task_index(m, ev[i + 1].task, 1)) >= 0)
			m->next[a][b]++;
	}
}

double warm_next_prob(const struct warm_model *m, const char *from, const char *to)
{
	int a = task_index((struct warm_model *)m, from, 0), b = task_index((struct warm_model *)m, to, 0);

	if (a < 0 || b < 0 || m->n[a] < WARM_MIN_SAMPLES)
		return 0;
	return (double)m->next[a][b] / (double)m->n[a];
}

int warm_refresh_due(long long hits, long long min_hits, time_t expires, time_t now, long long ahead_s)
{
	return expires > 0 && hits >= min_hits && expires > now && expires - now <= ahead_s;
}

/* --- engine ------------------------------------------------------------ */

static const struct config *wcfg;      /* warm_init, before threads start */
static struct inflight *winf;

#define MAX_HINTS 256
struct hint {
	long long user;
	char plan[33], from[65], task[65], model[65], spk[CACHE_MAX_KEY + 1];
	char *prompt;           /* owned */
	size_t prompt_len;
	long long max_tokens;
	enum cache_tier tier;
	time_t now;
};
static struct hint hints[MAX_HINTS];
static unsigned nhints;
static pthread_mutex_t hint_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards hints, nhints */

/* the learned transitions per plan: the timer loop's alone */
#define MAX_MODELS 8
static struct { char plan[33]; time_t at; struct warm_model m; } models[MAX_MODELS];
static unsigned nmodels;
static time_t last_sweep;              /* the timer loop's alone */

void warm_init(const struct config *cfg, struct inflight *f)
{
	wcfg = cfg;
	winf = f;
}

void warm_hint(long long user, const char *plan, const char *from_task, const struct gen_request *next,
	       time_t now)
{
	struct hint *h;
	char *p = malloc(next->prompt_len + 1);

	if (!p)
		return;
	memcpy(p, next->prompt, next->prompt_len);
	p[next->prompt_len] = 0;
	pthread_mutex_lock(&hint_mu);
	if (nhints >= MAX_HINTS) {
		pthread_mutex_unlock(&hint_mu);
		free(p);
		metrics_count("qc_warming_total", "kind=\"next\",outcome=\"dropped\"", 1);
		return;
	}
	h = &hints[nhints++];
	memset(h, 0, sizeof *h);
	h->user = user;
	snprintf(h->plan, sizeof h->plan, "%s", plan);
	snprintf(h->from, sizeof h->from, "%s", from_task);
	snprintf(h->task, sizeof h->task, "%s", next->task);
	snprintf(h->model, sizeof h->model, "%s", next->model ? next->model : "");
	if (next->system_prompt_key)
		snprintf(h->spk, sizeof h->spk, "%.*s", (int)next->spk_len, next->system_prompt_key);
	h->prompt = p;
	h->prompt_len = next->prompt_len;
	h->max_tokens = next->max_tokens;
	h->tier = next->tier;
	h->now = now;
	pthread_mutex_unlock(&hint_mu);
}

void warm_clear(void)
{
	pthread_mutex_lock(&hint_mu);
	for (unsigned i = 0; i < nhints; i++)
		free(hints[i].prompt);
	nhints = 0;
	pthread_mutex_unlock(&hint_mu);
}

static void count(int kind, const char *outcome)
{
	char labels[64];

	snprintf(labels, sizeof labels, "kind=\"%s\",outcome=\"%s\"",
		 kind == ORCH_WARM_REFRESH ? "refresh" : "next", outcome);
	metrics_count("qc_warming_total", labels, 1);
}

/* a warming call ended (a completion thread, or the caller when it ended at
 * once): count how */
static void warm_respond(struct http_req *req, struct orch *o)
{
	(void)req;
	count(o->in.warm_kind, o->rc == QC_OK ? (o->r.cached ? "present" : "ok")
			       : o->rc == QC_EQUOTA ? "budget" : "failed");
}

/* What one warming call needs, all owned by the job's JSON object. */
struct warm_job {
	int kind;
	long long user;          /* the user the answer is for */
	const char *plan, *task, *prompt, *spk, *model, *key;
	size_t prompt_len, key_len;
	long long max_tokens;
	enum cache_tier tier;
};

/* Start one warming call: 1 started, 0 not (no budget, nothing to do, the
 * process is full), -1 on a database error. */
static int start_job(struct db *db, const struct warm_job *j, time_t now)
{
	struct db_val p[1] = { DB_STR(j->plan) };
	long long budget = 0, hits, pct;
	struct auth_user wu;
	struct gen_request in;
	struct db_rows *r = NULL;
	struct conn *c;
	struct orch *o;
	json_object *doc;
	enum orch_step step;

	if (cache_plan_warming(db, j->plan, now, &budget, &hits, &pct) <= 0 || budget <= 0 ||
	    cache_plan_caches(db, j->plan, j->tier, now) <= 0)
		return 0;
	if (db_query(db, "CALL qc_warming_user(?)", p, 1, &r) != QC_OK)
		return -1;
	memset(&wu, 0, sizeof wu);
	wu.id = r->nrows && !db_cell_null(r, 0, 0) ? db_cell_ll(r, 0, 0) : 0;
	db_rows_free(r);
	if (!wu.id)
		return 0;
	snprintf(wu.plan, sizeof wu.plan, "%s", j->plan);

	/* the job's strings live in its conn's request, as a request's do */
	if (!(c = conn_new_background()))
		return 0;
	doc = json_object_new_object();
	json_object_object_add(doc, "task", json_object_new_string(j->task));
	json_object_object_add(doc, "prompt", json_object_new_string_len(j->prompt, (int)j->prompt_len));
	if (j->spk && *j->spk)
		json_object_object_add(doc, "system_prompt_key", json_object_new_string(j->spk));
	if (j->model && *j->model)
		json_object_object_add(doc, "model", json_object_new_string(j->model));
	if (j->key)
		json_object_object_add(doc, "cache_key", json_object_new_string_len(j->key, (int)j->key_len));
	c->req.json = doc;
	c->req.now = now;
	memset(&in, 0, sizeof in);
	in.task = json_object_get_string(json_object_object_get(doc, "task"));
	in.prompt = json_object_get_string(json_object_object_get(doc, "prompt"));
	in.prompt_len = j->prompt_len;
	if (j->spk && *j->spk) {
		in.system_prompt_key = json_object_get_string(json_object_object_get(doc, "system_prompt_key"));
		in.spk_len = strlen(in.system_prompt_key);
	}
	if (j->model && *j->model)
		in.model = json_object_get_string(json_object_object_get(doc, "model"));
	if (j->key) {
		in.cache_key = json_object_get_string(json_object_object_get(doc, "cache_key"));
		in.ck_len = j->key_len;
	}
	in.tier = j->tier;
	/* the budget must bound the answer: a cap of the configured size */
	in.max_tokens = j->max_tokens > 0 ? j->max_tokens : 1024;
	in.warm_for = j->user;
	in.warm_kind = j->kind;
	if (!inflight_admit(winf)) {
		count(j->kind, "busy");
		conn_finish(c);
		return 0;
	}
	if (!(o = calloc(1, sizeof *o))) {
		inflight_unadmit(winf);
		conn_finish(c);
		return 0;
	}
	step = orch_begin(o, db, wcfg, &wu, now, &in);
	if (step == ORCH_RESERVE)
		orch_reserve(&o, 1, db, &step);
	o->respond = warm_respond;
	if (step == ORCH_CALL) {
		inflight_park_background(winf, c, o);
		return 1;
	}
	/* ended at once: no budget, the entry is there, or a failure */
	warm_respond(&c->req, o);
	orch_release(o);
	free(o);
	conn_finish(c);
	inflight_unadmit(winf);
	return 0;
}

/* --- refresh-ahead ----------------------------------------------------- */

static const char SQL_DUE[] =
	"SELECT c.id, c.user_id, c.cache_type, c.cache_key, c.metadata, u.plan,"
	" c.access_count, UNIX_TIMESTAMP(c.expires_at), p.warm_refresh_hits FROM ai_cache c"
	" JOIN users u ON u.id = c.user_id JOIN plans p ON p.name = u.plan"
	" WHERE c.region = ? AND c.user_id <> 0 AND p.warm_tokens_per_day > 0"
	" AND c.expires_at > FROM_UNIXTIME(?) AND c.expires_at <= FROM_UNIXTIME(?)"
	" AND c.access_count >= p.warm_refresh_hits AND (c.warm_claim IS NULL OR c.warm_claim < ?)"
	" AND c.metadata LIKE '%\"regen\"%' ORDER BY c.access_count DESC LIMIT ?";
static const char SQL_CLAIM[] =
	"UPDATE ai_cache SET warm_claim = ? WHERE id = ? AND region = ?"
	" AND (warm_claim IS NULL OR warm_claim < ?)";

int warm_sweep(struct db *db, time_t now, int max)
{
	const char *region = cache_region(1);
	struct db_val p[5] = { DB_STR(region), DB_INT(now), DB_INT(now + wcfg->warm_refresh_ahead_s),
			       DB_INT(now), DB_INT(max) };
	struct db_rows *r = NULL;
	int started = 0;

	if (!wcfg || !winf)
		return 0;
	if (db_query(db, SQL_DUE, p, 5, &r) != QC_OK)
		return -1;
	for (unsigned i = 0; i < r->nrows; i++) {
		/* held for as long as a call may take, so no other worker takes it */
		long long hold = now + wcfg->upstream_timeout_ms / 1000 + 10;
		struct db_val q[4] = { DB_INT(hold), DB_INT(db_cell_ll(r, i, 0)), DB_STR(region), DB_INT(now) };
		unsigned long long n = 0;
		json_object *meta = NULL, *regen, *v;
		struct warm_job j;
		enum cache_tier t;

		if (!warm_refresh_due(db_cell_ll(r, i, 6), db_cell_ll(r, i, 8), (time_t)db_cell_ll(r, i, 7),
				      now, wcfg->warm_refresh_ahead_s) ||
		    cache_tier_parse(db_cell(r, i, 2), &t) != 0)
			continue;
		if (db_exec(db, SQL_CLAIM, q, 4, &n) != QC_OK || n != 1)
			continue;   /* another worker has it */
		meta = json_tokener_parse(db_cell(r, i, 4));
		if (!meta || !json_object_object_get_ex(meta, "regen", &regen) ||
		    !json_object_object_get_ex(regen, "prompt", &v) || !json_object_is_type(v, json_type_string)) {
			json_object_put(meta);
			continue;
		}
		memset(&j, 0, sizeof j);
		j.kind = ORCH_WARM_REFRESH;
		j.user = db_cell_ll(r, i, 1);
		j.plan = db_cell(r, i, 5);
		j.task = json_object_get_string(json_object_object_get(meta, "task"));
		j.prompt = json_object_get_string(v);
		j.prompt_len = (size_t)json_object_get_string_len(v);
		j.spk = json_object_get_string(json_object_object_get(regen, "system_prompt_key"));
		j.max_tokens = json_object_get_int64(json_object_object_get(regen, "max_tokens"));
		j.model = json_object_get_string(json_object_object_get(regen, "model"));
		j.key = db_cell(r, i, 3);
		j.key_len = db_cell_len(r, i, 3);
		j.tier = t;
		if (j.task && start_job(db, &j, now) > 0)
			started++;
		json_object_put(meta);
	}
	db_rows_free(r);
	return started;
}

/* --- next-task warming --------------------------------------------------- */

/* The transitions of plan's users over the week before now, a minute old at
 * most in the request clock (learned again when the clock goes back).  NULL
 * on a database error. */
static const struct warm_model *model_of(struct db *db, const char *plan, time_t now)
{
	static const char sql[] =
		"SELECT user_id, task, created_at FROM usage_events WHERE plan = ? AND created_at > ?"
		" AND created_at <= ? AND outcome IN ('ok', 'cached') AND task NOT LIKE 'warm:%'"
		" ORDER BY user_id, created_at, id LIMIT 200000";
	struct db_val p[3] = { DB_STR(plan), DB_INT(now - 7 * 86400), DB_INT(now) };
	struct db_rows *r = NULL;
	struct warm_event *ev;
	unsigned i, slot = nmodels;

	for (i = 0; i < nmodels; i++)
		if (strcmp(models[i].plan, plan) == 0) {
			if (now >= models[i].at && now - models[i].at < 60)
				return &models[i].m;
			slot = i;
			break;
		}
	if (slot == nmodels) {
		if (nmodels < MAX_MODELS)
			nmodels++;
		else
			slot = 0;
	}
	if (db_query(db, sql, p, 3, &r) != QC_OK)
		return NULL;
	if (!(ev = calloc(r->nrows ? r->nrows : 1, sizeof *ev))) {
		db_rows_free(r);
		return NULL;
	}
	for (i = 0; i < r->nrows; i++) {
		ev[i].user = db_cell_ll(r, i, 0);
		ev[i].task = db_cell(r, i, 1);
		ev[i].at = (time_t)db_cell_ll(r, i, 2);
	}
	snprintf(models[slot].plan, sizeof models[slot].plan, "%s", plan);
	models[slot].at = now;
	warm_learn(ev, r->nrows, wcfg->warm_next_gap_s, &models[slot].m);
	free(ev);
	db_rows_free(r);
	return &models[slot].m;
}

static void take_hint(struct db *db, struct hint *h)
{
	long long budget = 0, hits, pct = 0;
	const struct warm_model *m;
	struct warm_job j;

	if (cache_plan_warming(db, h->plan, h->now, &budget, &hits, &pct) <= 0 || budget <= 0 || pct <= 0)
		return;   /* the plan does not warm next tasks: nothing counted */
	if (!(m = model_of(db, h->plan, h->now)))
		return;
	if (warm_next_prob(m, h->from, h->task) * 100.0 < (double)pct) {
		count(ORCH_WARM_NEXT, "unlikely");
		return;
	}
	memset(&j, 0, sizeof j);
	j.kind = ORCH_WARM_NEXT;
	j.user = h->user;
	j.plan = h->plan;
	j.task = h->task;
	j.prompt = h->prompt;
	j.prompt_len = h->prompt_len;
	j.spk = h->spk;
	j.model = h->model;
	j.max_tokens = h->max_tokens;
	j.tier = h->tier;
	start_job(db, &j, h->now);
}

void warm_tick(struct dbpool *pool)
{
	struct hint *taken = NULL;
	unsigned n;
	time_t wall = time(NULL);
	int sweep = wcfg && wcfg->warm_sweep_s > 0 && wall - last_sweep >= wcfg->warm_sweep_s;
	struct db *db;

	pthread_mutex_lock(&hint_mu);
	n = nhints;
	if (n && (taken = malloc(n * sizeof *taken))) {
		memcpy(taken, hints, n * sizeof *taken);
		nhints = 0;
	}
	pthread_mutex_unlock(&hint_mu);
	if (!taken && !sweep)
		return;
	db = dbpool_get(pool);
	for (unsigned i = 0; taken && i < n; i++) {
		take_hint(db, &taken[i]);
		free(taken[i].prompt);
	}
	free(taken);
	if (sweep) {
		last_sweep = wall;
		if (warm_sweep(db, wall, 20) < 0)
			log_warn("warming", "refresh-ahead sweep failed: %s", db_error(db));
	}
	dbpool_put(pool, db);
}
