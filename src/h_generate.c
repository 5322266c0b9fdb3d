/*
 * h_generate.c - POST /api/v1/generate and GET /api/v1/usage: validate,
 * call the orchestrator or the usage reports, shape the JSON.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "warming.h"
#include "inflight.h"
#include "metrics.h"
#include "jsonu.h"
#include "orchestrator.h"
#include "upstream.h"
#include "quota.h"
#include "usage.h"

/* Only configured models, and of those only the plan's (SPEC §11): 1 when
 * refused (answered). */
int gen_model_refused(struct app *app, struct http_req *req, const char *model)
{
	char detail[200];
	int ok;

	snprintf(req->err_param, sizeof req->err_param, "model");
	if (!upstream_price(app->cfg.upstream_prices, model, NULL, NULL)) {
		snprintf(detail, sizeof detail, "field 'model': '%.64s' is not a configured model "
			 "(GET /api/v1/models lists them)", model);
		api_error(req, QC_EINPUT, detail);
		return 1;
	}
	if ((ok = plan_allows_model(app->db, req->user.plan, model, req->now)) < 0) {
		api_error(req, QC_EDBDOWN, NULL);
		return 1;
	}
	if (!ok) {
		snprintf(detail, sizeof detail, "field 'model': the plan '%.32s' does not include model '%.64s'",
			 req->user.plan, model);
		api_error(req, QC_EINPUT, detail);
		return 1;
	}
	req->err_param[0] = 0;
	return 0;
}

struct models_ctx { struct app *app; struct http_req *req; json_object *data; int dberr; };

static int add_model(const char *m, size_t ml, double in, double out, void *ud)
{
	struct models_ctx *c = ud;
	char name[65];
	json_object *o;
	int ok;

	snprintf(name, sizeof name, "%.*s", (int)ml, m);
	if ((ok = plan_allows_model(c->app->db, c->req->user.plan, name, c->req->now)) < 0) {
		c->dberr = 1;
		return 1;
	}
	if (!ok)
		return 0;
	o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(name));
	json_object_object_add(o, "object", json_object_new_string("model"));
	json_object_object_add(o, "created", json_object_new_int(0));
	json_object_object_add(o, "owned_by", json_object_new_string("quotacache"));
	json_object_object_add(o, "input_usd_per_1k", json_object_new_double(in));
	json_object_object_add(o, "output_usd_per_1k", json_object_new_double(out));
	json_object_object_add(o, "default", json_object_new_boolean(strcmp(name, c->app->cfg.upstream_model) == 0));
	json_object_array_add(c->data, o);
	return 0;
}

/* GET /api/v1/models: the configured models the caller's plan may use,
 * with their prices (dollars per 1K tokens). */
void h_models(struct app *app, struct http_req *req)
{
	struct models_ctx c = { app, req, json_object_new_array(), 0 };
	json_object *o;

	upstream_models_each(app->cfg.upstream_prices, add_model, &c);
	if (c.dberr) {
		json_object_put(c.data);
		api_error(req, QC_EDBDOWN, NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "object", json_object_new_string("list"));
	json_object_object_add(o, "data", c.data);
	http_send_json(req, 200, o);
	json_object_put(o);
}

/* Test builds only (configure --enable-test-clock, allow_test_clock = 1):
 * X-QC-Test-Stall: before_upstream:MS | before_billing:MS holds this miss MS
 * milliseconds at that point, so that a fault test can kill -9 the worker
 * there; billing_lost_before:MS | billing_lost_after:MS also lose the
 * database connection around the billing transaction, and
 * batch_lost_before:MS | batch_lost_after:MS around a shared one, and
 * reserve_lost_before:MS | reserve_lost_after:MS around a shared reserve
 * (orchestrator.h).
 * -1 when the answer was sent (a bad value). */
static int test_stall(struct app *app, struct http_req *req, struct gen_request *in)
{
#ifdef QC_TEST_CLOCK
	static const struct { const char *name; int point; } points[] = {
		{ "before_upstream:", ORCH_STALL_BEFORE_UPSTREAM },
		{ "before_billing:", ORCH_STALL_BEFORE_BILLING },
		{ "billing_lost_before:", ORCH_STALL_BILLING_LOST_BEFORE },
		{ "billing_lost_after:", ORCH_STALL_BILLING_LOST_AFTER },
		{ "batch_lost_before:", ORCH_STALL_BATCH_LOST_BEFORE },
		{ "batch_lost_after:", ORCH_STALL_BATCH_LOST_AFTER },
		{ "reserve_lost_before:", ORCH_STALL_RESERVE_LOST_BEFORE },
		{ "reserve_lost_after:", ORCH_STALL_RESERVE_LOST_AFTER },
	};
	const char *v = app->cfg.allow_test_clock ? http_getenv(req, "HTTP_X_QC_TEST_STALL") : NULL;
	size_t i;

	if (!v || !*v)
		return 0;
	for (i = 0; i < sizeof points / sizeof points[0]; i++) {
		size_t n = strlen(points[i].name);
		char *end;
		long long ms;

		if (strncmp(v, points[i].name, n) != 0 || !isdigit((unsigned char)v[n]))
			continue;
		ms = strtoll(v + n, &end, 10);
		if (*end || ms > 60000)
			break;
		in->test_stall = points[i].point;
		in->test_stall_ms = ms;
		return 0;
	}
	api_error(req, QC_EINPUT, "X-QC-Test-Stall takes before_upstream:MS, before_billing:MS, "
		  "billing_lost_before:MS, billing_lost_after:MS, batch_lost_before:MS or "
		  "batch_lost_after:MS (MS <= 60000)");
	return -1;
#else
	(void)app;
	(void)req;
	(void)in;
	return 0;
#endif
}

/* "next": {task, prompt, system_prompt_key?, max_tokens?, cache_tier?}: the
 * request the caller expects to make next (SPEC §13, next-task warming).  It
 * is handed to the warming engine, which generates it ahead only when the
 * plan warms next tasks and the learned probability passes its threshold.
 * 0 (none or queued), -1 answered 400. */
static int next_hint(struct app *app, struct http_req *req, const struct gen_request *cur)
{
	static const char *const allowed[] = { "task", "prompt", "system_prompt_key", "max_tokens",
		"cache_tier", NULL };
	struct gen_request nx;
	json_object *n;
	const char *tier = NULL;
	size_t len = 0, tlen = 0;
	char err[256];

	if (!json_object_object_get_ex(req->json, "next", &n) || !n)
		return 0;
	if (!json_object_is_type(n, json_type_object)) {
		api_error(req, QC_EINPUT, "field 'next' must be an object {task, prompt, ...}");
		return -1;
	}
	memset(&nx, 0, sizeof nx);
	nx.tier = cur->tier;   /* by default the tier of this request */
	if (jsonu_only_fields(n, allowed, err, sizeof err) < 0 ||
	    jsonu_get_str(n, "task", 1, QUOTA_TASK_MAX, 1, &nx.task, &len, err, sizeof err) < 0 ||
	    jsonu_get_str(n, "prompt", 1, ORCH_PROMPT_MAX, 0, &nx.prompt, &nx.prompt_len, err, sizeof err) < 0 ||
	    jsonu_get_str(n, "system_prompt_key", 0, CACHE_MAX_KEY, 1, &nx.system_prompt_key, &nx.spk_len,
			  err, sizeof err) < 0 ||
	    jsonu_get_str(n, "cache_tier", 0, 16, 1, &tier, &tlen, err, sizeof err) < 0 ||
	    jsonu_get_int(n, "max_tokens", 0, 1, 1000000, &nx.max_tokens, err, sizeof err) < 0) {
		char msg[300];
		snprintf(msg, sizeof msg, "field 'next': %s", err);
		api_error(req, QC_EINPUT, msg);
		return -1;
	}
	if (!quota_task_ok(nx.task, strlen(nx.task)) || nx.prompt_len == 0 ||
	    (nx.system_prompt_key && !cache_key_ok(nx.system_prompt_key, nx.spk_len)) ||
	    (tier && strcmp(tier, "session") != 0 && strcmp(tier, "content") != 0)) {
		api_error(req, QC_EINPUT, "field 'next' needs a task (1-64 of A-Z a-z 0-9 _ . -), a non-empty "
			  "prompt, a valid system_prompt_key and cache_tier 'session' or 'content'");
		return -1;
	}
	if (tier)
		nx.tier = strcmp(tier, "session") == 0 ? CACHE_SESSION : CACHE_CONTENT;
	nx.model = cur->model ? cur->model : app->cfg.upstream_model;
	warm_hint(req->user.id, req->user.plan, cur->task, &nx, req->now);
	return 0;
}

void h_generate(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "task", "prompt", "system_prompt_key", "cache_key",
		"cache_tier", "max_tokens", "model", "stream", "next", NULL };
	struct gen_request in;
	json_object *st;
	const char *tier = NULL;
	size_t tlen = 0, len = 0;
	char err[256];

	memset(&in, 0, sizeof in);
	in.tier = CACHE_CONTENT;
	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "task", 1, QUOTA_TASK_MAX, 1, &in.task, &len, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "prompt", 1, ORCH_PROMPT_MAX, 0, &in.prompt, &in.prompt_len,
			  err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "system_prompt_key", 0, CACHE_MAX_KEY, 1, &in.system_prompt_key,
			  &in.spk_len, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "cache_key", 0, CACHE_MAX_KEY, 1, &in.cache_key, &in.ck_len,
			  err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "cache_tier", 0, 16, 1, &tier, &tlen, err, sizeof err) < 0 ||
	    jsonu_get_int(req->json, "max_tokens", 0, 1, 1000000, &in.max_tokens, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "model", 0, ORCH_MODEL_MAX, 1, &in.model, &len, err, sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (!quota_task_ok(in.task, strlen(in.task))) {
		api_error(req, QC_EINPUT, "field 'task' must be 1-64 characters of A-Z a-z 0-9 _ . -");
		return;
	}
	if (json_object_object_get_ex(req->json, "stream", &st) && st) {
		if (!json_object_is_type(st, json_type_boolean)) {
			api_error(req, QC_EINPUT, "field 'stream' must be true or false");
			return;
		}
		/* SSE of chat.completion.chunk events, with the usage chunk */
		in.stream = in.include_usage = json_object_get_boolean(st);
	}
	if (in.prompt_len == 0) {
		api_error(req, QC_EINPUT, "field 'prompt' is empty");
		return;
	}
	if (in.model && !orch_model_ok(in.model, strlen(in.model))) {
		api_error(req, QC_EINPUT, "field 'model' must be 1-64 characters of A-Z a-z 0-9 . _ - : /");
		return;
	}
	if ((in.system_prompt_key && !cache_key_ok(in.system_prompt_key, in.spk_len)) ||
	    (in.cache_key && !cache_key_ok(in.cache_key, in.ck_len))) {
		api_error(req, QC_EINPUT, "cache keys are 1-255 bytes without control characters");
		return;
	}
	if (tier) {
		if (strcmp(tier, "session") == 0)
			in.tier = CACHE_SESSION;
		else if (strcmp(tier, "content") != 0) {
			api_error(req, QC_EINPUT, "field 'cache_tier' must be 'session' or 'content'");
			return;
		}
	}
	if (gen_model_refused(app, req, in.model ? in.model : app->cfg.upstream_model))
		return;
	if (test_stall(app, req, &in) < 0)
		return;
	if (next_hint(app, req, &in) < 0)
		return;
	if (in.stream)
		gen_run(app, req, &in, oai_respond, oai_on_chunk);
	else
		gen_run(app, req, &in, gen_respond, NULL);
}

void gen_run(struct app *app, struct http_req *req, struct gen_request *in,
	     void (*respond)(struct http_req *, struct orch *),
	     int (*on_chunk)(struct http_req *, struct orch *, json_object *))
{
	struct orch *o;
	enum orch_step step;

	if (!inflight_admit(app->inf)) {
		metrics_count("qc_backpressure_refusals_total", "scope=\"process\"", 1);
		json_object_put(in->extra);
		api_error(req, QC_EBUSY, "this worker holds its maximum of generations in flight; retry");
		return;
	}
	if (!(o = malloc(sizeof *o))) {
		inflight_unadmit(app->inf);
		json_object_put(in->extra);
		api_error(req, QC_ENOMEM, NULL);
		return;
	}
	step = orch_begin(o, app->db, app->pcfg ? app->pcfg : &app->cfg, &req->user, req->now, in);
	o->respond = respond;
	o->on_chunk = on_chunk;
	if (step == ORCH_DONE) {
		respond(req, o);
		orch_release(o);
		free(o);
		inflight_unadmit(app->inf);
		return;
	}
	/* the reserve, the upstream call (or an identical one's answer) come
	 * later, on other threads: the request stays open and no thread waits */
	inflight_park(app->inf, (struct conn *)((char *)req - offsetof(struct conn, req)), o, step);
}

void gen_respond(struct http_req *req, struct orch *o)
{
	const struct gen_result *r = &o->r;
	enum qc_err rc = o->rc;
	json_object *out, *u;

	if (rc == QC_EQUOTA) {
		api_quota_refusal(req, &r->quota);
		return;
	}
	if (rc == QC_EUSERBUSY) {
		char detail[160];
		metrics_count("qc_backpressure_refusals_total", "scope=\"user\"", 1);
		snprintf(detail, sizeof detail, "the plan allows %lld generations in flight at once; retry "
			 "when one has finished", r->quota.inflight_cap);
		api_error(req, rc, detail);
		return;
	}
	if (rc == QC_EUPSTREAM || rc == QC_ETIMEOUT) {
		http_problem(req, rc == QC_ETIMEOUT ? 504 : 502,
			     rc == QC_ETIMEOUT ? "upstream-timeout" : "upstream-failure",
			     http_reason(rc == QC_ETIMEOUT ? 504 : 502), r->error, NULL);
		return;
	}
	if (rc != QC_OK) {
		api_error(req, rc, r->error[0] ? r->error : NULL);
		return;
	}
	if (o->in.stream || o->in.api == ORCH_API_OPENAI) {   /* not an answer of ours */
		oai_respond(req, o);
		return;
	}
	out = json_object_new_object();
	json_object_object_add(out, "content", json_object_new_string_len(r->content, (int)r->content_len));
	json_object_object_add(out, "cached", json_object_new_boolean(r->cached));
	json_object_object_add(out, "tier", json_object_new_string(cache_tier_name(r->tier)));
	u = json_object_new_object();
	json_object_object_add(u, "prompt_tokens", json_object_new_int64(r->prompt_tokens));
	json_object_object_add(u, "completion_tokens", json_object_new_int64(r->completion_tokens));
	json_object_object_add(u, "total_tokens", json_object_new_int64(r->prompt_tokens + r->completion_tokens));
	json_object_object_add(out, "usage", u);
	json_object_object_add(out, "cost_usd", json_object_new_double((double)r->cost_micro / 1e6));
	json_object_object_add(out, "latency_ms", json_object_new_int64(r->latency_ms));
	json_object_object_add(out, "model", json_object_new_string(r->model));
	if (!o->in.cache_key)
		json_object_object_add(out, "cache_key", json_object_new_string(r->cache_key));
	http_send_json(req, 200, out);
	json_object_put(out);
}

/* from/to: YYYY-MM-DDTHH:MM:SSZ, or a date YYYY-MM-DD meaning the whole
 * day (from its start; to its end, so from=to=a day is that day).
 * 0 ok, -1 bad. */
static int parse_when(const char *s, int is_to, long long *t)
{
	char buf[40];

	if (qc_parse_iso8601(s, t) == 0)
		return 0;
	if (strlen(s) == 10) {
		snprintf(buf, sizeof buf, "%sT00:00:00Z", s);
		if (qc_parse_iso8601(buf, t) < 0)
			return -1;
		if (is_to)
			*t += 86400;
		return 0;
	}
	return -1;
}

static json_object *sums_json(const struct db_rows *r, unsigned i)
{
	json_object *t = json_object_new_object();
	json_object_object_add(t, "calls", json_object_new_int64(db_cell_ll(r, i, 1)));
	json_object_object_add(t, "cached", json_object_new_int64(db_cell_ll(r, i, 2)));
	json_object_object_add(t, "prompt_tokens", json_object_new_int64(db_cell_ll(r, i, 3)));
	json_object_object_add(t, "completion_tokens", json_object_new_int64(db_cell_ll(r, i, 4)));
	json_object_object_add(t, "cost_usd", json_object_new_double((double)db_cell_ll(r, i, 5) / 1e6));
	json_object_object_add(t, "saved_tokens", json_object_new_int64(db_cell_ll(r, i, 6)));
	json_object_object_add(t, "saved_usd", json_object_new_double((double)db_cell_ll(r, i, 7) / 1e6));
	json_object_object_add(t, "failures", json_object_new_int64(db_cell_ll(r, i, 8)));
	json_object_object_add(t, "streamed", json_object_new_int64(db_cell_ll(r, i, 9)));
	json_object_object_add(t, "openai", json_object_new_int64(db_cell_ll(r, i, 10)));
	return t;
}

void h_usage(struct app *app, struct http_req *req)
{
	char buf[64], iso[32];
	long long from = req->now - 30LL * 86400, to = req->now + 1, user = req->user.id;
	int global = 0;
	struct db_rows *t = NULL, *p = NULL;
	json_object *o, *tasks;
	enum qc_err rc;

	if ((http_query_param(req, "from", buf, sizeof buf) && parse_when(buf, 0, &from) < 0) ||
	    (http_query_param(req, "to", buf, sizeof buf) && parse_when(buf, 1, &to) < 0)) {
		api_error(req, QC_EINPUT, "'from' and 'to' take YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ");
		return;
	}
	if (to <= from) {
		api_error(req, QC_EINPUT, "'to' must be after 'from'");
		return;
	}
	if (http_query_param(req, "user_id", buf, sizeof buf)) {
		char *end;
		if (!req->user.is_admin) {
			api_error(req, QC_EFORBIDDEN, "only admins read other users' usage");
			return;
		}
		if (strcmp(buf, "all") == 0) {
			global = 1;
		} else {
			user = strtoll(buf, &end, 10);
			if (*end || user <= 0) {
				api_error(req, QC_EINPUT, "'user_id' is a user id or 'all'");
				return;
			}
		}
	}
	usage_flush(app->db);   /* this worker's own recent calls count at once */
	if ((rc = usage_by_task(app->db, user, global, (time_t)from, (time_t)to, &t)) != QC_OK ||
	    (req->user.is_admin && (rc = usage_by_plan(app->db, (time_t)from, (time_t)to, &p)) != QC_OK)) {
		db_rows_free(t);
		api_error(req, rc, NULL);
		return;
	}
	o = json_object_new_object();
	if (global)
		json_object_object_add(o, "user_id", json_object_new_string("all"));
	else
		json_object_object_add(o, "user_id", json_object_new_int64(user));
	qc_iso8601(from, iso);
	json_object_object_add(o, "from", json_object_new_string(iso));
	qc_iso8601(to, iso);
	json_object_object_add(o, "to", json_object_new_string(iso));
	tasks = json_object_new_object();
	for (unsigned i = 0; i < t->nrows; i++)
		json_object_object_add(tasks, db_cell(t, i, 0), sums_json(t, i));
	json_object_object_add(o, "tasks", tasks);
	if (p) {
		json_object *plans = json_object_new_object();
		for (unsigned i = 0; i < p->nrows; i++)
			json_object_object_add(plans, db_cell(p, i, 0), sums_json(p, i));
		json_object_object_add(o, "plans", plans);
	}
	db_rows_free(t);
	db_rows_free(p);
	http_send_json(req, 200, o);
	json_object_put(o);
}
