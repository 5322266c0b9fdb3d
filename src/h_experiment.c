/*
 * h_experiment.c - the admin routes of A/B experiments (SPEC §13):
 *
 *   GET  /api/v1/admin/experiments            every experiment, with its arms
 *   POST /api/v1/admin/experiments            {name, control_pct?, description?}
 *   GET  /api/v1/admin/experiments/{id}
 *   POST /api/v1/admin/experiments/{id}/start
 *   POST /api/v1/admin/experiments/{id}/stop
 *
 * Thin: parse, call experiment.c (which quotacachectl calls too), answer.
 */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "app.h"
#include "experiment.h"
#include "jsonu.h"

static void answer(struct app *app, struct http_req *req, long long id, int status)
{
	json_object *o = NULL;
	enum qc_err rc = exp_json(app->db, id, &o);

	if (rc != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such experiment" : NULL);
		return;
	}
	http_send_json(req, status, o);
	json_object_put(o);
}

void h_exp_list(struct app *app, struct http_req *req)
{
	answer(app, req, 0, 200);
}

void h_exp_get(struct app *app, struct http_req *req)
{
	long long id = api_path_id(req, "no such experiment");

	if (id)
		answer(app, req, id, 200);
}

void h_exp_create(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "name", "control_pct", "description", NULL };
	const char *name = NULL, *desc = NULL;
	size_t nlen = 0, dlen = 0;
	long long pct = 50, id = 0;
	char err[256];
	struct admin_actor actor;
	enum qc_err rc;

	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "name", 1, EXP_NAME_MAX, 1, &name, &nlen, err, sizeof err) < 0 ||
	    jsonu_get_str(req->json, "description", 0, EXP_DESC_MAX, 0, &desc, &dlen, err, sizeof err) < 0 ||
	    jsonu_get_int(req->json, "control_pct", 0, 1, 99, &pct, err, sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (!exp_name_ok(name, nlen)) {
		api_error(req, QC_EINPUT, "field 'name' must be 1-64 characters of A-Z a-z 0-9 _ . -");
		return;
	}
	if (desc && (strlen(desc) != dlen || !cache_utf8_ok(desc, dlen))) {
		api_error(req, QC_EINPUT, "field 'description' must be UTF-8 text without NUL");
		return;
	}
	admin_api_actor(&actor, &req->user);
	if ((rc = admin_experiment_create(app->db, &actor, name, desc, (int)pct, req->now, &id)) != QC_OK) {
		api_error(req, rc, rc == QC_ECONFLICT ? "an experiment with this name exists" : NULL);
		return;
	}
	answer(app, req, id, 201);
}

static void transition(struct app *app, struct http_req *req, int start)
{
	long long id = api_path_id(req, "no such experiment");
	struct admin_actor actor;
	enum qc_err rc;

	if (!id)
		return;
	admin_api_actor(&actor, &req->user);
	rc = admin_experiment_run(app->db, &actor, id, start, req->now);
	if (rc != QC_OK) {
		api_error(req, rc, rc == QC_ENOTFOUND ? "no such experiment"
				 : rc != QC_ECONFLICT ? NULL
				 : start ? "only a draft can start, and only while no other experiment runs"
				 : "only a running experiment can stop");
		return;
	}
	answer(app, req, id, 200);
}

void h_exp_start(struct app *app, struct http_req *req)
{
	transition(app, req, 1);
}

void h_exp_stop(struct app *app, struct http_req *req)
{
	transition(app, req, 0);
}
