/*
 * h_quota.c - HTTP handlers of /api/v1/quota/...: parse and validate the
 * request, call the quota module, shape the JSON and the RateLimit headers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "app.h"
#include "jsonu.h"
#include "metrics.h"
#include "quota.h"
#include "users.h"

#define MAX_TOKENS_LIMIT 1000000LL
#define ACTUAL_LIMIT 100000000LL

static json_object *limit_json(long long v)
{
	return v < 0 ? NULL : json_object_new_int64(v);
}

static json_object *window_json(const struct quota_window *w)
{
	char iso[32];
	json_object *o = json_object_new_object();

	qc_iso8601(w->resets_at, iso);
	json_object_object_add(o, "used", json_object_new_int64(w->used));
	json_object_object_add(o, "reserved", json_object_new_int64(w->reserved));
	json_object_object_add(o, "limit", limit_json(w->limit));
	json_object_object_add(o, "remaining", limit_json(w->remaining));
	json_object_object_add(o, "percent", json_object_new_int(w->percent));
	json_object_object_add(o, "level", json_object_new_string(quota_level_name(w->level)));
	json_object_object_add(o, "resets_at", json_object_new_string(iso));
	return o;
}

/* The status object shared by status, check, reserve and the admin view. */
static json_object *status_json(const struct quota_status *st)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "user_id", json_object_new_int64(st->user_id));
	json_object_object_add(o, "plan", json_object_new_string(st->plan));
	json_object_object_add(o, "level", json_object_new_string(quota_level_name(st->overall)));
	json_object_object_add(o, "override_active", json_object_new_boolean(st->override));
	for (int i = 0; i < QUOTA_NKINDS; i++)
		json_object_object_add(o, quota_kind_name((enum quota_kind)i), window_json(&st->w[i]));
	return o;
}

/* OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}: the
 * hourly call window, and the token window with the least room */
static void openai_ratelimit_headers(struct http_req *req, const struct quota_status *st)
{
	const struct quota_window *h = &st->w[QUOTA_HOUR], *t = NULL;
	char v[32], name[48];

	for (int i = 0; i < QUOTA_NKINDS; i++)
		if (i != QUOTA_HOUR && st->w[i].limit >= 0 && (!t || st->w[i].remaining < t->remaining))
			t = &st->w[i];
	for (int k = 0; k < 2; k++) {
		const struct quota_window *w = k ? t : h;
		const char *what = k ? "tokens" : "requests";
		long long secs;

		if (!w || w->limit < 0)
			continue;
		secs = (long long)(w->resets_at - req->now);
		snprintf(name, sizeof name, "x-ratelimit-limit-%s", what);
		snprintf(v, sizeof v, "%lld", w->limit);
		http_add_header(req, name, v);
		snprintf(name, sizeof name, "x-ratelimit-remaining-%s", what);
		snprintf(v, sizeof v, "%lld", w->remaining > 0 ? w->remaining : 0);
		http_add_header(req, name, v);
		snprintf(name, sizeof name, "x-ratelimit-reset-%s", what);
		snprintf(v, sizeof v, "%llds", secs > 0 ? secs : 0);
		http_add_header(req, name, v);
	}
}

void api_ratelimit_headers(struct http_req *req, const struct quota_status *st)
{
	char pol[256], cur[256], lim[256], rem[256], rst[256];

	if (req->openai)
		openai_ratelimit_headers(req, st);
	if (quota_ratelimit_headers(st, req->now, pol, cur, lim, rem, rst) < 0)
		return;
	http_add_header(req, "RateLimit-Policy", pol);
	http_add_header(req, "RateLimit", cur);
	http_add_header(req, "RateLimit-Limit", lim);
	http_add_header(req, "RateLimit-Remaining", rem);
	http_add_header(req, "RateLimit-Reset", rst);
}

void h_quota_status(struct app *app, struct http_req *req)
{
	struct quota_status st;
	enum qc_err rc = quota_status_get(app->db, req->user.id, NULL, 0, req->now, &st);
	json_object *o;

	if (rc != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	o = status_json(&st);
	api_ratelimit_headers(req, &st);
	http_send_json(req, 200, o);
	json_object_put(o);
}

void h_quota_plans(struct app *app, struct http_req *req)
{
	static const char *const names[] = { "name", "display_name", "tokens_per_day",
		"tokens_per_month", "calls_per_hour", "session_ttl_seconds", "content_ttl_seconds" };
	struct db_rows *r = NULL;
	enum qc_err rc = quota_plans(app->db, &r);
	json_object *o, *arr;

	if (rc != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	o = json_object_new_object();
	arr = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *p = json_object_new_object();
		for (unsigned c = 0; c < 7; c++) {
			const char *v = db_cell(r, i, c);
			json_object_object_add(p, names[c], !v ? NULL : c < 2 ? json_object_new_string(v)
						 : json_object_new_int64(strtoll(v, NULL, 10)));
		}
		json_object_array_add(arr, p);
	}
	json_object_object_add(o, "plans", arr);
	db_rows_free(r);
	http_send_json(req, 200, o);
	json_object_put(o);
}

/* task_type, prompt?, max_tokens? -> task and the prompt-rule minimum. */
static int parse_task(struct http_req *req, const char **task, long long *min)
{
	static const char *const allowed[] = { "task_type", "prompt", "max_tokens", NULL };
	const char *prompt = NULL;
	size_t tlen = 0, plen = 0;
	long long max_tokens = 0;
	char err[256];

	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "task_type", 1, QUOTA_TASK_MAX, 1, task, &tlen, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "prompt", 0, (size_t)-1, 0, &prompt, &plen, err, sizeof err) < 0 ||
	    jsonu_get_int(req->json, "max_tokens", 0, 1, MAX_TOKENS_LIMIT, &max_tokens, err, sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return -1;
	}
	if (!quota_task_ok(*task, tlen)) {
		api_error(req, QC_EINPUT, "field 'task_type' must be 1-64 characters of A-Z a-z 0-9 _ . -");
		return -1;
	}
	*min = quota_prompt_min(prompt, plen, max_tokens);
	return 0;
}

/* Would a reservation pass against st? Marks the windows it would exceed. */
static int would_pass(struct quota_status *st)
{
	int ok = 1;
	for (int i = 0; i < QUOTA_NKINDS; i++) {
		struct quota_window *w = &st->w[i];
		long long need = i == QUOTA_HOUR ? 1 : st->estimate;
		if (w->limit >= 0 && w->used + w->reserved + need > w->limit) {
			w->over = 1;
			ok = 0;
		}
	}
	return ok;
}

/* 429 naming the window that refused; Retry-After is when it resets. */
void api_quota_refusal(struct http_req *req, const struct quota_status *st)
{
	int k = quota_refusing(st);
	char detail[160], ra[32];
	json_object *extra = json_object_new_object(), *pol = json_object_new_array();
	long long secs;

	if (k < 0)
		k = QUOTA_DAY;
	secs = (long long)(st->w[k].resets_at - req->now);
	if (secs < 1)
		secs = 1;
	snprintf(ra, sizeof ra, "%lld", secs);
	snprintf(detail, sizeof detail, "the %s %s limit of %lld is reached; it resets in %lld s",
		 quota_policy_name((enum quota_kind)k), k == QUOTA_HOUR ? "call" : "token",
		 st->w[k].limit, secs);
	for (int i = 0; i < QUOTA_NKINDS; i++)
		if (st->w[i].over) {
			json_object_array_add(pol, json_object_new_string(quota_policy_name((enum quota_kind)i)));
			metrics_quota_refusal(quota_policy_name((enum quota_kind)i), st->plan);
		}
	json_object_object_add(extra, "window", json_object_new_string(quota_kind_name((enum quota_kind)k)));
	json_object_object_add(extra, "violated-policies", pol);
	json_object_object_add(extra, "retry_after", json_object_new_int64(secs));
	json_object_object_add(extra, "estimate", json_object_new_int64(st->estimate));
	json_object_object_add(extra, "quota", status_json(st));
	http_add_header(req, "Retry-After", ra);
	api_ratelimit_headers(req, st);
	http_problem(req, 429, "quota-exceeded", "Quota exceeded", detail, extra);
	json_object_put(extra);
}

void h_quota_check(struct app *app, struct http_req *req)
{
	struct quota_status st;
	const char *task;
	long long min;
	enum qc_err rc;
	json_object *o;
	int ok;

	if (parse_task(req, &task, &min) < 0)
		return;
	if ((rc = quota_status_get(app->db, req->user.id, task, min, req->now, &st)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	ok = would_pass(&st);
	o = json_object_new_object();
	json_object_object_add(o, "allowed", json_object_new_boolean(ok));
	json_object_object_add(o, "estimate", json_object_new_int64(st.estimate));
	if (!ok) {
		int k = quota_refusing(&st);
		json_object_object_add(o, "window", json_object_new_string(quota_kind_name((enum quota_kind)k)));
	}
	json_object_object_add(o, "quota", status_json(&st));
	api_ratelimit_headers(req, &st);
	http_send_json(req, 200, o);
	json_object_put(o);
}

void h_quota_reserve(struct app *app, struct http_req *req)
{
	char id[QUOTA_ID_LEN + 1], iso[32];
	struct quota_status st;
	const char *task;
	long long min;
	time_t expires;
	enum qc_err rc;
	json_object *o;

	if (parse_task(req, &task, &min) < 0)
		return;
	rc = quota_reserve(app->db, req->user.id, task, min, req->now, app->cfg.reservation_ttl,
			   id, &expires, &st);
	if (rc == QC_EQUOTA) {
		api_quota_refusal(req, &st);
		return;
	}
	if (rc != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	qc_iso8601(expires, iso);
	o = json_object_new_object();
	json_object_object_add(o, "reservation_id", json_object_new_string(id));
	json_object_object_add(o, "estimate", json_object_new_int64(st.estimate));
	json_object_object_add(o, "expires_at", json_object_new_string(iso));
	json_object_object_add(o, "status", json_object_new_string("reserved"));
	json_object_object_add(o, "quota", status_json(&st));
	api_ratelimit_headers(req, &st);
	http_send_json(req, 201, o);
	json_object_put(o);
}

static void settle(struct app *app, struct http_req *req, int commit)
{
	static const char *const allowed_c[] = { "reservation_id", "actual_tokens", NULL };
	static const char *const allowed_r[] = { "reservation_id", NULL };
	const char *id;
	size_t idlen;
	long long actual = -1, est = 0;
	char err[256], state[16], detail[128];
	enum qc_err rc;
	json_object *o;

	if (jsonu_only_fields(req->json, commit ? allowed_c : allowed_r, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "reservation_id", 1, 64, 1, &id, &idlen, err, sizeof err) < 0 ||
	    (commit && jsonu_get_int(req->json, "actual_tokens", 1, 0, ACTUAL_LIMIT, &actual,
				     err, sizeof err) < 0)) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (!quota_id_ok(id, idlen)) {
		api_error(req, QC_EINPUT, "field 'reservation_id' must be 32 lowercase hex characters");
		return;
	}
	rc = quota_settle(app->db, req->user.id, id, actual, req->now, state, &est);
	if (rc == QC_ENOTFOUND) {
		api_error(req, rc, "no such reservation");
		return;
	}
	if (rc == QC_ECONFLICT) {
		snprintf(detail, sizeof detail, "the reservation is already %s", state);
		http_problem(req, 409, "reservation-settled", "Conflict", detail, NULL);
		return;
	}
	if (rc != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "reservation_id", json_object_new_string(id));
	json_object_object_add(o, "status", json_object_new_string(state));
	json_object_object_add(o, "estimate", json_object_new_int64(est));
	if (commit) {
		json_object_object_add(o, "actual_tokens", json_object_new_int64(actual));
		json_object_object_add(o, "over_estimate", json_object_new_boolean(actual > est));
	}
	http_send_json(req, 200, o);
	json_object_put(o);
}

void h_quota_commit(struct app *app, struct http_req *req) { settle(app, req, 1); }
void h_quota_release(struct app *app, struct http_req *req) { settle(app, req, 0); }

/* {id} path parameter as a positive user id, or answer 404. */
void h_quota_user(struct app *app, struct http_req *req)
{
	struct quota_status st;
	struct db_rows *ov = NULL;
	long long uid = api_path_id(req, "no such user");
	enum qc_err rc;
	json_object *o;

	if (!uid)
		return;
	if ((rc = quota_status_get(app->db, uid, NULL, 0, req->now, &st)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such user" : NULL);
		return;
	}
	if ((rc = quota_override_get(app->db, uid, &ov)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	o = status_json(&st);
	if (ov->nrows) {
		json_object *jo = json_object_new_object();
		admin_override_limits(jo, ov, 0, 0);
		if (db_cell(ov, 0, 3)) {
			char iso[32];
			qc_iso8601((time_t)db_cell_ll(ov, 0, 3), iso);
			json_object_object_add(jo, "expires_at", json_object_new_string(iso));
		}
		json_object_object_add(jo, "reason", json_object_new_string(db_cell(ov, 0, 4)));
		json_object_object_add(o, "override", jo);
	}
	db_rows_free(ov);
	http_send_json(req, 200, o);
	json_object_put(o);
}

void h_quota_set_plan(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "plan", NULL };
	long long uid = api_path_id(req, "no such user");
	const char *plan;
	size_t len;
	char err[256];
	struct admin_actor actor;
	enum qc_err rc;
	json_object *o;

	if (!uid)
		return;
	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "plan", 1, 32, 1, &plan, &len, err, sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	admin_api_actor(&actor, &req->user);
	rc = admin_user_set_plan(app->db, &actor, uid, plan, req->now);
	if (rc == QC_EINPUT) {
		api_error(req, rc, "field 'plan' names no plan (see GET /api/v1/quota/plans)");
		return;
	}
	if (rc != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such user" : NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "user_id", json_object_new_int64(uid));
	json_object_object_add(o, "plan", json_object_new_string(plan));
	http_send_json(req, 200, o);
	json_object_put(o);
}

/* A limit member: absent -> -2 (keep plan), null -> -1 (unlimited), int >= 0. */
static int override_limit(json_object *body, const char *name, long long *v, char *err, size_t n)
{
	json_object *j;

	*v = -2;
	if (!json_object_object_get_ex(body, name, &j))
		return 0;
	if (json_object_is_type(j, json_type_null)) {
		*v = -1;
		return 1;
	}
	return jsonu_get_int(body, name, 1, 0, 1000000000000LL, v, err, n);
}

void h_quota_set_override(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "tokens_per_day", "tokens_per_month",
		"calls_per_hour", "expires_at", "reason", NULL };
	long long uid = api_path_id(req, "no such user"), d, m, h, exp = 0;
	const char *reason = "", *iso = NULL;
	size_t len;
	char err[256];
	struct admin_actor actor;
	enum qc_err rc;
	json_object *j;
	int nd, nm, nh;

	if (!uid)
		return;
	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    (nd = override_limit(req->json, "tokens_per_day", &d, err, sizeof err)) < 0 ||
	    (nm = override_limit(req->json, "tokens_per_month", &m, err, sizeof err)) < 0 ||
	    (nh = override_limit(req->json, "calls_per_hour", &h, err, sizeof err)) < 0 ||
	    jsonu_get_str(req->json, "reason", 0, 255, 1, &reason, &len, err, sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (!nd && !nm && !nh) {
		api_error(req, QC_EINPUT, "give at least one of 'tokens_per_day', 'tokens_per_month', "
			  "'calls_per_hour' (an integer, or null for unlimited)");
		return;
	}
	if (json_object_object_get_ex(req->json, "expires_at", &j) && !json_object_is_type(j, json_type_null)) {
		if (jsonu_get_str(req->json, "expires_at", 1, 32, 1, &iso, &len, err, sizeof err) < 0 ||
		    qc_parse_iso8601(iso, &exp) < 0) {
			api_error(req, QC_EINPUT, "field 'expires_at' must be an ISO 8601 UTC time such as "
				  "2026-12-31T23:59:59Z, or null");
			return;
		}
		if (exp <= req->now) {
			api_error(req, QC_EINPUT, "field 'expires_at' is in the past");
			return;
		}
	}
	admin_api_actor(&actor, &req->user);
	rc = admin_override_set(app->db, &actor, uid, d, m, h, (time_t)exp, reason ? reason : "", req->now);
	if (rc != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such user" : NULL);
		return;
	}
	h_quota_user(app, req);
}

void h_quota_clear_override(struct app *app, struct http_req *req)
{
	long long uid = api_path_id(req, "no such user");
	struct admin_actor actor;
	enum qc_err rc;

	if (!uid)
		return;
	admin_api_actor(&actor, &req->user);
	if ((rc = admin_override_clear(app->db, &actor, uid, req->now)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "this user has no override" : NULL);
		return;
	}
	http_send(req, 204, "application/json", "", 0);
}

/* GET /api/v1/admin/overrides?within_days=N (admin): overrides in force that
 * end within N days (default 7), soonest first (SPEC §2, §13: loyal-customer
 * overrides about to expire). */
void h_quota_overrides(struct app *app, struct http_req *req)
{
	struct db_rows *r = NULL;
	long long days;
	char iso[32];
	json_object *arr;
	enum qc_err rc;

	if (api_query_int(req, "within_days", 1, 365, 7, &days) < 0)
		return;
	if ((rc = quota_overrides_expiring(app->db, req->now, days * 86400, 500, &r)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	arr = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "user_id", json_object_new_int64(db_cell_ll(r, i, 0)));
		json_object_object_add(o, "email", json_object_new_string(db_cell(r, i, 1)));
		json_object_object_add(o, "plan", json_object_new_string(db_cell(r, i, 2)));
		admin_override_limits(o, r, i, 3);
		qc_iso8601(db_cell_ll(r, i, 6), iso);
		json_object_object_add(o, "expires_at", json_object_new_string(iso));
		json_object_object_add(o, "reason", json_object_new_string(db_cell(r, i, 7)));
		json_object_array_add(arr, o);
	}
	db_rows_free(r);
	http_send_json(req, 200, arr);
	json_object_put(arr);
}
