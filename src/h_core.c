/*
 * h_core.c - handlers for the service itself: health and the caller's identity.
 */
#include "app.h"
#include "migrate.h"

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
