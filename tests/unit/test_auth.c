/* test_auth.c - key generation, format, hashing and Bearer parsing. */
#include "auth.h"
#include "tap.h"

int main(void)
{
	char a[AUTH_KEY_LEN + 1], b[AUTH_KEY_LEN + 1], h[AUTH_HASH_HEX + 1];
	const char *k;
	size_t n;

	CHECK(auth_key_generate(a) == QC_OK && auth_key_generate(b) == QC_OK, "keys generate");
	CHECK(strlen(a) == AUTH_KEY_LEN && strncmp(a, "qck_", 4) == 0, "key has prefix and length");
	CHECK(strcmp(a, b) != 0, "two keys differ");
	CHECK(auth_key_well_formed(a, strlen(a)), "generated key is well formed");
	CHECK(!auth_key_well_formed("sk-proj-abcdefghijklmnopqrstuvwxyz012345", 40), "openai-style key refused");
	CHECK(!auth_key_well_formed("qck_short", 9), "short key refused");
	CHECK(!auth_key_well_formed("qck_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'%", 36), "bad characters refused");
	auth_key_hash("abc", 3, h);
	CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha-256 of abc");
	CHECK(auth_parse_bearer("Bearer qck_x", &k, &n) && n == 5 && strncmp(k, "qck_x", 5) == 0, "bearer parsed");
	CHECK(auth_parse_bearer("bearer   qck_y  ", &k, &n) && n == 5, "scheme case-insensitive, spaces trimmed");
	CHECK(!auth_parse_bearer("Basic dXNlcjpwYXNz", &k, &n), "basic auth refused");
	CHECK(!auth_parse_bearer("Bearer", &k, &n) && !auth_parse_bearer("Bearer ", &k, &n), "empty bearer refused");
	CHECK(!auth_parse_bearer("BearerX qck", &k, &n), "scheme must be followed by a space");
	CHECK(!auth_parse_bearer(NULL, &k, &n), "no header");
	return TAP_DONE();
}
