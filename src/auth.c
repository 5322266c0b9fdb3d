/*
 * auth.c - key generation/hashing and the key -> user lookup.
 * State: a fixed-size, direct-mapped cache of recent positive lookups,
 * indexed by the first bytes of the key hash; entries expire by time.
 * Shared by the request threads of the process, under cache_mu.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth.h"
#include "db.h"

#define AUTH_CACHE_SLOTS 512

struct auth_slot {
	char hash[AUTH_HASH_HEX + 1];
	time_t expires;
	struct auth_user user;
};

static struct auth_slot cache[AUTH_CACHE_SLOTS];
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards cache[] */

enum qc_err auth_key_generate(char out[AUTH_KEY_LEN + 1])
{
	unsigned char raw[24], b64[33];

	if (RAND_bytes(raw, sizeof raw) != 1)
		return QC_EIO;
	EVP_EncodeBlock(b64, raw, sizeof raw);   /* 24 bytes -> 32 chars, no '=' */
	for (int i = 0; i < 32; i++) {
		if (b64[i] == '+') b64[i] = '-';
		else if (b64[i] == '/') b64[i] = '_';
	}
	memcpy(out, AUTH_KEY_PREFIX, 4);
	memcpy(out + 4, b64, 32);
	out[AUTH_KEY_LEN] = 0;
	return QC_OK;
}

void auth_key_hash(const char *key, size_t len, char out[AUTH_HASH_HEX + 1])
{
	qc_sha256_hex(key, len, out);
}

int auth_key_well_formed(const char *key, size_t len)
{
	if (len != AUTH_KEY_LEN || memcmp(key, AUTH_KEY_PREFIX, 4) != 0)
		return 0;
	for (size_t i = 4; i < len; i++) {
		char c = key[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

int auth_parse_bearer(const char *header, const char **key, size_t *len)
{
	const char *p, *e;

	if (!header || strncasecmp(header, "Bearer", 6) != 0 ||
	    (header[6] != ' ' && header[6] != '\t'))
		return 0;
	p = header + 7;
	while (*p == ' ' || *p == '\t')
		p++;
	e = p + strlen(p);
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e == p)
		return 0;
	*key = p;
	*len = (size_t)(e - p);
	return 1;
}

void auth_cache_clear(void)
{
	pthread_mutex_lock(&cache_mu);
	memset(cache, 0, sizeof cache);
	pthread_mutex_unlock(&cache_mu);
}

static unsigned slot_of(const char *hash)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++)
		v = v * 16 + (unsigned)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
	return v % AUTH_CACHE_SLOTS;
}

static const char SQL_KEY_USER[] =
	"SELECT u.id, u.email, u.plan, u.role FROM api_keys k "
	"JOIN users u ON u.id = k.user_id "
	"WHERE k.key_hash = ? AND k.revoked_at IS NULL AND u.disabled_at IS NULL"
	" AND (k.expires_at IS NULL OR k.expires_at > UTC_TIMESTAMP())";

enum qc_err auth_authenticate(struct db *db, const char *authorization,
			      time_t now, long long cache_seconds, struct auth_user *u)
{
	char hash[AUTH_HASH_HEX + 1];
	const char *key;
	size_t len;
	struct auth_slot *s;
	struct db_rows *rows = NULL;
	struct db_val p[1];
	enum qc_err rc;

	if (!auth_parse_bearer(authorization, &key, &len) || !auth_key_well_formed(key, len))
		return QC_EAUTH;
	auth_key_hash(key, len, hash);
	s = &cache[slot_of(hash)];
	if (cache_seconds > 0) {
		int hit;
		pthread_mutex_lock(&cache_mu);
		if ((hit = s->expires > now && strcmp(s->hash, hash) == 0))
			*u = s->user;
		pthread_mutex_unlock(&cache_mu);
		if (hit)
			return QC_OK;
	}
	p[0] = DB_STR(hash);
	if ((rc = db_query(db, SQL_KEY_USER, p, 1, &rows)) != QC_OK)
		return rc;
	if (rows->nrows != 1 && db_galera(db)) {   /* a key created through another node a moment ago */
		db_rows_free(rows);
		if ((rc = db_query_synced(db, SQL_KEY_USER, p, 1, &rows)) != QC_OK)
			return rc;
	}
	if (rows->nrows != 1) {
		db_rows_free(rows);
		return QC_EAUTH;
	}
	memset(u, 0, sizeof *u);
	u->id = db_cell_ll(rows, 0, 0);
	snprintf(u->email, sizeof u->email, "%s", db_cell(rows, 0, 1));
	snprintf(u->plan, sizeof u->plan, "%s", db_cell(rows, 0, 2));
	u->is_admin = strcmp(db_cell(rows, 0, 3), "admin") == 0;
	db_rows_free(rows);
	if (cache_seconds > 0) {
		pthread_mutex_lock(&cache_mu);
		memcpy(s->hash, hash, sizeof s->hash);
		s->user = *u;
		s->expires = now + cache_seconds;
		pthread_mutex_unlock(&cache_mu);
	}
	return QC_OK;
}
