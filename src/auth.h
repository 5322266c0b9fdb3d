/*
 * auth.h - API keys: generation (libcrypto RAND_bytes), SHA-256 hashing,
 * format checks, Bearer parsing, and lookup of key -> user with a short-lived
 * per-worker read cache.
 *
 * A key is "qck_" followed by 32 base64url characters (24 random bytes).
 * Only its SHA-256 hex digest is stored.  The cache holds positive answers
 * for auth_cache_seconds: a revoked key stops working within that bound.
 */
#ifndef QC_AUTH_H
#define QC_AUTH_H

#include <stddef.h>
#include <time.h>

#include "qc.h"

#define AUTH_KEY_PREFIX "qck_"
#define AUTH_KEY_LEN 36             /* "qck_" + 32 */
#define AUTH_KEY_DISPLAY_LEN 12     /* prefix kept for display */
#define AUTH_HASH_HEX 64

struct db;

struct auth_user {
	long long id;
	char email[256];
	char plan[32];
	int is_admin;
};

/* Write a fresh random key (AUTH_KEY_LEN chars + NUL).  QC_OK or QC_EIO. */
enum qc_err auth_key_generate(char out[AUTH_KEY_LEN + 1]);

/* SHA-256 of key[0..len) as lowercase hex + NUL. */
void auth_key_hash(const char *key, size_t len, char out[AUTH_HASH_HEX + 1]);

/* 1 if key[0..len) has the shape of a quotacache key, else 0. */
int auth_key_well_formed(const char *key, size_t len);

/*
 * Extract the credentials from an Authorization header value ("Bearer X",
 * scheme case-insensitive).  Returns 1 and sets *key and *len, or 0.
 */
int auth_parse_bearer(const char *header, const char **key, size_t *len);

/* Clear the worker's key cache (tests; after revocation by this process). */
void auth_cache_clear(void);

/*
 * Resolve an Authorization header to a user.  QC_OK fills *u; QC_EAUTH for a
 * missing, malformed, unknown or revoked key; QC_EDBDOWN / QC_EDB.
 */
enum qc_err auth_authenticate(struct db *db, const char *authorization,
			      time_t now, long long cache_seconds, struct auth_user *u);

#endif
