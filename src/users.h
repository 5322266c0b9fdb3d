/*
 * users.h - users, their plans and their API keys in the database.
 * Used by the admin command line and the admin routes.
 */
#ifndef QC_USERS_H
#define QC_USERS_H

#include "auth.h"
#include "qc.h"

struct db;
struct db_rows;

/* 1 if plan names a row of the plans table, 0 if not, -1 on DB error. */
int users_plan_exists(struct db *db, const char *plan);

/*
 * Create a user and a first key.  key_out receives the plaintext key (shown
 * once, never stored).  QC_EINPUT for a bad email or unknown plan,
 * QC_ECONFLICT if the email exists.
 */
enum qc_err users_add(struct db *db, const char *email, const char *plan, int admin,
		      long long *id_out, char key_out[AUTH_KEY_LEN + 1]);

/* The same inside the caller's transaction (admin.c adds its audit row). */
enum qc_err users_insert(struct db *db, const char *email, const char *plan, int admin,
			 long long *id_out, char key_out[AUTH_KEY_LEN + 1]);

/* Find a user id by email: QC_OK, QC_ENOTFOUND. */
enum qc_err users_find(struct db *db, const char *email, long long *id_out);

/* Change a user's plan: QC_ENOTFOUND, QC_EINPUT (unknown plan). */
enum qc_err users_set_plan(struct db *db, long long id, const char *plan);

/* Rows: id, email, plan, role, created_at, active key count.  Caller frees. */
enum qc_err users_list(struct db *db, struct db_rows **out);

/* New key for a user (plaintext into key_out).  QC_ENOTFOUND if no user. */
enum qc_err keys_add(struct db *db, long long user_id, char key_out[AUTH_KEY_LEN + 1]);

/* Revoke a key by its display prefix or full key.  QC_ENOTFOUND if none. */
enum qc_err keys_revoke(struct db *db, const char *key_or_prefix);

/* Rows: id, user_id, key_prefix, created_at, revoked_at.  user_id 0 = all. */
enum qc_err keys_list(struct db *db, long long user_id, struct db_rows **out);

#endif
