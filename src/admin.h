/*
 * admin.h - the operator's actions (SPEC §14): one implementation of each,
 * shared by the admin routes (h_admin.c) and quotacachectl, each writing its
 * audit_log row (who, what, when, before -> after; sql/016_admin.sql) in the
 * same transaction as the change.  And the reads the console needs: users
 * (searched, paged), one user with keys and override, system-tier entries,
 * the audit log (filtered, paged).
 *
 * No shared state: everything is in MariaDB.
 */
#ifndef QC_ADMIN_H
#define QC_ADMIN_H

#include <stddef.h>
#include <time.h>

#include <json-c/json.h>

#include "auth.h"
#include "qc.h"

struct db;

/* Who acts: an admin through the API (id, email) or a login at the CLI. */
struct admin_actor {
	long long id;            /* 0: the CLI */
	char name[300];          /* the admin's email, or "cli:LOGIN" */
	const char *source;      /* "api" or "cli" */
};

/* The CLI's actor ("cli:" + the login running it). */
void admin_cli_actor(struct admin_actor *a);
/* An admin's actor through the API. */
void admin_api_actor(struct admin_actor *a, const struct auth_user *u);

/* --- actions (each audited) --------------------------------------------- */

/* A user with a first key (key_out, shown once), which ends at key_expires
 * (0: never).  QC_EINPUT (email, plan, or an expiry in the past), QC_ECONFLICT
 * (email taken). */
enum qc_err admin_user_create(struct db *db, const struct admin_actor *a, const char *email,
			      const char *plan, int is_admin, time_t key_expires, time_t now,
			      long long *id, char key_out[AUTH_KEY_LEN + 1]);
/* QC_ENOTFOUND, QC_EINPUT (unknown plan). */
enum qc_err admin_user_set_plan(struct db *db, const struct admin_actor *a, long long id,
				const char *plan, time_t now);
/* Disable (1) or re-enable (0): a disabled user's keys stop authenticating.
 * QC_ENOTFOUND. */
enum qc_err admin_user_set_disabled(struct db *db, const struct admin_actor *a, long long id,
				    int disabled, time_t now);
/* A new key for user id (key_out, shown once; its display prefix into
 * prefix_out), ending at expires (0: never). */
enum qc_err admin_key_issue(struct db *db, const struct admin_actor *a, long long id,
			    time_t expires, time_t now, char key_out[AUTH_KEY_LEN + 1],
			    char prefix_out[AUTH_KEY_DISPLAY_LEN + 1]);
/* Revoke a key by its display prefix (or the whole key).  QC_ENOTFOUND. */
enum qc_err admin_key_revoke(struct db *db, const struct admin_actor *a, const char *key_or_prefix,
			     time_t now);
/* Set (limits: -2 keep the plan's, -1 unlimited) or clear an override. */
enum qc_err admin_override_set(struct db *db, const struct admin_actor *a, long long id, long long day,
			       long long month, long long hour, time_t expires, const char *reason,
			       time_t now);
enum qc_err admin_override_clear(struct db *db, const struct admin_actor *a, long long id, time_t now);
/* Remove every cache entry of a user; *deleted gets the count. */
enum qc_err admin_cache_purge(struct db *db, const struct admin_actor *a, long long id, time_t now,
			      unsigned long long *deleted);
/* Store (replace) or delete a system-tier entry. */
enum qc_err admin_system_put(struct db *db, const struct admin_actor *a, const char *key,
			     const char *value, size_t len, long long max_entry, time_t now);
enum qc_err admin_system_delete(struct db *db, const struct admin_actor *a, const char *key, time_t now);

/* A/B experiments (experiment.h), audited: create a draft; start (1) or
 * stop (0) one.  Errors as exp_create / exp_start / exp_stop. */
enum qc_err admin_experiment_create(struct db *db, const struct admin_actor *a, const char *name,
				    const char *description, int control_pct, time_t now, long long *id);
enum qc_err admin_experiment_run(struct db *db, const struct admin_actor *a, long long id, int start,
				 time_t now);
/* The three limits of an override row into o (columns col..col+2:
 * tokens_per_day, tokens_per_month, calls_per_hour): absent when NULL (the
 * plan's), null when -1 (unlimited). */
struct db_rows;
void admin_override_limits(json_object *o, const struct db_rows *r, unsigned row, unsigned col);
/* Write an audit row (before / after: JSON objects or NULL, taken over). */
enum qc_err admin_audit(struct db *db, const struct admin_actor *a, const char *action, long long user,
			const char *target, json_object *before, json_object *after, time_t now);
/* A system-tier entry as an audit snapshot (NULL: none, or an error in *rc). */
json_object *admin_system_snapshot(struct db *db, const char *key, time_t now, enum qc_err *rc);

/* --- reads ------------------------------------------------------------ */

/* Users whose email contains q (NULL or "": all), by id, page of per_page:
 * {"users": [{id, email, plan, role, disabled, created_at, keys}], "total",
 * "page", "per_page"}. */
enum qc_err admin_users_json(struct db *db, const char *q, long long page, long long per_page,
			     json_object **out);
/* One user: id, email, plan, role, disabled, created_at, keys [{prefix,
 * created_at, expires_at, revoked_at}], override.  QC_ENOTFOUND. */
enum qc_err admin_user_json(struct db *db, long long id, json_object **out);
/* The system tier: [{key, value, bytes, created_at}], by key. */
enum qc_err admin_system_json(struct db *db, json_object **out);
/* The audit log, newest first: filters may be NULL/0.
 * {"entries": [{id, at, actor, source, action, target_user, target, before,
 * after}], "total", "page", "per_page"}. */
enum qc_err admin_audit_json(struct db *db, const char *action, const char *actor, long long target_user,
			     time_t since, time_t until, long long page, long long per_page,
			     json_object **out);

/* A user's live cache entries, newest first (at most n): [{tier, key, bytes,
 * hits, created_at, expires_at, region, task}].  QC_ENOTFOUND: no such user. */
enum qc_err admin_user_cache_json(struct db *db, long long id, time_t now, long long n, json_object **out);
/* Spend per UTC day and plan over the last days (today included): {"days":
 * [{day, plan, billed_usd, saved_usd, calls, refusals, warming_usd}], "from",
 * "to"}; rows only for days with activity. */
enum qc_err admin_spend_json(struct db *db, time_t now, long long days, json_object **out);
/* The n users nearest their daily limit: [{user_id, email, plan, used,
 * limit, percent, override, override_expires_at}]. */
enum qc_err admin_nearest_json(struct db *db, time_t now, long long n, json_object **out);

#endif
