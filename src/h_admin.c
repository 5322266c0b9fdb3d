/*
 * h_admin.c - the admin console's routes (SPEC §14), thin over admin.c:
 *
 *   GET    /api/v1/admin/users?q=&page=&per_page=   search, paged
 *   POST   /api/v1/admin/users                      {email, plan, admin?, key_expires_at?}
 *   GET    /api/v1/admin/users/{id}                 with keys and override
 *   POST   /api/v1/admin/users/{id}/disable | /enable
 *   POST   /api/v1/admin/users/{id}/keys            {expires_at?}: the key, shown once
 *   DELETE /api/v1/admin/keys/{prefix}
 *   GET    /api/v1/admin/users/{id}/cache?limit=N   the user's live entries
 *   DELETE /api/v1/admin/users/{id}/cache           purge
 *   GET    /api/v1/admin/system-prompts
 *   PUT    /api/v1/admin/system-prompts/{key}       {value}
 *   DELETE /api/v1/admin/system-prompts/{key}
 *   GET    /api/v1/admin/audit?action=&actor=&user_id=&since=&until=&page=&per_page=
 *   GET    /api/v1/admin/spend?days=N              billed, saved, refusals per day and plan
 *   GET    /api/v1/admin/nearest?limit=N           users nearest their daily limit
 *
 * Plans and overrides keep their routes under /api/v1/quota/users/{id}/,
 * audited through the same functions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "app.h"
#include "jsonu.h"

static void send(struct http_req *req, int status, json_object *o)
{
	http_send_json(req, status, o);
	json_object_put(o);
}

/* An optional ISO 8601 UTC time member in the future: 0 absent or null, 1
 * set, -1 answered 400. */
static int future_time(struct http_req *req, const char *name, long long *t)
{
	json_object *j;
	const char *iso;
	size_t len;
	char err[256];

	*t = 0;
	if (!json_object_object_get_ex(req->json, name, &j) || json_object_is_type(j, json_type_null))
		return 0;
	if (jsonu_get_str(req->json, name, 1, 32, 1, &iso, &len, err, sizeof err) < 0 ||
	    qc_parse_iso8601(iso, t) < 0 || *t <= req->now) {
		snprintf(err, sizeof err, "field '%s' must be a future ISO 8601 UTC time such as "
			 "2027-12-31T23:59:59Z, or null", name);
		api_error(req, QC_EINPUT, err);
		return -1;
	}
	return 1;
}

void h_admin_users(struct app *app, struct http_req *req)
{
	char q[256] = "";
	long long page, per;
	json_object *o;
	enum qc_err rc;

	/* a value that fills the buffer was cut: refused, never searched cut */
	if (http_query_param(req, "q", q, sizeof q) &&
	    (!cache_utf8_ok(q, strlen(q)) || strlen(q) >= sizeof q - 1)) {
		api_error(req, QC_EINPUT, "q must be UTF-8 text of at most 254 bytes");
		return;
	}
	if (api_query_int(req, "page", 1, 1000000, 1, &page) < 0 || api_query_int(req, "per_page", 1, 200, 50, &per) < 0)
		return;
	if ((rc = admin_users_json(app->db, q, page, per, &o)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	send(req, 200, o);
}

void h_admin_user_create(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "email", "plan", "admin", "key_expires_at", NULL };
	const char *email, *plan;
	size_t len;
	long long exp = 0, id = 0;
	int admin = 0;
	char err[256], key[AUTH_KEY_LEN + 1];
	struct admin_actor actor;
	json_object *j, *o = NULL;
	enum qc_err rc;

	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "email", 1, 254, 1, &email, &len, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "plan", 1, 32, 1, &plan, &len, err, sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (json_object_object_get_ex(req->json, "admin", &j)) {
		if (!json_object_is_type(j, json_type_boolean)) {
			api_error(req, QC_EINPUT, "field 'admin' must be true or false");
			return;
		}
		admin = json_object_get_boolean(j);
	}
	if (future_time(req, "key_expires_at", &exp) < 0)
		return;
	admin_api_actor(&actor, &req->user);
	rc = admin_user_create(app->db, &actor, email, plan, admin, (time_t)exp, req->now, &id, key);
	if (rc == QC_EINPUT) {
		api_error(req, rc, "field 'email' must be an address (3-254 characters, one @, no spaces) and "
			  "'plan' a plan of GET /api/v1/quota/plans");
		return;
	}
	if (rc != QC_OK || (rc = admin_user_json(app->db, id, &o)) != QC_OK) {
		api_error(req, rc, rc == QC_ECONFLICT ? "a user with this email exists" : NULL);
		return;
	}
	/* the key is in this answer only (stored as a hash; every answer is no-store) */
	json_object_object_add(o, "key", json_object_new_string(key));
	send(req, 201, o);
}

void h_admin_user(struct app *app, struct http_req *req)
{
	long long id = api_path_id(req, "no such user");
	json_object *o;
	enum qc_err rc;

	if (!id)
		return;
	if ((rc = admin_user_json(app->db, id, &o)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such user" : NULL);
		return;
	}
	send(req, 200, o);
}

static void set_disabled(struct app *app, struct http_req *req, int disabled)
{
	long long id = api_path_id(req, "no such user");
	struct admin_actor actor;
	enum qc_err rc;

	if (!id)
		return;
	admin_api_actor(&actor, &req->user);
	if (disabled && id == req->user.id) {
		api_error(req, QC_ECONFLICT, "an admin cannot disable their own account");
		return;
	}
	if ((rc = admin_user_set_disabled(app->db, &actor, id, disabled, req->now)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such user" : NULL);
		return;
	}
	h_admin_user(app, req);
}

void h_admin_user_disable(struct app *app, struct http_req *req)
{
	set_disabled(app, req, 1);
}

void h_admin_user_enable(struct app *app, struct http_req *req)
{
	set_disabled(app, req, 0);
}

void h_admin_key_issue(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "expires_at", NULL };
	long long id = api_path_id(req, "no such user"), exp = 0;
	char err[256], key[AUTH_KEY_LEN + 1], prefix[AUTH_KEY_DISPLAY_LEN + 1];
	struct admin_actor actor;
	json_object *o;
	enum qc_err rc;

	if (!id)
		return;
	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (future_time(req, "expires_at", &exp) < 0)
		return;
	admin_api_actor(&actor, &req->user);
	if ((rc = admin_key_issue(app->db, &actor, id, (time_t)exp, req->now, key, prefix)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such user" : NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "user_id", json_object_new_int64(id));
	json_object_object_add(o, "key", json_object_new_string(key));
	json_object_object_add(o, "prefix", json_object_new_string(prefix));
	if (exp) {
		char iso[32];
		qc_iso8601(exp, iso);
		json_object_object_add(o, "expires_at", json_object_new_string(iso));
	} else {
		json_object_object_add(o, "expires_at", NULL);
	}
	send(req, 201, o);
}

void h_admin_key_revoke(struct app *app, struct http_req *req)
{
	const char *prefix = req->match.params[0];
	struct admin_actor actor;
	enum qc_err rc;

	/* a display prefix only: a whole key never goes in a URL */
	if (strlen(prefix) != AUTH_KEY_DISPLAY_LEN || strncmp(prefix, AUTH_KEY_PREFIX, 4) != 0) {
		api_error(req, QC_ENOTFOUND, "no such key (give its 12-character prefix, qck_...)");
		return;
	}
	admin_api_actor(&actor, &req->user);
	if ((rc = admin_key_revoke(app->db, &actor, prefix, req->now)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no active key with this prefix" : NULL);
		return;
	}
	http_send(req, 204, "application/json", "", 0);
}

void h_admin_user_purge(struct app *app, struct http_req *req)
{
	long long id = api_path_id(req, "no such user");
	unsigned long long n = 0;
	struct admin_actor actor;
	json_object *o;
	enum qc_err rc;

	if (!id)
		return;
	admin_api_actor(&actor, &req->user);
	if ((rc = admin_cache_purge(app->db, &actor, id, req->now, &n)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such user" : NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "user_id", json_object_new_int64(id));
	json_object_object_add(o, "deleted", json_object_new_int64((long long)n));
	send(req, 200, o);
}

void h_admin_system_list(struct app *app, struct http_req *req)
{
	json_object *o;
	enum qc_err rc = admin_system_json(app->db, &o);

	if (rc != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	send(req, 200, o);
}

void h_admin_system_put(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "value", NULL };
	const char *key = req->match.params[0], *value;
	size_t len;
	char err[256];
	struct admin_actor actor;
	json_object *o;
	enum qc_err rc;

	if (!cache_key_ok(key, req->match.lens[0])) {
		api_error(req, QC_EINPUT, "a key is 1-255 bytes without control characters");
		return;
	}
	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "value", 1, (size_t)app->cfg.max_body, 0, &value, &len, err,
			  sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	admin_api_actor(&actor, &req->user);
	rc = admin_system_put(app->db, &actor, key, value, len, app->cfg.cache_max_entry, req->now);
	if (rc != QC_OK) {
		api_error(req, rc, rc == QC_EINPUT ? "field 'value' must be UTF-8 text" : NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "key", json_object_new_string(key));
	json_object_object_add(o, "bytes", json_object_new_int64((long long)len));
	send(req, 200, o);
}

void h_admin_system_delete(struct app *app, struct http_req *req)
{
	struct admin_actor actor;
	enum qc_err rc;

	admin_api_actor(&actor, &req->user);
	if ((rc = admin_system_delete(app->db, &actor, req->match.params[0], req->now)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no system-tier entry with this key" : NULL);
		return;
	}
	http_send(req, 204, "application/json", "", 0);
}

void h_admin_audit(struct app *app, struct http_req *req)
{
	char action[65] = "", actor[301] = "", buf[40];
	long long user, page, per;
	long long since = 0, until = 0;
	json_object *o;
	enum qc_err rc;

	if (http_query_param(req, "action", action, sizeof action)) {
		if (strlen(action) >= sizeof action - 1) {
			api_error(req, QC_EINPUT, "action is at most 63 characters");
			return;
		}
		for (const char *c = action; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || *c == '.' || *c == '_')) {
				api_error(req, QC_EINPUT, "action is a name such as user.create, or a family such as user.");
				return;
			}
	}
	if (http_query_param(req, "actor", actor, sizeof actor) &&
	    (!cache_utf8_ok(actor, strlen(actor)) || strlen(actor) >= sizeof actor - 1)) {
		api_error(req, QC_EINPUT, "actor must be UTF-8 text of at most 299 bytes");
		return;
	}
	if ((http_query_param(req, "since", buf, sizeof buf) && qc_parse_iso8601(buf, &since) < 0) ||
	    (http_query_param(req, "until", buf, sizeof buf) && qc_parse_iso8601(buf, &until) < 0)) {
		api_error(req, QC_EINPUT, "since and until are ISO 8601 UTC times such as 2026-12-01T00:00:00Z");
		return;
	}
	if (api_query_int(req, "user_id", 1, 1LL << 62, 0, &user) < 0 || api_query_int(req, "page", 1, 1000000, 1, &page) < 0 ||
	    api_query_int(req, "per_page", 1, 200, 50, &per) < 0)
		return;
	if ((rc = admin_audit_json(app->db, action, actor, user, (time_t)since, (time_t)until, page, per, &o)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	send(req, 200, o);
}

void h_admin_spend(struct app *app, struct http_req *req)
{
	long long days;
	json_object *o;
	enum qc_err rc;

	if (api_query_int(req, "days", 1, 366, 90, &days) < 0)
		return;
	if ((rc = admin_spend_json(app->db, req->now, days, &o)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	send(req, 200, o);
}

void h_admin_nearest(struct app *app, struct http_req *req)
{
	long long n;
	json_object *o;
	enum qc_err rc;

	if (api_query_int(req, "limit", 1, 500, 20, &n) < 0)
		return;
	if ((rc = admin_nearest_json(app->db, req->now, n, &o)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	send(req, 200, o);
}

void h_admin_user_cache(struct app *app, struct http_req *req)
{
	long long id = api_path_id(req, "no such user"), n;
	json_object *o;
	enum qc_err rc;

	if (!id || api_query_int(req, "limit", 1, 1000, 100, &n) < 0)
		return;
	if ((rc = admin_user_cache_json(app->db, id, req->now, n, &o)) != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such user" : NULL);
		return;
	}
	send(req, 200, o);
}
