/*
 * api.c - the route table and the request pipeline shared by every route:
 * match -> body limit -> content type -> JSON object -> authentication ->
 * role -> handler.  Handlers only see requests that passed all of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "inflight.h"
#include "jsonu.h"
#include "log.h"
#include "metrics.h"
#include "usage.h"

const struct route api_routes[] = {
	{ "GET", "/api/v1/health", ROUTE_PUBLIC, "health", h_health },
	{ "GET", "/api/v1/me", ROUTE_AUTH, "me", h_me },
	{ "GET", "/api/v1/quota/status", ROUTE_AUTH, "quota_status", h_quota_status },
	{ "GET", "/api/v1/quota/plans", ROUTE_PUBLIC, "quota_plans", h_quota_plans },
	{ "POST", "/api/v1/quota/check", ROUTE_AUTH | ROUTE_JSON, "quota_check", h_quota_check },
	{ "POST", "/api/v1/quota/reserve", ROUTE_AUTH | ROUTE_JSON, "quota_reserve", h_quota_reserve },
	{ "POST", "/api/v1/quota/commit", ROUTE_AUTH | ROUTE_JSON, "quota_commit", h_quota_commit },
	{ "POST", "/api/v1/quota/release", ROUTE_AUTH | ROUTE_JSON, "quota_release", h_quota_release },
	{ "GET", "/api/v1/quota/users/{id}", ROUTE_ADMIN, "quota_user", h_quota_user },
	{ "PUT", "/api/v1/quota/users/{id}/plan", ROUTE_ADMIN | ROUTE_JSON, "quota_set_plan", h_quota_set_plan },
	{ "PUT", "/api/v1/quota/users/{id}/override", ROUTE_ADMIN | ROUTE_JSON, "quota_set_override",
	  h_quota_set_override },
	{ "DELETE", "/api/v1/quota/users/{id}/override", ROUTE_ADMIN, "quota_clear_override",
	  h_quota_clear_override },
	{ "GET", "/api/v1/cache/stats", ROUTE_AUTH, "cache_stats", h_cache_stats },
	{ "GET", "/api/v1/cache/stats/timeseries", ROUTE_AUTH, "cache_timeseries", h_cache_timeseries },
	{ "POST", "/api/v1/cache/hash", ROUTE_AUTH | ROUTE_JSON, "cache_hash", h_cache_hash },
	{ "POST", "/api/v1/cache/cleanup", ROUTE_ADMIN, "cache_cleanup", h_cache_cleanup },
	{ "GET", "/api/v1/cache/{tier}/{key}", ROUTE_AUTH, "cache_get", h_cache_get },
	{ "PUT", "/api/v1/cache/{tier}/{key}", ROUTE_AUTH | ROUTE_JSON, "cache_put", h_cache_put },
	{ "DELETE", "/api/v1/cache/{tier}/{key}", ROUTE_AUTH, "cache_delete", h_cache_delete },
	{ "POST", "/api/v1/generate", ROUTE_AUTH | ROUTE_JSON, "generate", h_generate },
	{ "POST", "/api/v1/admin/warming/run", ROUTE_ADMIN, "warming_run", h_warming_run },
	{ "GET", "/api/v1/admin/overrides", ROUTE_ADMIN, "overrides_expiring", h_quota_overrides },
	{ "GET", "/api/v1/admin/users", ROUTE_ADMIN, "admin_users", h_admin_users },
	{ "POST", "/api/v1/admin/users", ROUTE_ADMIN | ROUTE_JSON, "admin_user_create", h_admin_user_create },
	{ "GET", "/api/v1/admin/users/{id}", ROUTE_ADMIN, "admin_user", h_admin_user },
	{ "POST", "/api/v1/admin/users/{id}/disable", ROUTE_ADMIN, "admin_user_disable", h_admin_user_disable },
	{ "POST", "/api/v1/admin/users/{id}/enable", ROUTE_ADMIN, "admin_user_enable", h_admin_user_enable },
	{ "POST", "/api/v1/admin/users/{id}/keys", ROUTE_ADMIN | ROUTE_JSON, "admin_key_issue", h_admin_key_issue },
	{ "GET", "/api/v1/admin/users/{id}/cache", ROUTE_ADMIN, "admin_user_cache", h_admin_user_cache },
	{ "DELETE", "/api/v1/admin/users/{id}/cache", ROUTE_ADMIN, "admin_user_purge", h_admin_user_purge },
	{ "DELETE", "/api/v1/admin/keys/{prefix}", ROUTE_ADMIN, "admin_key_revoke", h_admin_key_revoke },
	{ "GET", "/api/v1/admin/system-prompts", ROUTE_ADMIN, "admin_system", h_admin_system_list },
	{ "PUT", "/api/v1/admin/system-prompts/{key}", ROUTE_ADMIN | ROUTE_JSON, "admin_system_put",
	  h_admin_system_put },
	{ "DELETE", "/api/v1/admin/system-prompts/{key}", ROUTE_ADMIN, "admin_system_delete", h_admin_system_delete },
	{ "GET", "/api/v1/admin/audit", ROUTE_ADMIN, "admin_audit", h_admin_audit },
	{ "GET", "/api/v1/admin/spend", ROUTE_ADMIN, "admin_spend", h_admin_spend },
	{ "GET", "/api/v1/admin/nearest", ROUTE_ADMIN, "admin_nearest", h_admin_nearest },
	{ "GET", "/api/v1/admin/experiments", ROUTE_ADMIN, "experiments", h_exp_list },
	{ "POST", "/api/v1/admin/experiments", ROUTE_ADMIN | ROUTE_JSON, "experiment_create", h_exp_create },
	{ "GET", "/api/v1/admin/experiments/{id}", ROUTE_ADMIN, "experiment", h_exp_get },
	{ "POST", "/api/v1/admin/experiments/{id}/start", ROUTE_ADMIN, "experiment_start", h_exp_start },
	{ "POST", "/api/v1/admin/experiments/{id}/stop", ROUTE_ADMIN, "experiment_stop", h_exp_stop },
	{ "GET", "/api/v1/usage", ROUTE_AUTH, "usage", h_usage },
	{ "GET", "/api/v1/models", ROUTE_AUTH, "models", h_models },
	{ "GET", "/metrics", ROUTE_PUBLIC, "metrics", h_metrics },
	/* OpenAI's API at the root /v1/ (SPEC §10): errors in OpenAI's shape */
	{ "POST", "/v1/chat/completions", ROUTE_AUTH | ROUTE_JSON, "openai_chat", h_oai_chat },
	{ "GET", "/v1/models", ROUTE_AUTH, "openai_models", h_models },
};
const size_t api_nroutes = sizeof api_routes / sizeof api_routes[0];

void api_error(struct http_req *req, enum qc_err e, const char *detail)
{
	static const struct { enum qc_err e; const char *type; } types[] = {
		{ QC_EINPUT, "invalid-input" }, { QC_EAUTH, "unauthorized" },
		{ QC_EFORBIDDEN, "forbidden" }, { QC_ENOTFOUND, "not-found" },
		{ QC_ECONFLICT, "conflict" }, { QC_ETOOBIG, "payload-too-large" },
		{ QC_EQUOTA, "quota-exceeded" }, { QC_EUPSTREAM, "upstream-failure" },
		{ QC_EDBDOWN, "database-unavailable" }, { QC_ETIMEOUT, "upstream-timeout" },
		{ QC_ESTORAGE, "storage-exhausted" }, { QC_EBUSY, "server-busy" },
		{ QC_EUSERBUSY, "too-many-in-flight" },
	};
	const char *type = "internal-error";
	int status = qc_http_status(e);

	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (types[i].e == e)
			type = types[i].type;
	if (e == QC_EAUTH)
		http_add_header(req, "WWW-Authenticate", "Bearer realm=\"quotacache\"");
	if (e == QC_EDBDOWN || e == QC_EBUSY || e == QC_EUSERBUSY)
		http_add_header(req, "Retry-After", "1");
	if (status == 500)
		log_error("api", "%s %s failed: %s", req->method, req->path, qc_strerror(e));
	http_problem(req, status, type, http_reason(status), detail ? detail : qc_strerror(e), NULL);
}

static int wants_body(const char *method)
{
	return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	       strcmp(method, "PATCH") == 0;
}

void api_handle(struct app *app, struct http_req *req)
{
	char err[256], detail[300];
	enum qc_err rc;
	unsigned flags;

	if (!req->path) {
		api_error(req, QC_ENOMEM, NULL);
		return;
	}
	if (strlen(req->path) > ROUTE_MAX_PATH) {
		http_problem(req, 414, "uri-too-long", http_reason(414),
			     "the request path is longer than 4096 bytes", NULL);
		return;
	}
	req->openai = strncmp(req->path, "/v1/", 4) == 0;
	switch (route_match(api_routes, api_nroutes, req->method, req->path, &req->match)) {
	case ROUTE_FOUND:
		break;
	case ROUTE_NOT_FOUND:
		snprintf(detail, sizeof detail, "no route for %.200s", req->path);
		http_problem(req, 404, "not-found", "Not Found", detail, NULL);
		return;
	case ROUTE_BAD_METHOD:
		http_add_header(req, "Allow", req->match.allow);
		snprintf(detail, sizeof detail, "method %.16s is not allowed here; allowed: %s",
			 req->method, req->match.allow);
		http_problem(req, 405, "method-not-allowed", "Method Not Allowed", detail, NULL);
		return;
	case ROUTE_BAD_PATH:
		http_problem(req, 400, "invalid-path", "Bad Request",
			     "the path has a bad %-encoding or a control character (such as %00)", NULL);
		return;
	case ROUTE_NOMEM:
		api_error(req, QC_ENOMEM, NULL);
		return;
	}
	flags = req->match.route->flags;

#ifdef QC_TEST_CLOCK
	/* test builds only (configure --enable-test-clock): the request clock
	 * from X-QC-Test-Now, epoch seconds within 2000..2100 */
	if (app->cfg.allow_test_clock) {
		const char *t = http_getenv(req, "HTTP_X_QC_TEST_NOW");
		if (t && *t) {
			char *end;
			long long v = strtoll(t, &end, 10);
			if (*end || t[0] == '-' || t[0] == '+' || v < 946684800LL || v > 4102444800LL) {
				http_problem(req, 400, "invalid-input", http_reason(400),
					     "X-QC-Test-Now takes epoch seconds between 2000 and 2100", NULL);
				return;
			}
			req->now = (time_t)v;
		}
	}
#endif
	if (wants_body(req->method)) {
		rc = http_read_body(req, (size_t)app->cfg.max_body);
		if (rc == QC_ETOOBIG) {
			snprintf(detail, sizeof detail, "the request body is larger than %lld bytes",
				 app->cfg.max_body);
			http_problem(req, 413, "payload-too-large", http_reason(413), detail, NULL);
			return;
		}
		if (rc != QC_OK) {
			api_error(req, rc == QC_EIO ? QC_EINPUT : rc, "the request body could not be read");
			return;
		}
	}
	if (flags & ROUTE_JSON) {
		if (!jsonu_is_json_type(req->content_type)) {
			http_problem(req, 415, "unsupported-media-type", http_reason(415),
				     "the request body must be sent as Content-Type: application/json", NULL);
			return;
		}
		if (jsonu_parse_object(req->body, req->body_len, &req->json, err, sizeof err) < 0) {
			api_error(req, QC_EINPUT, err);
			return;
		}
	}
	if (flags & (ROUTE_AUTH | ROUTE_ADMIN)) {
		rc = auth_authenticate(app->db, req->authorization, req->now,
				       app->cfg.auth_cache_seconds, &req->user);
		if (rc == QC_EAUTH) {
			api_error(req, rc, req->authorization
				  ? "the API key is invalid or revoked"
				  : "send the API key as 'Authorization: Bearer <key>'");
			return;
		}
		if (rc != QC_OK) {
			api_error(req, rc, NULL);
			return;
		}
		if ((flags & ROUTE_ADMIN) && !req->user.is_admin) {
			api_error(req, QC_EFORBIDDEN, "this route needs an admin key");
			return;
		}
	}
	req->match.route->handler(app, req);
	/* a parked request belongs to the engine now: hands off */
	if (!inflight_parked() && !req->sent)
		api_error(req, QC_EIO, "the handler produced no answer");
}

long long api_path_id(struct http_req *req, const char *detail)
{
	const char *s = req->match.params[0];
	char *end;
	long long id = strtoll(s, &end, 10);

	if (*end || id <= 0 || !(s[0] >= '0' && s[0] <= '9')) {
		api_error(req, QC_ENOTFOUND, detail);
		return 0;
	}
	return id;
}

int api_query_int(struct http_req *req, const char *name, long long lo, long long hi, long long def,
		  long long *v)
{
	char buf[32], msg[120];
	char *end;

	*v = def;
	if (!http_query_param(req, name, buf, sizeof buf))
		return 0;
	*v = strtoll(buf, &end, 10);
	if (!*buf || *end || *v < lo || *v > hi) {
		snprintf(msg, sizeof msg, "%s must be an integer from %lld to %lld", name, lo, hi);
		api_error(req, QC_EINPUT, msg);
		return -1;
	}
	return 1;
}
