/*
 * experiment.c - A/B experiments with and without caching (see experiment.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysqld_error.h>

#include "db.h"
#include "experiment.h"

/* --- pure ------------------------------------------------------------ */

enum exp_arm exp_arm_of(long long user, const char *name, int control_pct)
{
	char buf[EXP_NAME_MAX + 32], hex[65];
	int n = snprintf(buf, sizeof buf, "%s%c%lld", name, 0, user);
	unsigned long v;

	if (n < 0 || (size_t)n >= sizeof buf)
		n = (int)sizeof buf - 1;
	qc_sha256_hex(buf, (size_t)n, hex);
	hex[8] = 0;
	v = strtoul(hex, NULL, 16);
	return (int)(v % 100) < control_pct ? EXP_CONTROL : EXP_TREATMENT;
}

const char *exp_arm_name(enum exp_arm a)
{
	return a == EXP_CONTROL ? "control" : a == EXP_TREATMENT ? "treatment" : NULL;
}

int exp_name_ok(const char *s, size_t len)
{
	if (len < 1 || len > EXP_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/* --- database ---------------------------------------------------------- */

enum qc_err exp_create(struct db *db, const char *name, const char *description,
		       int control_pct, time_t now, long long *id)
{
	static const char sql[] = "INSERT INTO experiments (name, description, control_pct, created_at)"
				  " VALUES (?, ?, ?, ?)";
	struct db_val p[4] = { DB_STR(name), DB_STR(description ? description : ""),
			       DB_INT(control_pct), DB_INT(now) };
	enum qc_err rc;

	*id = 0;
	if (!exp_name_ok(name, strlen(name)) || control_pct < 1 || control_pct > 99 ||
	    (description && strlen(description) > EXP_DESC_MAX))
		return QC_EINPUT;
	if ((rc = db_exec(db, sql, p, 4, NULL)) != QC_OK)
		return db_errno(db) == ER_DUP_ENTRY ? QC_ECONFLICT : rc;
	*id = (long long)db_insert_id(db);
	return QC_OK;
}

enum qc_err exp_find(struct db *db, const char *s, long long *id)
{
	static const char sql[] = "SELECT id FROM experiments WHERE name = ? OR id = ?";
	char *end;
	long long n = strtoll(s, &end, 10);
	struct db_val p[2] = { DB_STR(s), DB_INT(*end || n <= 0 ? -1 : n) };
	struct db_rows *r = NULL;
	enum qc_err rc;

	*id = 0;
	if ((rc = db_query(db, sql, p, 2, &r)) != QC_OK)
		return rc;
	if (r->nrows)
		*id = db_cell_ll(r, 0, 0);
	db_rows_free(r);
	return *id ? QC_OK : QC_ENOTFOUND;
}

/* a conditional UPDATE of the state; nothing changed: not found or conflict */
static enum qc_err transition(struct db *db, const char *sql, long long id, time_t now)
{
	struct db_val p[2] = { DB_INT(now), DB_INT(id) };
	struct db_val q[1] = { DB_INT(id) };
	unsigned long long n = 0;
	struct db_rows *r = NULL;
	enum qc_err rc = db_exec(db, sql, p, 2, &n);

	if (rc != QC_OK)
		/* another experiment holds the running guard */
		return db_errno(db) == ER_DUP_ENTRY ? QC_ECONFLICT : rc;
	exp_forget();
	if (n == 1)
		return QC_OK;
	if ((rc = db_query(db, "SELECT 1 FROM experiments WHERE id = ?", q, 1, &r)) != QC_OK)
		return rc;
	rc = r->nrows ? QC_ECONFLICT : QC_ENOTFOUND;
	db_rows_free(r);
	return rc;
}

enum qc_err exp_start(struct db *db, long long id, time_t now)
{
	return transition(db, "UPDATE experiments SET state = 'running', started_at = ?"
			      " WHERE id = ? AND state = 'draft'", id, now);
}

enum qc_err exp_stop(struct db *db, long long id, time_t now)
{
	return transition(db, "UPDATE experiments SET state = 'stopped', stopped_at = ?"
			      " WHERE id = ? AND state = 'running'", id, now);
}

static struct exp_running running;     /* the copy */
static time_t running_at;              /* when it was read (wall clock); 0: never */
static pthread_mutex_t running_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards the two above */

enum qc_err exp_running(struct db *db, struct exp_running *out)
{
	static const char sql[] = "SELECT id, name, control_pct FROM experiments WHERE state = 'running'";
	time_t now = time(NULL);
	enum qc_err rc = QC_OK;

	pthread_mutex_lock(&running_mu);
	if (!running_at || now - running_at >= EXP_CACHE_S || now < running_at) {
		struct db_rows *r = NULL;
		if ((rc = db_query(db, sql, NULL, 0, &r)) == QC_OK) {
			memset(&running, 0, sizeof running);
			if (r->nrows) {
				running.id = db_cell_ll(r, 0, 0);
				snprintf(running.name, sizeof running.name, "%s", db_cell(r, 0, 1));
				running.control_pct = (int)db_cell_ll(r, 0, 2);
			}
			running_at = now;
			db_rows_free(r);
		}
	}
	*out = running;
	pthread_mutex_unlock(&running_mu);
	return rc;
}

void exp_forget(void)
{
	pthread_mutex_lock(&running_mu);
	running_at = 0;
	pthread_mutex_unlock(&running_mu);
}

/* one arm's figures from a row of SQL_ARMS (columns from 2 on) */
static json_object *arm_json(const struct db_rows *r, unsigned i)
{
	json_object *o = json_object_new_object();
	long long req = r ? db_cell_ll(r, i, 2) : 0, hits = r ? db_cell_ll(r, i, 3) : 0;
	long long lat = r ? db_cell_ll(r, i, 4) : 0, calls = r ? db_cell_ll(r, i, 7) : 0;

	json_object_object_add(o, "requests", json_object_new_int64(req));
	json_object_object_add(o, "hits", json_object_new_int64(hits));
	json_object_object_add(o, "hit_ratio", json_object_new_double(req ? (double)hits / (double)req : 0));
	json_object_object_add(o, "upstream_calls", json_object_new_int64(calls));
	json_object_object_add(o, "latency_ms_mean", json_object_new_double(req ? (double)lat / (double)req : 0));
	json_object_object_add(o, "billed_usd",
			       json_object_new_double(r ? (double)db_cell_ll(r, i, 5) / 1e6 : 0));
	json_object_object_add(o, "saved_usd",
			       json_object_new_double(r ? (double)db_cell_ll(r, i, 6) / 1e6 : 0));
	return o;
}

enum qc_err exp_json(struct db *db, long long id, json_object **out)
{
	static const char sql_exp[] =
		"SELECT id, name, description, control_pct, state, created_at, started_at, stopped_at"
		" FROM experiments WHERE (? = 0 OR id = ?) ORDER BY id DESC LIMIT 200";
	static const char sql_arms[] =
		"SELECT experiment_id, arm, COUNT(*), SUM(cached), SUM(latency_ms), SUM(cost_micro),"
		" SUM(saved_micro), SUM(cached = 0 AND outcome IN ('ok', 'partial')) FROM usage_events"
		" WHERE experiment_id IS NOT NULL AND (? = 0 OR experiment_id = ?)"
		" GROUP BY experiment_id, arm";
	static const char *const states_at[] = { "created_at", "started_at", "stopped_at" };
	struct db_val p[2] = { DB_INT(id), DB_INT(id) };
	struct db_rows *e = NULL, *a = NULL;
	json_object *arr;
	enum qc_err rc;

	*out = NULL;
	if ((rc = db_query(db, sql_exp, p, 2, &e)) != QC_OK ||
	    (rc = db_query(db, sql_arms, p, 2, &a)) != QC_OK)
		goto done;
	if (id && !e->nrows) {
		rc = QC_ENOTFOUND;
		goto done;
	}
	arr = json_object_new_array();
	for (unsigned i = 0; i < e->nrows; i++) {
		json_object *o = json_object_new_object(), *arms = json_object_new_object();
		long long eid = db_cell_ll(e, i, 0);
		json_object_object_add(o, "id", json_object_new_int64(eid));
		json_object_object_add(o, "name", json_object_new_string(db_cell(e, i, 1)));
		json_object_object_add(o, "description", json_object_new_string(db_cell(e, i, 2)));
		json_object_object_add(o, "control_pct", json_object_new_int64(db_cell_ll(e, i, 3)));
		json_object_object_add(o, "state", json_object_new_string(db_cell(e, i, 4)));
		for (unsigned c = 0; c < 3; c++) {
			char iso[32];
			if (db_cell_null(e, i, 5 + c)) {
				json_object_object_add(o, states_at[c], NULL);
				continue;
			}
			qc_iso8601((time_t)db_cell_ll(e, i, 5 + c), iso);
			json_object_object_add(o, states_at[c], json_object_new_string(iso));
		}
		for (int arm = EXP_CONTROL; arm <= EXP_TREATMENT; arm++) {
			const char *an = exp_arm_name((enum exp_arm)arm);
			unsigned row = a->nrows;
			for (unsigned j = 0; j < a->nrows; j++)
				if (db_cell_ll(a, j, 0) == eid && strcmp(db_cell(a, j, 1), an) == 0)
					row = j;
			json_object_object_add(arms, an, arm_json(row < a->nrows ? a : NULL, row));
		}
		json_object_object_add(o, "arms", arms);
		json_object_array_add(arr, o);
	}
	if (id) {
		*out = json_object_get(json_object_array_get_idx(arr, 0));
		json_object_put(arr);
	} else {
		*out = arr;
	}
done:
	db_rows_free(e);
	db_rows_free(a);
	return rc;
}
