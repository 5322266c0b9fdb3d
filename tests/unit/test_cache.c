/* test_cache.c - pure cache rules: tiers, keys, money, normalisation, hashes. */
#include <stdlib.h>

#include "cache.h"
#include "tap.h"

static int hash_of_url(const char *u, char out[65])
{
	size_t n;
	char *s = cache_normalize_url(u, strlen(u), &n);
	if (!s)
		return -1;
	qc_sha256_hex(s, n, out);
	free(s);
	return 0;
}

int main(void)
{
	enum cache_tier t;
	char a[65], b[65];
	size_t n;
	char *s;

	CHECK(cache_tier_parse("system", &t) == 0 && t == CACHE_SYSTEM, "system tier");
	CHECK(cache_tier_parse("extraction", &t) == 0 && t == CACHE_EXTRACTION, "extraction tier");
	CHECK(cache_tier_parse("Content", &t) < 0 && cache_tier_parse("", &t) < 0, "tier names are exact");
	CHECK_STR(cache_tier_name(CACHE_CONTENT), "content", "tier name");

	char k255[256];
	memset(k255, 'k', 255);
	k255[255] = 0;
	CHECK(cache_key_ok(k255, 255), "255-byte key ok");
	CHECK(!cache_key_ok(k255, 256), "256-byte key refused");
	CHECK(!cache_key_ok("", 0), "empty key refused");
	CHECK(!cache_key_ok("a\nb", 3) && !cache_key_ok("a\tb", 3) && !cache_key_ok("a\x7f", 2),
	      "control characters refused");
	CHECK(cache_key_ok("caf\xc3\xa9 key ", 10), "utf-8 and spaces allowed");

	CHECK(cache_parse_micro("0.0002") == 200 && cache_parse_micro("0.0015") == 1500 &&
	      cache_parse_micro("0.0050") == 5000, "SPEC savings in micro-dollars");
	CHECK(cache_parse_micro("1") == 1000000 && cache_parse_micro("0.1234567") == 123456,
	      "whole dollars; beyond 6 decimals truncated");
	CHECK(cache_parse_micro("-1") < 0 && cache_parse_micro("abc") < 0 && cache_parse_micro("") < 0,
	      "bad money refused");

	s = cache_normalize_url("  HTTPS://Example.COM:443/Path/A?q=Z#Frag  ", 42, &n);
	CHECK(s && strcmp(s, "https://example.com:443/Path/A?q=Z") == 0,
	      "url: trimmed, scheme and host lower-cased, path kept, fragment dropped");
	free(s);
	s = cache_normalize_url("http://User:PW@HOST.example/x", 29, &n);
	CHECK(s && strcmp(s, "http://User:PW@host.example/x") == 0, "userinfo keeps its case");
	free(s);
	hash_of_url("https://jobs.example.com/123", a);
	hash_of_url("HTTPS://JOBS.EXAMPLE.COM/123#apply", b);
	CHECK_STR(a, b, "same URL in another case with a fragment: same hash");
	hash_of_url("https://jobs.example.com/123?x=1", b);
	CHECK(strcmp(a, b) != 0, "another query: another hash");
	hash_of_url("https://jobs.example.com/ABC", a);
	hash_of_url("https://jobs.example.com/abc", b);
	CHECK(strcmp(a, b) != 0, "path case matters");
	s = cache_normalize_text("\n  some prompt \t", 16, &n);
	CHECK(s && n == 11 && strcmp(s, "some prompt") == 0, "text trimmed");
	free(s);
	qc_sha256_hex("", 0, a);
	CHECK_STR(a, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha-256 of empty");

	CHECK(cache_utf8_ok("h\xc3\xa9llo\0x", 8), "utf-8 with NUL ok");
	CHECK(!cache_utf8_ok("\xff", 1) && !cache_utf8_ok("\xc3", 1) && !cache_utf8_ok("\xc0\xaf", 2),
	      "bad, truncated and overlong sequences refused");
	CHECK(!cache_utf8_ok("\xed\xa0\x80", 3), "surrogates refused");

	/* accumulator: due times */
	cache_pending_clear();
	CHECK(cache_flush_in(1000) == -1, "nothing pending");
	/* the flush timer runs on the wall clock, whatever the event's time (a
	 * test-clock event years ahead must not wait for a full batch) */
	{
		time_t t0 = time(NULL), t1;
		cache_note_miss(1, CACHE_CONTENT, "payg", 4000000000LL);
		t1 = time(NULL);
		CHECK(cache_flush_in(t1 + 1) == 0, "an event of any time is due a second after it was noted (wall clock)");
		CHECK(t0 != t1 || cache_flush_in(t1) == 1, "pending: flush within a second");
		CHECK(cache_flush_in(4000000000LL) == 0, "... not timed from the event's own time");
	}
	cache_pending_clear();
	return TAP_DONE();
}
