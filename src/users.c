/*
 * users.c - user and key administration over prepared statements.
 * Keys: the plaintext is generated here, returned once, and only its
 * SHA-256 digest and a short display prefix are stored.
 */
#include <stdio.h>
#include <string.h>

#include <mysqld_error.h>

#include "db.h"
#include "users.h"

static const char SQL_PLAN[] = "SELECT 1 FROM plans WHERE name = ?";
static const char SQL_ADD_USER[] = "INSERT INTO users (email, plan, role) VALUES (?, ?, ?)";
static const char SQL_FIND[] = "SELECT id FROM users WHERE email = ?";
static const char SQL_ADD_KEY[] =
	"INSERT INTO api_keys (user_id, key_hash, key_prefix) VALUES (?, ?, ?)";
static const char SQL_SET_PLAN[] = "UPDATE users SET plan = ? WHERE id = ?";
static const char SQL_USER_EXISTS[] = "SELECT 1 FROM users WHERE id = ?";
static const char SQL_LIST[] =
	"SELECT u.id, u.email, u.plan, u.role, u.created_at,"
	" (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL)"
	" FROM users u ORDER BY u.id";
static const char SQL_REVOKE_HASH[] =
	"UPDATE api_keys SET revoked_at = UTC_TIMESTAMP() WHERE key_hash = ? AND revoked_at IS NULL";
static const char SQL_REVOKE_PREFIX[] =
	"UPDATE api_keys SET revoked_at = UTC_TIMESTAMP() WHERE key_prefix = ? AND revoked_at IS NULL";
static const char SQL_KEYS[] =
	"SELECT id, user_id, key_prefix, created_at, revoked_at FROM api_keys"
	" WHERE ? = 0 OR user_id = ? ORDER BY id";

int users_plan_exists(struct db *db, const char *plan)
{
	struct db_rows *r = NULL;
	struct db_val p[1] = { DB_STR(plan) };
	int found;

	if (db_query(db, SQL_PLAN, p, 1, &r) != QC_OK)
		return -1;
	found = r->nrows > 0;
	db_rows_free(r);
	return found;
}

/* 1 if user id exists, 0 if not, -1 with *rc set on a database error. */
static int user_exists(struct db *db, long long id, enum qc_err *rc)
{
	struct db_rows *r = NULL;
	struct db_val p[1] = { DB_INT(id) };
	int found;

	if ((*rc = db_query(db, SQL_USER_EXISTS, p, 1, &r)) != QC_OK)
		return -1;
	found = r->nrows > 0;
	db_rows_free(r);
	return found;
}

static int email_ok(const char *e)
{
	const char *at = strchr(e, '@');
	size_t n = strlen(e);

	if (n < 3 || n > 254 || !at || at == e || !at[1] || strchr(at + 1, '@'))
		return 0;
	for (const char *c = e; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f)
			return 0;
	return 1;
}

enum qc_err keys_add(struct db *db, long long user_id, char key_out[AUTH_KEY_LEN + 1])
{
	char hash[AUTH_HASH_HEX + 1], prefix[AUTH_KEY_DISPLAY_LEN + 1];
	struct db_val p[3];
	enum qc_err rc;
	int found = user_exists(db, user_id, &rc);

	if (found <= 0)
		return found < 0 ? rc : QC_ENOTFOUND;
	p[0] = DB_INT(user_id);
	if ((rc = auth_key_generate(key_out)) != QC_OK)
		return rc;
	auth_key_hash(key_out, AUTH_KEY_LEN, hash);
	memcpy(prefix, key_out, AUTH_KEY_DISPLAY_LEN);
	prefix[AUTH_KEY_DISPLAY_LEN] = 0;
	p[1] = DB_STR(hash);
	p[2] = DB_STR(prefix);
	return db_exec(db, SQL_ADD_KEY, p, 3, NULL);
}

enum qc_err users_insert(struct db *db, const char *email, const char *plan, int admin,
			 long long *id_out, char key_out[AUTH_KEY_LEN + 1])
{
	struct db_val p[3];
	enum qc_err rc;
	int pe;

	*id_out = 0;
	if (!email_ok(email))
		return QC_EINPUT;
	if ((pe = users_plan_exists(db, plan)) < 0)
		return QC_EDB;
	if (!pe)
		return QC_EINPUT;
	p[0] = DB_STR(email);
	p[1] = DB_STR(plan);
	p[2] = DB_STR(admin ? "admin" : "user");
	if ((rc = db_exec(db, SQL_ADD_USER, p, 3, NULL)) != QC_OK)
		return db_errno(db) == ER_DUP_ENTRY ? QC_ECONFLICT : rc;
	*id_out = (long long)db_insert_id(db);
	return keys_add(db, *id_out, key_out);
}

enum qc_err users_add(struct db *db, const char *email, const char *plan, int admin,
		      long long *id_out, char key_out[AUTH_KEY_LEN + 1])
{
	enum qc_err rc;

	/* the user and its first key: both or neither */
	if ((rc = db_exec(db, "START TRANSACTION", NULL, 0, NULL)) != QC_OK)
		return rc;
	if ((rc = users_insert(db, email, plan, admin, id_out, key_out)) != QC_OK ||
	    (rc = db_exec(db, "COMMIT", NULL, 0, NULL)) != QC_OK) {
		db_exec(db, "ROLLBACK", NULL, 0, NULL);
		*id_out = 0;
		return rc;
	}
	return QC_OK;
}

enum qc_err users_find(struct db *db, const char *email, long long *id_out)
{
	struct db_rows *r = NULL;
	struct db_val p[1] = { DB_STR(email) };
	enum qc_err rc = db_query(db, SQL_FIND, p, 1, &r);

	if (rc != QC_OK)
		return rc;
	rc = r->nrows ? QC_OK : QC_ENOTFOUND;
	if (rc == QC_OK)
		*id_out = db_cell_ll(r, 0, 0);
	db_rows_free(r);
	return rc;
}

enum qc_err users_set_plan(struct db *db, long long id, const char *plan)
{
	struct db_val p[2];
	enum qc_err rc;
	int pe, found;

	if ((pe = users_plan_exists(db, plan)) < 0)
		return QC_EDB;
	if (!pe)
		return QC_EINPUT;
	if ((found = user_exists(db, id, &rc)) <= 0)
		return found < 0 ? rc : QC_ENOTFOUND;
	p[0] = DB_STR(plan);
	p[1] = DB_INT(id);
	return db_exec(db, SQL_SET_PLAN, p, 2, NULL);
}

enum qc_err users_list(struct db *db, struct db_rows **out)
{
	return db_query(db, SQL_LIST, NULL, 0, out);
}

enum qc_err keys_revoke(struct db *db, const char *key_or_prefix)
{
	unsigned long long n = 0;
	struct db_val p[1];
	size_t len = strlen(key_or_prefix);
	enum qc_err rc;

	if (auth_key_well_formed(key_or_prefix, len)) {
		char hash[AUTH_HASH_HEX + 1];
		auth_key_hash(key_or_prefix, len, hash);
		p[0] = DB_STR(hash);
		rc = db_exec(db, SQL_REVOKE_HASH, p, 1, &n);
	} else {
		p[0] = DB_STR(key_or_prefix);
		rc = db_exec(db, SQL_REVOKE_PREFIX, p, 1, &n);
	}
	if (rc != QC_OK)
		return rc;
	return n ? QC_OK : QC_ENOTFOUND;
}

enum qc_err keys_list(struct db *db, long long user_id, struct db_rows **out)
{
	struct db_val p[2] = { DB_INT(user_id), DB_INT(user_id) };
	return db_query(db, SQL_KEYS, p, 2, out);
}
