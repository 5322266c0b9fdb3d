/* test_cache_db.c - the cache module against the test MariaDB with a
 * settable clock: plan TTLs, expiry, isolation, caps, cleanup, counters. */
#include <string.h>

#include "cache.h"
#include "dbtest.h"
#include "tap.h"

#define KEY(s) (s), strlen(s)

int main(void)
{
	struct db *db = dbt_open();
	struct cache_entry e;
	enum cache_put_outcome out;
	time_t exp, now = dbt_utc(2026, 6, 1, 10, 0, 0);
	unsigned long long n = 0;
	long long cap = 64 << 20;
	long long pro = dbt_user(db, "pro_monthly"), ent = dbt_user(db, "enterprise");
	long long fre = dbt_user(db, "freemium"), ann = dbt_user(db, "pro_annual");

	/* pro_monthly: session 30 min, content 60 min */
	CHECK(cache_put(db, pro, CACHE_SESSION, KEY("job1"), "desc", 4, 0, NULL, 0, 0, now, cap, &out, &exp)
	      == QC_OK && out == CACHE_STORED && exp == now + 1800, "pro_monthly session entry: 30 min TTL");
	CHECK(cache_get(db, pro, CACHE_SESSION, KEY("job1"), now + 1799, &e) == QC_OK &&
	      e.value_len == 4 && memcmp(e.value, "desc", 4) == 0, "served at 29:59");
	cache_entry_release(&e);
	CHECK(cache_get(db, pro, CACHE_SESSION, KEY("job1"), now + 1800, &e) == QC_ENOTFOUND,
	      "not served at 30:00 (expired, before any cleanup)");
	CHECK(cache_put(db, pro, CACHE_EXTRACTION, KEY("x"), "v", 1, 0, NULL, 0, 0, now, cap, &out, &exp)
	      == QC_OK && exp == now + 1800, "extraction uses the session TTL");
	CHECK(cache_put(db, pro, CACHE_CONTENT, KEY("cv"), "v", 1, 0, NULL, 0, 0, now, cap, &out, &exp)
	      == QC_OK && exp == now + 3600, "pro_monthly content: 60 min");
	CHECK(cache_put(db, ann, CACHE_SESSION, KEY("s"), "v", 1, 0, NULL, 0, 0, now, cap, &out, &exp)
	      == QC_OK && exp == now + 3600, "pro_annual session: 60 min");
	CHECK(cache_put(db, ent, CACHE_CONTENT, KEY("cv"), "v", 1, 0, NULL, 0, 0, now, cap, &out, &exp)
	      == QC_OK && exp == now + 14400, "enterprise content: 240 min");
	CHECK(cache_get(db, ent, CACHE_CONTENT, KEY("cv"), now + 14399, &e) == QC_OK, "served at 239:59");
	cache_entry_release(&e);
	CHECK(cache_get(db, ent, CACHE_CONTENT, KEY("cv"), now + 14400, &e) == QC_ENOTFOUND, "expired at 240:00");
	CHECK(cache_put(db, ent, CACHE_CONTENT, KEY("short"), "v", 1, 0, NULL, 0, 60, now, cap, &out, &exp)
	      == QC_OK && exp == now + 60, "a caller's ttl shortens the plan's");
	CHECK(cache_put(db, ent, CACHE_CONTENT, KEY("long"), "v", 1, 0, NULL, 0, 999999, now, cap, &out, &exp)
	      == QC_OK && exp == now + 14400, "a caller's ttl cannot lengthen it");
	CHECK(cache_put(db, fre, CACHE_CONTENT, KEY("cv"), "v", 1, 0, NULL, 0, 0, now, cap, &out, &exp)
	      == QC_OK && out == CACHE_SKIPPED_PLAN, "freemium: accepted, not stored");
	CHECK(cache_get(db, fre, CACHE_CONTENT, KEY("cv"), now, &e) == QC_ENOTFOUND, "freemium read misses");

	/* isolation: the same key for two users and the system tier */
	CHECK(cache_put(db, ann, CACHE_CONTENT, KEY("cv"), "annual", 6, 0, NULL, 0, 0, now, cap, &out, &exp) == QC_OK,
	      "another user writes the same key");
	CHECK(cache_get(db, ent, CACHE_CONTENT, KEY("cv"), now + 1, &e) == QC_OK && e.value_len == 1,
	      "each user reads only their own value");
	cache_entry_release(&e);
	CHECK(cache_delete(db, pro, CACHE_CONTENT, KEY("nokey")) == QC_ENOTFOUND, "deleting a missing key");
	CHECK(cache_delete(db, pro, CACHE_CONTENT, KEY("cv")) == QC_OK, "owner deletes");
	CHECK(cache_get(db, ann, CACHE_CONTENT, KEY("cv"), now + 1, &e) == QC_OK && e.value_len == 6,
	      "the other user's entry is untouched");
	cache_entry_release(&e);
	CHECK(cache_put(db, 0, CACHE_SYSTEM, KEY("rules"), "R", 1, 0, NULL, 0, 0, now, 0, &out, &exp) == QC_OK &&
	      out == CACHE_STORED && exp == 0, "system entry never expires");
	CHECK(cache_get(db, 0, CACHE_SYSTEM, KEY("rules"), now + 86400 * 3650, &e) == QC_OK, "still there in ten years");
	cache_entry_release(&e);

	/* byte-exact keys */
	cache_put(db, ann, CACHE_SESSION, KEY("A"), "upper", 5, 0, NULL, 0, 0, now, cap, &out, &exp);
	cache_put(db, ann, CACHE_SESSION, KEY("key "), "space", 5, 0, NULL, 0, 0, now, cap, &out, &exp);
	CHECK(cache_get(db, ann, CACHE_SESSION, KEY("a"), now, &e) == QC_ENOTFOUND, "A and a are different keys");
	CHECK(cache_get(db, ann, CACHE_SESSION, KEY("key"), now, &e) == QC_ENOTFOUND, "'key ' and 'key' differ");
	CHECK(cache_put(db, ann, CACHE_SESSION, KEY("stra\xc3\x9f" "e"), "1", 1, 0, NULL, 0, 0, now, cap, &out, &exp) == QC_OK &&
	      cache_get(db, ann, CACHE_SESSION, KEY("strasse"), now, &e) == QC_ENOTFOUND, "ss and sharp s differ");
	CHECK(cache_put(db, ann, CACHE_SESSION, KEY("caf\xc3\xa9"), "1", 1, 0, NULL, 0, 0, now, cap, &out, &exp) == QC_OK &&
	      cache_get(db, ann, CACHE_SESSION, KEY("cafe"), now, &e) == QC_ENOTFOUND, "e-acute and e differ");

	/* binary-safe values */
	const char bin[] = "a\0b\xc3\xa9\0";
	CHECK(cache_put(db, ann, CACHE_SESSION, KEY("bin"), bin, 6, 0, NULL, 0, 0, now, cap, &out, &exp) == QC_OK &&
	      cache_get(db, ann, CACHE_SESSION, KEY("bin"), now, &e) == QC_OK && e.value_len == 6 &&
	      memcmp(e.value, bin, 6) == 0, "NUL bytes round-trip");
	cache_entry_release(&e);

	/* per-user cap: 507 territory, overwrite counts the difference */
	long long capped = dbt_user(db, "enterprise");
	char big[1500];
	memset(big, 'x', sizeof big);
	CHECK(cache_put(db, capped, CACHE_CONTENT, KEY("k1"), big, 1000, 0, NULL, 0, 0, now, 2500, &out, &exp) == QC_OK &&
	      out == CACHE_STORED, "1000 of 2500 bytes");
	CHECK(cache_put(db, capped, CACHE_CONTENT, KEY("k2"), big, 1000, 0, NULL, 0, 0, now, 2500, &out, &exp) == QC_OK &&
	      out == CACHE_STORED, "2000 of 2500 bytes");
	CHECK(cache_put(db, capped, CACHE_CONTENT, KEY("k3"), big, 1000, 0, NULL, 0, 0, now, 2500, &out, &exp) == QC_OK &&
	      out == CACHE_FULL, "a third 1000 would pass the cap: full");
	CHECK(cache_put(db, capped, CACHE_CONTENT, KEY("k2"), big, 1500, 0, NULL, 0, 0, now, 2500, &out, &exp) == QC_OK &&
	      out == CACHE_STORED, "overwriting k2 with 1500 counts only the difference");
	CHECK(cache_delete(db, capped, CACHE_CONTENT, KEY("k1")) == QC_OK &&
	      cache_put(db, capped, CACHE_CONTENT, KEY("k3"), big, 1000, 0, NULL, 0, 0, now, 2500, &out, &exp) == QC_OK &&
	      out == CACHE_STORED, "deleting frees room");
	CHECK(cache_put(db, capped, CACHE_CONTENT, KEY("k4"), big, 1000, 0, NULL, 0, 0, now + 14400, 2500, &out, &exp) == QC_OK &&
	      out == CACHE_STORED, "expired entries give their bytes back on the next write");

	/* cleanup counts */
	long long cl = dbt_user(db, "payg");
	for (int i = 0; i < 5; i++) {
		char k[8];
		snprintf(k, sizeof k, "c%d", i);
		cache_put(db, cl, CACHE_SESSION, KEY(k), "v", 1, 0, NULL, 0, i < 3 ? 10 : 0, now, cap, &out, &exp);
	}
	CHECK(cache_cleanup(db, now + 11, &n) == QC_OK && n >= 3, "cleanup removes at least the 3 expired entries");
	CHECK(cache_cleanup(db, now + 11, &n) == QC_OK && n == 0, "a second cleanup finds nothing");
	CHECK(cache_get(db, cl, CACHE_SESSION, KEY("c4"), now + 11, &e) == QC_OK, "live entries stay");
	cache_entry_release(&e);
	CHECK(cache_purge_user(db, cl, &n) == QC_OK && n == 2, "purge removes the user's 2 remaining entries");

	/* hit counters: accumulated, flushed in one go */
	cache_pending_clear();
	CHECK(cache_get(db, ann, CACHE_SESSION, KEY("A"), now, &e) == QC_OK, "hit");
	long long id = e.id;
	cache_entry_release(&e);
	for (int i = 0; i < 100; i++)
		cache_note_hit(id, ann, CACHE_SESSION, "pro_annual", now, 1500);
	CHECK(cache_get(db, ann, CACHE_SESSION, KEY("A"), now, &e) == QC_OK && e.access_count == 100,
	      "pending hits are visible to this worker before the flush");
	cache_entry_release(&e);
	CHECK(cache_flush(db) == QC_OK && cache_flush_in(now) == -1, "flush writes and empties the accumulator");
	CHECK(cache_get(db, ann, CACHE_SESSION, KEY("A"), now, &e) == QC_OK && e.access_count == 100,
	      "access_count is 100 after the flush");
	cache_entry_release(&e);
	struct db_rows *r = NULL;
	CHECK(cache_stats_hits(db, ann, 0, &r) == QC_OK && r->nrows == 1 && db_cell_ll(r, 0, 1) == 100 &&
	      db_cell_ll(r, 0, 3) == 150000, "stats: 100 hits saved $0.15");
	db_rows_free(r);
	dbt_close(db);
	return TAP_DONE();
}
