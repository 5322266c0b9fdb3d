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
	/* the flush rule itself: a second, a batch, or three quarters full */
	CHECK(qc_flush_due(0, 512, 100, 100) == -1, "flush rule: empty, nothing to do");
	CHECK(qc_flush_due(1, 512, 100, 100) == 1 && qc_flush_due(1, 512, 100, 101) == 0,
	      "flush rule: one record waits a second");
	CHECK(qc_flush_due(QC_FLUSH_BATCH - 1, 4096, 100, 100) == 1 && qc_flush_due(QC_FLUSH_BATCH, 4096, 100, 100) == 0,
	      "flush rule: a batch is due at once (a busy worker writes every tick, not a large batch a second)");
	CHECK(qc_flush_due(97, 128, 100, 100) == 0, "flush rule: three quarters full is due at once");

	/* cost-aware caching: expected saving against storage cost */
	{
		/* 2 KiB for an hour at $5/GiB-h costs ~0.0095 micro-dollars */
		long long price = cache_parse_micro("5");
		CHECK(cache_store_worth(1000, 0, CACHE_VALUE_MIN_STORES - 1, 2048, 3600, price, 1) ==
		      CACHE_WORTH_LEARN, "fewer stores than the minimum: stored to learn");
		CHECK(cache_store_worth(1000, 1, 100, 2048, 3600, price, 1) == CACHE_WORTH_STORE,
		      "1 hit in 100 stores of a $0.001 answer (10 micro$) beats its storage cost");
		CHECK(cache_store_worth(1000, 0, 100, 2048, 3600, price, 1) == CACHE_WORTH_SKIP,
		      "a task whose entries are never hit: skipped");
		CHECK(cache_store_worth(1000, 0, 100, 2048, 3600, price, CACHE_VALUE_EXPLORE * 7) ==
		      CACHE_WORTH_EXPLORE, "one skipped answer in CACHE_VALUE_EXPLORE (by hash) is stored anyway");
		/* 1 MiB for a day at $5/GiB-h: 122,070 micro$; 50 hits per store of
		 * 2,000 micro$ = 100,000: not worth it; at 70 hits it is */
		CHECK(cache_store_worth(2000, 5000, 100, 1048576, 86400, price, 1) == CACHE_WORTH_SKIP,
		      "a big, long-lived entry with fewer hits than it costs: skipped");
		CHECK(cache_store_worth(2000, 7000, 100, 1048576, 86400, price, 1) == CACHE_WORTH_STORE,
		      "... with enough hits: stored");
		CHECK(cache_store_worth(0, 100, 100, 10, 60, 0, 1) == CACHE_WORTH_SKIP,
		      "an answer that cost nothing saves nothing (even with free storage)");
		CHECK(cache_store_worth(5, 100, 100, 10, 60, 0, 1) == CACHE_WORTH_STORE,
		      "free storage: any saving is worth it");
		CHECK(cache_store_worth(1000, 1, 100, 2048, 3600, -1, 1) == CACHE_WORTH_STORE,
		      "a bad (negative) price counts as free, never as a bonus");
		CHECK(strcmp(cache_worth_name(CACHE_WORTH_SKIP), "skipped") == 0 &&
		      strcmp(cache_worth_name(CACHE_WORTH_EXPLORE), "exploring") == 0, "decision names");
	}
	return TAP_DONE();
}
