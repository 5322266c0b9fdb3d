/*
 * admin.c - the operator's actions and reads (see admin.h).
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "cache.h"
#include "db.h"
#include "experiment.h"
#include "quota.h"
#include "users.h"

void admin_cli_actor(struct admin_actor *a)
{
	const char *login = getenv("SUDO_USER");
	struct passwd *pw;

	if (!login || !*login)
		login = (pw = getpwuid(geteuid())) ? pw->pw_name : "unknown";
	memset(a, 0, sizeof *a);
	snprintf(a->name, sizeof a->name, "cli:%s", login);
	a->source = "cli";
}

void admin_api_actor(struct admin_actor *a, const struct auth_user *u)
{
	memset(a, 0, sizeof *a);
	a->id = u->id;
	snprintf(a->name, sizeof a->name, "%s", u->email);
	a->source = "api";
}

/* --- the transaction and its audit row ---------------------------------- */

static enum qc_err begin(struct db *db)
{
	return db_exec(db, "START TRANSACTION", NULL, 0, NULL);
}

static enum qc_err end(struct db *db, enum qc_err rc)
{
	if (rc == QC_OK && (rc = db_exec(db, "COMMIT", NULL, 0, NULL)) == QC_OK)
		return QC_OK;
	db_exec(db, "ROLLBACK", NULL, 0, NULL);
	return rc;
}

/* The audit row of a change (before / after: JSON objects, NULL for none;
 * taken over). */
enum qc_err admin_audit(struct db *db, const struct admin_actor *a, const char *action, long long user,
			const char *target, json_object *before, json_object *after, time_t now)
{
	static const char sql[] =
		"INSERT INTO audit_log (at, actor, actor_id, source, action, target_user, target,"
		" before_json, after_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
	const char *b = before ? json_object_to_json_string_ext(before, JSON_C_TO_STRING_PLAIN) : NULL;
	const char *f = after ? json_object_to_json_string_ext(after, JSON_C_TO_STRING_PLAIN) : NULL;
	struct db_val p[9] = {
		DB_INT(now), DB_STR(a->name), a->id ? DB_INT(a->id) : DB_NULLV, DB_STR(a->source),
		DB_STR(action), user ? DB_INT(user) : DB_NULLV, DB_STR(target ? target : ""),
		b ? DB_STR(b) : DB_NULLV, f ? DB_STR(f) : DB_NULLV,
	};
	enum qc_err rc = db_exec(db, sql, p, 9, NULL);

	json_object_put(before);
	json_object_put(after);
	return rc;
}

static json_object *jiso(long long t)
{
	char iso[32];

	if (t <= 0)
		return NULL;
	qc_iso8601(t, iso);
	return json_object_new_string(iso);
}

/* Row i of a users query (id, email, plan, role, disabled, created_at). */
static json_object *user_row(const struct db_rows *r, unsigned i)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_int64(db_cell_ll(r, i, 0)));
	json_object_object_add(o, "email", json_object_new_string(db_cell(r, i, 1)));
	json_object_object_add(o, "plan", json_object_new_string(db_cell(r, i, 2)));
	json_object_object_add(o, "role", json_object_new_string(db_cell(r, i, 3)));
	json_object_object_add(o, "disabled", json_object_new_boolean(db_cell_ll(r, i, 4) != 0));
	json_object_object_add(o, "created_at", jiso(db_cell_ll(r, i, 5)));
	return o;
}

/* A user as the audit and the console show it; NULL if there is none (rc
 * QC_ENOTFOUND) or on error (rc set).  FOR UPDATE: inside a change. */
static json_object *user_snapshot(struct db *db, long long id, int lock, enum qc_err *rc)
{
	static const char sql[] =
		"SELECT id, email, plan, role, disabled_at IS NOT NULL, UNIX_TIMESTAMP(created_at)"
		" FROM users WHERE id = ?";
	static const char sql_lock[] =
		"SELECT id, email, plan, role, disabled_at IS NOT NULL, UNIX_TIMESTAMP(created_at)"
		" FROM users WHERE id = ? FOR UPDATE";
	struct db_val p[1] = { DB_INT(id) };
	struct db_rows *r = NULL;
	json_object *o;

	if ((*rc = db_query(db, lock ? sql_lock : sql, p, 1, &r)) != QC_OK)
		return NULL;
	if (!r->nrows) {
		db_rows_free(r);
		*rc = QC_ENOTFOUND;
		return NULL;
	}
	o = user_row(r, 0);
	db_rows_free(r);
	return o;
}

static json_object *one_field(const char *name, json_object *v)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, name, v);
	return o;
}

/* --- actions ------------------------------------------------------------ */

enum qc_err admin_user_create(struct db *db, const struct admin_actor *a, const char *email,
			      const char *plan, int is_admin, time_t key_expires, time_t now,
			      long long *id, char key_out[AUTH_KEY_LEN + 1])
{
	static const char sql_exp[] =
		"UPDATE api_keys SET expires_at = FROM_UNIXTIME(?) WHERE user_id = ?";
	json_object *after;
	enum qc_err rc;

	*id = 0;
	if (key_expires && key_expires <= now)
		return QC_EINPUT;
	if ((rc = begin(db)) != QC_OK)
		return rc;
	rc = users_insert(db, email, plan, is_admin, id, key_out);
	if (rc == QC_OK && key_expires) {
		struct db_val p[2] = { DB_INT(key_expires), DB_INT(*id) };
		rc = db_exec(db, sql_exp, p, 2, NULL);
	}
	if (rc == QC_OK && (after = user_snapshot(db, *id, 0, &rc))) {
		json_object_object_add(after, "key_prefix", json_object_new_string_len(key_out, AUTH_KEY_DISPLAY_LEN));
		json_object_object_add(after, "key_expires_at", jiso(key_expires));
		rc = admin_audit(db, a, "user.create", *id, email, NULL, after, now);
	}
	if ((rc = end(db, rc)) != QC_OK)
		*id = 0;
	return rc;
}

enum qc_err admin_user_set_plan(struct db *db, const struct admin_actor *a, long long id,
				const char *plan, time_t now)
{
	json_object *before;
	enum qc_err rc;
	int pe = users_plan_exists(db, plan);

	if (pe < 0)
		return QC_EDB;
	if (!pe)
		return QC_EINPUT;
	if ((rc = begin(db)) != QC_OK)
		return rc;
	if ((before = user_snapshot(db, id, 1, &rc))) {
		json_object *old = json_object_get(json_object_object_get(before, "plan"));
		json_object_put(before);
		if ((rc = users_set_plan(db, id, plan)) == QC_OK)
			rc = admin_audit(db, a, "user.plan", id, NULL, one_field("plan", old),
				   one_field("plan", json_object_new_string(plan)), now);
		else
			json_object_put(old);
	}
	return end(db, rc);
}

enum qc_err admin_user_set_disabled(struct db *db, const struct admin_actor *a, long long id,
				    int disabled, time_t now)
{
	static const char sql[] =
		"UPDATE users SET disabled_at = IF(? = 1, COALESCE(disabled_at, UTC_TIMESTAMP()), NULL) WHERE id = ?";
	struct db_val p[2] = { DB_INT(disabled ? 1 : 0), DB_INT(id) };
	json_object *before;
	enum qc_err rc;

	if ((rc = begin(db)) != QC_OK)
		return rc;
	if ((before = user_snapshot(db, id, 1, &rc))) {
		int was = json_object_get_boolean(json_object_object_get(before, "disabled"));
		json_object_put(before);
		if ((rc = db_exec(db, sql, p, 2, NULL)) == QC_OK)
			rc = admin_audit(db, a, disabled ? "user.disable" : "user.enable", id, NULL,
				   one_field("disabled", json_object_new_boolean(was)),
				   one_field("disabled", json_object_new_boolean(disabled)), now);
	}
	return end(db, rc);
}

enum qc_err admin_key_issue(struct db *db, const struct admin_actor *a, long long id,
			    time_t expires, time_t now, char key_out[AUTH_KEY_LEN + 1],
			    char prefix_out[AUTH_KEY_DISPLAY_LEN + 1])
{
	static const char sql_exp[] =
		"UPDATE api_keys SET expires_at = FROM_UNIXTIME(?) WHERE key_prefix = ? AND user_id = ?";
	json_object *after;
	enum qc_err rc;

	prefix_out[0] = 0;
	if (expires && expires <= now)
		return QC_EINPUT;
	if ((rc = begin(db)) != QC_OK)
		return rc;
	if ((rc = keys_add(db, id, key_out)) == QC_OK) {
		memcpy(prefix_out, key_out, AUTH_KEY_DISPLAY_LEN);
		prefix_out[AUTH_KEY_DISPLAY_LEN] = 0;
		if (expires) {
			struct db_val p[3] = { DB_INT(expires), DB_STR(prefix_out), DB_INT(id) };
			rc = db_exec(db, sql_exp, p, 3, NULL);
		}
	}
	if (rc == QC_OK) {
		after = one_field("key_prefix", json_object_new_string(prefix_out));
		json_object_object_add(after, "expires_at", jiso(expires));
		rc = admin_audit(db, a, "key.issue", id, prefix_out, NULL, after, now);
	}
	if ((rc = end(db, rc)) != QC_OK)
		prefix_out[0] = 0;
	return rc;
}

enum qc_err admin_key_revoke(struct db *db, const struct admin_actor *a, const char *key_or_prefix,
			     time_t now)
{
	static const char sql_prefix[] = "SELECT user_id, key_prefix FROM api_keys WHERE key_prefix = ?"
					 " AND revoked_at IS NULL FOR UPDATE";
	static const char sql_hash[] = "SELECT user_id, key_prefix FROM api_keys WHERE key_hash = ?"
				       " AND revoked_at IS NULL FOR UPDATE";
	char hash[AUTH_HASH_HEX + 1], prefix[AUTH_KEY_DISPLAY_LEN + 1];
	int whole = auth_key_well_formed(key_or_prefix, strlen(key_or_prefix));
	struct db_val p[1];
	struct db_rows *r = NULL;
	long long user = 0;
	enum qc_err rc;

	if (whole) {
		auth_key_hash(key_or_prefix, strlen(key_or_prefix), hash);
		p[0] = DB_STR(hash);
	} else {
		p[0] = DB_STR(key_or_prefix);
	}
	if ((rc = begin(db)) != QC_OK)
		return rc;
	if ((rc = db_query(db, whole ? sql_hash : sql_prefix, p, 1, &r)) == QC_OK) {
		if (r->nrows) {
			user = db_cell_ll(r, 0, 0);
			snprintf(prefix, sizeof prefix, "%s", db_cell(r, 0, 1));
		} else {
			rc = QC_ENOTFOUND;
		}
		db_rows_free(r);
	}
	if (rc == QC_OK && (rc = keys_revoke(db, key_or_prefix)) == QC_OK)
		rc = admin_audit(db, a, "key.revoke", user, prefix, one_field("revoked", json_object_new_boolean(0)),
			   one_field("revoked", json_object_new_boolean(1)), now);
	return end(db, rc);
}

void admin_override_limits(json_object *o, const struct db_rows *r, unsigned row, unsigned col)
{
	static const char *const names[] = { "tokens_per_day", "tokens_per_month", "calls_per_hour" };

	for (unsigned c = 0; c < 3; c++)   /* absent: the plan's; null: unlimited */
		if (!db_cell_null(r, row, col + c))
			json_object_object_add(o, names[c], db_cell_ll(r, row, col + c) < 0 ? NULL
					       : json_object_new_int64(db_cell_ll(r, row, col + c)));
}

/* The override of user id as JSON (NULL: none). */
static json_object *override_snapshot(struct db *db, long long id, enum qc_err *rc)
{
	struct db_rows *r = NULL;
	json_object *o;

	if ((*rc = quota_override_get(db, id, &r)) != QC_OK || !r->nrows) {
		db_rows_free(r);
		return NULL;
	}
	o = json_object_new_object();
	admin_override_limits(o, r, 0, 0);
	json_object_object_add(o, "expires_at", db_cell_null(r, 0, 3) ? NULL : jiso(db_cell_ll(r, 0, 3)));
	json_object_object_add(o, "reason", json_object_new_string(db_cell(r, 0, 4)));
	db_rows_free(r);
	return o;
}

enum qc_err admin_override_set(struct db *db, const struct admin_actor *a, long long id, long long day,
			       long long month, long long hour, time_t expires, const char *reason,
			       time_t now)
{
	json_object *before;
	enum qc_err rc;

	if ((rc = begin(db)) != QC_OK)
		return rc;
	before = override_snapshot(db, id, &rc);
	if (rc == QC_OK && (rc = quota_override_set(db, id, day, month, hour, expires, reason)) == QC_OK) {
		json_object *after = override_snapshot(db, id, &rc);
		if (rc == QC_OK) {
			rc = admin_audit(db, a, "override.set", id, NULL, before, after, now);
			before = NULL;
		} else {
			json_object_put(after);
		}
	}
	json_object_put(before);
	return end(db, rc);
}

enum qc_err admin_override_clear(struct db *db, const struct admin_actor *a, long long id, time_t now)
{
	json_object *before;
	enum qc_err rc;

	if ((rc = begin(db)) != QC_OK)
		return rc;
	before = override_snapshot(db, id, &rc);
	if (rc == QC_OK && (rc = quota_override_clear(db, id)) == QC_OK) {
		rc = admin_audit(db, a, "override.clear", id, NULL, before, NULL, now);
		before = NULL;
	}
	json_object_put(before);
	return end(db, rc);
}

/* The cache procedures run their own transactions (sql/007): the audit row
 * follows the change at once. */
enum qc_err admin_cache_purge(struct db *db, const struct admin_actor *a, long long id, time_t now,
			      unsigned long long *deleted)
{
	enum qc_err rc;
	json_object *user = user_snapshot(db, id, 0, &rc);

	*deleted = 0;
	if (!user)
		return rc;
	json_object_put(user);
	if ((rc = cache_purge_user(db, id, deleted)) != QC_OK)
		return rc;
	return admin_audit(db, a, "cache.purge", id, NULL, NULL,
		     one_field("deleted", json_object_new_int64((long long)*deleted)), now);
}

/* The value of a system-tier entry as an audit snapshot (NULL: none);
 * long values are cut to their first 4,000 bytes (and said so). */
json_object *admin_system_snapshot(struct db *db, const char *key, time_t now, enum qc_err *rc)
{
	struct cache_entry e;
	json_object *o;

	*rc = cache_get(db, 0, CACHE_SYSTEM, key, strlen(key), now, &e);
	if (*rc == QC_ENOTFOUND) {
		*rc = QC_OK;
		return NULL;
	}
	if (*rc != QC_OK)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "value", json_object_new_string_len(e.value,
				(int)(e.value_len > 4000 ? 4000 : e.value_len)));
	json_object_object_add(o, "bytes", json_object_new_int64((long long)e.value_len));
	if (e.value_len > 4000)
		json_object_object_add(o, "truncated", json_object_new_boolean(1));
	cache_entry_release(&e);
	return o;
}

enum qc_err admin_system_put(struct db *db, const struct admin_actor *a, const char *key,
			     const char *value, size_t len, long long max_entry, time_t now)
{
	enum cache_put_outcome out;
	time_t exp;
	json_object *before, *after;
	enum qc_err rc;

	if (!cache_key_ok(key, strlen(key)) || !cache_utf8_ok(value, len))
		return QC_EINPUT;
	if ((long long)len > max_entry)
		return QC_ETOOBIG;
	before = admin_system_snapshot(db, key, now, &rc);
	if (rc == QC_OK)
		rc = cache_put(db, 0, CACHE_SYSTEM, key, strlen(key), value, len, 0, NULL, 0, 0, now, 0, &out, &exp);
	if (rc != QC_OK) {
		json_object_put(before);
		return rc;
	}
	after = admin_system_snapshot(db, key, now, &rc);
	return admin_audit(db, a, "system.put", 0, key, before, after, now);
}

enum qc_err admin_system_delete(struct db *db, const struct admin_actor *a, const char *key, time_t now)
{
	enum qc_err rc;
	json_object *before = admin_system_snapshot(db, key, now, &rc);

	if (rc != QC_OK || !before) {
		json_object_put(before);
		return rc != QC_OK ? rc : QC_ENOTFOUND;
	}
	if ((rc = cache_delete(db, 0, CACHE_SYSTEM, key, strlen(key))) != QC_OK) {
		json_object_put(before);
		return rc;
	}
	return admin_audit(db, a, "system.delete", 0, key, before, NULL, now);
}

enum qc_err admin_experiment_create(struct db *db, const struct admin_actor *a, const char *name,
				    const char *description, int control_pct, time_t now, long long *id)
{
	enum qc_err rc;

	if ((rc = begin(db)) != QC_OK)
		return rc;
	if ((rc = exp_create(db, name, description, control_pct, now, id)) == QC_OK) {
		json_object *after = one_field("control_pct", json_object_new_int(control_pct));
		json_object_object_add(after, "state", json_object_new_string("draft"));
		rc = admin_audit(db, a, "experiment.create", 0, name, NULL, after, now);
	}
	return end(db, rc);
}

enum qc_err admin_experiment_run(struct db *db, const struct admin_actor *a, long long id, int start,
				 time_t now)
{
	static const char sql[] = "SELECT name, state FROM experiments WHERE id = ?";
	struct db_val p[1] = { DB_INT(id) };
	struct db_rows *r = NULL;
	char name[EXP_NAME_MAX + 1] = "", state[16] = "";
	enum qc_err rc;

	if ((rc = begin(db)) != QC_OK)
		return rc;
	if ((rc = db_query(db, sql, p, 1, &r)) == QC_OK && r->nrows) {
		snprintf(name, sizeof name, "%s", db_cell(r, 0, 0));
		snprintf(state, sizeof state, "%s", db_cell(r, 0, 1));
	}
	db_rows_free(r);
	if (rc == QC_OK && (rc = start ? exp_start(db, id, now) : exp_stop(db, id, now)) == QC_OK)
		rc = admin_audit(db, a, start ? "experiment.start" : "experiment.stop", 0, name,
				 one_field("state", json_object_new_string(state)),
				 one_field("state", json_object_new_string(start ? "running" : "stopped")), now);
	return end(db, rc);
}

/* --- reads ------------------------------------------------------------ */

static json_object *page_of(json_object *items, const char *name, long long total, long long page,
			    long long per_page)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, name, items);
	json_object_object_add(o, "total", json_object_new_int64(total));
	json_object_object_add(o, "page", json_object_new_int64(page));
	json_object_object_add(o, "per_page", json_object_new_int64(per_page));
	return o;
}

enum qc_err admin_users_json(struct db *db, const char *q, long long page, long long per_page,
			     json_object **out)
{
	/* INSTR, not LIKE: the search text is matched literally (% and _ too) */
	static const char sql[] =
		"SELECT u.id, u.email, u.plan, u.role, u.disabled_at IS NOT NULL, UNIX_TIMESTAMP(u.created_at),"
		" (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL"
		"  AND (k.expires_at IS NULL OR k.expires_at > UTC_TIMESTAMP()))"
		" FROM users u WHERE ? = '' OR INSTR(u.email, ?) > 0 ORDER BY u.id LIMIT ? OFFSET ?";
	static const char sql_n[] = "SELECT COUNT(*) FROM users u WHERE ? = '' OR INSTR(u.email, ?) > 0";
	const char *s = q ? q : "";
	struct db_val p[4] = { DB_STR(s), DB_STR(s), DB_INT(per_page), DB_INT((page - 1) * per_page) };
	struct db_rows *r = NULL, *n = NULL;
	json_object *arr;
	enum qc_err rc;

	*out = NULL;
	if ((rc = db_query(db, sql, p, 4, &r)) != QC_OK || (rc = db_query(db, sql_n, p, 2, &n)) != QC_OK) {
		db_rows_free(r);
		return rc;
	}
	arr = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *o = user_row(r, i);
		json_object_object_add(o, "active_keys", json_object_new_int64(db_cell_ll(r, i, 6)));
		json_object_array_add(arr, o);
	}
	*out = page_of(arr, "users", db_cell_ll(n, 0, 0), page, per_page);
	db_rows_free(r);
	db_rows_free(n);
	return QC_OK;
}

enum qc_err admin_user_json(struct db *db, long long id, json_object **out)
{
	static const char sql[] =
		"SELECT key_prefix, UNIX_TIMESTAMP(created_at), UNIX_TIMESTAMP(expires_at),"
		" UNIX_TIMESTAMP(revoked_at) FROM api_keys WHERE user_id = ? ORDER BY id";
	struct db_val p[1] = { DB_INT(id) };
	struct db_rows *r = NULL;
	json_object *o, *keys, *ov;
	enum qc_err rc;

	*out = NULL;
	if (!(o = user_snapshot(db, id, 0, &rc)))
		return rc;
	if ((rc = db_query(db, sql, p, 1, &r)) != QC_OK) {
		json_object_put(o);
		return rc;
	}
	keys = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *k = json_object_new_object();
		json_object_object_add(k, "prefix", json_object_new_string(db_cell(r, i, 0)));
		json_object_object_add(k, "created_at", jiso(db_cell_ll(r, i, 1)));
		json_object_object_add(k, "expires_at", db_cell_null(r, i, 2) ? NULL : jiso(db_cell_ll(r, i, 2)));
		json_object_object_add(k, "revoked_at", db_cell_null(r, i, 3) ? NULL : jiso(db_cell_ll(r, i, 3)));
		json_object_array_add(keys, k);
	}
	db_rows_free(r);
	json_object_object_add(o, "keys", keys);
	ov = override_snapshot(db, id, &rc);
	json_object_object_add(o, "override", ov);
	if (rc != QC_OK) {
		json_object_put(o);
		return rc;
	}
	*out = o;
	return QC_OK;
}

enum qc_err admin_system_json(struct db *db, json_object **out)
{
	static const char sql[] =
		"SELECT cache_key, value, size_bytes, UNIX_TIMESTAMP(created_at) FROM ai_cache"
		" WHERE user_id = 0 AND cache_type = 'system' ORDER BY cache_key LIMIT 1000";
	struct db_rows *r = NULL;
	enum qc_err rc = db_query(db, sql, NULL, 0, &r);

	*out = NULL;
	if (rc != QC_OK)
		return rc;
	*out = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "key", json_object_new_string_len(db_cell(r, i, 0), (int)db_cell_len(r, i, 0)));
		json_object_object_add(o, "value", json_object_new_string_len(db_cell(r, i, 1), (int)db_cell_len(r, i, 1)));
		json_object_object_add(o, "bytes", json_object_new_int64(db_cell_ll(r, i, 2)));
		json_object_object_add(o, "created_at", jiso(db_cell_ll(r, i, 3)));
		json_object_array_add(*out, o);
	}
	db_rows_free(r);
	return QC_OK;
}

enum qc_err admin_audit_json(struct db *db, const char *action, const char *actor, long long target_user,
			     time_t since, time_t until, long long page, long long per_page,
			     json_object **out)
{
	/* action: exact or a family ("user." matches user.create, user.plan, ...) */
#define AUDIT_WHERE \
	" WHERE (? = '' OR action = ? OR (RIGHT(?, 1) = '.' AND LEFT(action, CHAR_LENGTH(?)) = ?))" \
	" AND (? = '' OR INSTR(actor, ?) > 0) AND (? = 0 OR target_user = ?) AND at >= ? AND at <= ?"
	static const char sql[] =
		"SELECT id, at, actor, source, action, target_user, target, before_json, after_json"
		" FROM audit_log" AUDIT_WHERE " ORDER BY id DESC LIMIT ? OFFSET ?";
	static const char sql_n[] = "SELECT COUNT(*) FROM audit_log" AUDIT_WHERE;
	const char *ac = action ? action : "", *who = actor ? actor : "";
	struct db_val p[13] = {
		DB_STR(ac), DB_STR(ac), DB_STR(ac), DB_STR(ac), DB_STR(ac), DB_STR(who), DB_STR(who),
		DB_INT(target_user), DB_INT(target_user), DB_INT(since), DB_INT(until ? until : 4102444800LL),
		DB_INT(per_page), DB_INT((page - 1) * per_page),
	};
	struct db_rows *r = NULL, *n = NULL;
	json_object *arr;
	enum qc_err rc;

	*out = NULL;
	if ((rc = db_query(db, sql, p, 13, &r)) != QC_OK || (rc = db_query(db, sql_n, p, 11, &n)) != QC_OK) {
		db_rows_free(r);
		return rc;
	}
	arr = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_int64(db_cell_ll(r, i, 0)));
		json_object_object_add(o, "at", jiso(db_cell_ll(r, i, 1)));
		json_object_object_add(o, "actor", json_object_new_string(db_cell(r, i, 2)));
		json_object_object_add(o, "source", json_object_new_string(db_cell(r, i, 3)));
		json_object_object_add(o, "action", json_object_new_string(db_cell(r, i, 4)));
		json_object_object_add(o, "target_user", db_cell_null(r, i, 5) ? NULL
				       : json_object_new_int64(db_cell_ll(r, i, 5)));
		json_object_object_add(o, "target", json_object_new_string(db_cell(r, i, 6)));
		json_object_object_add(o, "before", db_cell_null(r, i, 7) ? NULL : json_tokener_parse(db_cell(r, i, 7)));
		json_object_object_add(o, "after", db_cell_null(r, i, 8) ? NULL : json_tokener_parse(db_cell(r, i, 8)));
		json_object_array_add(arr, o);
	}
	*out = page_of(arr, "entries", db_cell_ll(n, 0, 0), page, per_page);
	db_rows_free(r);
	db_rows_free(n);
	return QC_OK;
#undef AUDIT_WHERE
}

enum qc_err admin_spend_json(struct db *db, time_t now, long long days, json_object **out)
{
	/* per UTC day and plan; warming calls (task 'warm:...') are billed to no
	 * user: their own column */
	static const char sql[] =
		"SELECT FLOOR(created_at / 86400) AS d, plan,"
		" SUM(IF(cached = 0 AND task NOT LIKE 'warm:%', cost_micro, 0)), SUM(saved_micro),"
		" SUM(outcome <> 'quota' AND task NOT LIKE 'warm:%'), SUM(outcome = 'quota' AND task NOT LIKE 'warm:%'),"
		" SUM(IF(task LIKE 'warm:%', cost_micro, 0))"
		" FROM usage_events WHERE created_at >= ? AND created_at < ? GROUP BY d, plan ORDER BY d, plan";
	time_t end = now - now % 86400 + 86400, start = end - (time_t)days * 86400;
	struct db_val p[2] = { DB_INT(start), DB_INT(end) };
	struct db_rows *r = NULL;
	json_object *arr;
	char day[32];
	enum qc_err rc;

	*out = NULL;
	if ((rc = db_query(db, sql, p, 2, &r)) != QC_OK)
		return rc;
	arr = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *o = json_object_new_object();
		qc_iso8601(db_cell_ll(r, i, 0) * 86400, day);
		day[10] = 0;
		json_object_object_add(o, "day", json_object_new_string(day));
		json_object_object_add(o, "plan", json_object_new_string(db_cell(r, i, 1)));
		json_object_object_add(o, "billed_usd", json_object_new_double((double)db_cell_ll(r, i, 2) / 1e6));
		json_object_object_add(o, "saved_usd", json_object_new_double((double)db_cell_ll(r, i, 3) / 1e6));
		json_object_object_add(o, "calls", json_object_new_int64(db_cell_ll(r, i, 4)));
		json_object_object_add(o, "refusals", json_object_new_int64(db_cell_ll(r, i, 5)));
		json_object_object_add(o, "warming_usd", json_object_new_double((double)db_cell_ll(r, i, 6) / 1e6));
		json_object_array_add(arr, o);
	}
	db_rows_free(r);
	*out = json_object_new_object();
	json_object_object_add(*out, "days", arr);
	qc_iso8601(start, day);
	day[10] = 0;
	json_object_object_add(*out, "from", json_object_new_string(day));
	qc_iso8601(end - 86400, day);
	day[10] = 0;
	json_object_object_add(*out, "to", json_object_new_string(day));
	return QC_OK;
}

enum qc_err admin_nearest_json(struct db *db, time_t now, long long n, json_object **out)
{
	struct db_rows *r = NULL;
	enum qc_err rc = quota_nearest(db, now, n, &r);

	*out = NULL;
	if (rc != QC_OK)
		return rc;
	*out = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "user_id", json_object_new_int64(db_cell_ll(r, i, 0)));
		json_object_object_add(o, "email", json_object_new_string(db_cell(r, i, 1)));
		json_object_object_add(o, "plan", json_object_new_string(db_cell(r, i, 2)));
		json_object_object_add(o, "used", json_object_new_int64(db_cell_ll(r, i, 3)));
		json_object_object_add(o, "limit", json_object_new_int64(db_cell_ll(r, i, 4)));
		json_object_object_add(o, "percent", json_object_new_int64(db_cell_ll(r, i, 5)));
		/* an override in force: when it ends (null: it has no end, or there is none) */
		json_object_object_add(o, "override", json_object_new_boolean(db_cell_ll(r, i, 6) == 1));
		json_object_object_add(o, "override_expires_at", db_cell_ll(r, i, 6) == 1 && !db_cell_null(r, i, 7)
				       ? jiso(db_cell_ll(r, i, 7)) : NULL);
		json_object_array_add(*out, o);
	}
	db_rows_free(r);
	return QC_OK;
}

enum qc_err admin_user_cache_json(struct db *db, long long id, time_t now, long long n, json_object **out)
{
	static const char sql[] =
		"SELECT cache_type, cache_key, size_bytes, access_count, UNIX_TIMESTAMP(created_at),"
		" UNIX_TIMESTAMP(expires_at), region, JSON_VALUE(metadata, '$.task') FROM ai_cache"
		" WHERE user_id = ? AND (expires_at IS NULL OR expires_at > FROM_UNIXTIME(?))"
		" ORDER BY created_at DESC, id DESC LIMIT ?";
	struct db_val p[3] = { DB_INT(id), DB_INT(now), DB_INT(n) };
	struct db_rows *r = NULL;
	enum qc_err rc;
	json_object *u = user_snapshot(db, id, 0, &rc);

	*out = NULL;
	if (!u)
		return rc;
	json_object_put(u);
	if ((rc = db_query(db, sql, p, 3, &r)) != QC_OK)
		return rc;
	*out = json_object_new_array();
	for (unsigned i = 0; i < r->nrows; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "tier", json_object_new_string(db_cell(r, i, 0)));
		json_object_object_add(o, "key", json_object_new_string_len(db_cell(r, i, 1), (int)db_cell_len(r, i, 1)));
		json_object_object_add(o, "bytes", json_object_new_int64(db_cell_ll(r, i, 2)));
		json_object_object_add(o, "hits", json_object_new_int64(db_cell_ll(r, i, 3)));
		json_object_object_add(o, "created_at", jiso(db_cell_ll(r, i, 4)));
		json_object_object_add(o, "expires_at", db_cell_null(r, i, 5) ? NULL : jiso(db_cell_ll(r, i, 5)));
		json_object_object_add(o, "region", *db_cell(r, i, 6) ? json_object_new_string(db_cell(r, i, 6)) : NULL);
		json_object_object_add(o, "task", db_cell_null(r, i, 7) ? NULL : json_object_new_string(db_cell(r, i, 7)));
		json_object_array_add(*out, o);
	}
	db_rows_free(r);
	return QC_OK;
}
