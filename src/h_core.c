/*
 * h_core.c - handlers for the service itself: health and the caller's identity.
 */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "metrics.h"
#include "migrate.h"
#include "usage.h"

void h_health(struct app *app, struct http_req *req)
{
	json_object *o;

	/* a 1-second read cache keeps the health probe off the database */
	if (req->now != app->health_at) {
		long long v = 0;
		app->health_db_ok = migrate_current(app->db, &v) == QC_OK;
		if (app->health_db_ok)
			app->health_schema = v;
		app->health_at = req->now;
	}
	o = json_object_new_object();
	json_object_object_add(o, "status", json_object_new_string(app->health_db_ok ? "ok" : "degraded"));
	json_object_object_add(o, "version", json_object_new_string(QC_VERSION));
	json_object_object_add(o, "database", json_object_new_boolean(app->health_db_ok));
	json_object_object_add(o, "schema_version", json_object_new_int64(app->health_schema));
	http_send_json(req, app->health_db_ok ? 200 : 503, o);
	json_object_put(o);
}

void h_me(struct app *app, struct http_req *req)
{
	json_object *o = json_object_new_object();

	(void)app;
	json_object_object_add(o, "id", json_object_new_int64(req->user.id));
	json_object_object_add(o, "email", json_object_new_string(req->user.email));
	json_object_object_add(o, "plan", json_object_new_string(req->user.plan));
	json_object_object_add(o, "role", json_object_new_string(req->user.is_admin ? "admin" : "user"));
	http_send_json(req, 200, o);
	json_object_put(o);
}

/* Admin key, or (when allowed) a request from the loopback interface. */
void h_metrics(struct app *app, struct http_req *req)
{
	const char *ra = req->remote_addr ? req->remote_addr : "";
	int loopback = strncmp(ra, "127.", 4) == 0 || strcmp(ra, "::1") == 0;
	char *text = NULL;
	size_t len = 0;
	enum qc_err rc;

	if (req->authorization || !(loopback && app->cfg.metrics_allow_loopback)) {
		rc = auth_authenticate(app->db, req->authorization, req->now,
				       app->cfg.auth_cache_seconds, &req->user);
		if (rc != QC_OK) {
			api_error(req, rc, rc == QC_EAUTH ? "metrics need an admin key (or loopback)" : NULL);
			return;
		}
		if (!req->user.is_admin) {
			api_error(req, QC_EFORBIDDEN, "metrics need an admin key");
			return;
		}
	}
	/* this worker's own counts are current (a scrape, not a hot path) */
	cache_flush(app->db);
	usage_flush(app->db);
	metrics_flush(app->db);
	if ((rc = metrics_render(app->db, &text, &len)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}
