"""test_adaptive_ttl.py - adaptive TTL (SPEC §13, issue 14, sql/010): on a plan
with ttl_adaptive = 1 an entry starts with ttl_cold_pct of the plan's TTL,
each hit gives it the plan's TTL from the hit, never past ttl_max_pct of it
from its creation; plans without it keep fixed TTLs.  Needs the test clock
(a --enable-test-clock build): the hits happen hours apart in simulated time."""
import os
import time
import urllib.parse
from datetime import datetime, timezone

from qc import check, done, get, new_user, put, sql_write

if os.environ.get("QC_TEST_CLOCK_BUILD") != "1":
    print("# adaptive TTL: needs the test clock build; skipped")
    done()



def path(key, tier="session"):
    return f"/api/v1/cache/{tier}/" + urllib.parse.quote(key, safe="")


def secs(iso):
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def at(t):
    return {"X-QC-Test-Now": str(t)}


def expiry_after_hit(key, user_key, t, want):
    """GET (a hit at simulated time t) until the flushed extension shows: the
    workers count hits in memory and write them (with the extension) about
    once a second.  Every poll is a hit at the same t, so it grants the same."""
    got = None
    for _ in range(30):
        r = get(path(key), key=user_key, headers=at(t))
        if r.status != 200:
            return r.status
        got = secs(r.json["expires_at"]) if r.json.get("expires_at") else None
        if got == want:
            return got
        time.sleep(0.2)
    return got


# plans of their own (removed at the end, so the other suites see the five plans)
sql_write("INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
          " session_ttl_seconds, content_ttl_seconds, sort_order, ttl_adaptive, ttl_cold_pct, ttl_max_pct)"
          " VALUES ('test_adapt', 'Test adaptive', NULL, NULL, NULL, 3600, 7200, 98, 1, 50, 300),"
          " ('test_fixed', 'Test fixed', NULL, NULL, NULL, 3600, 7200, 97, 0, 50, 300)")
try:
    _, akey, _ = new_user("test_adapt", prefix="adapt")
    _, fkey, _ = new_user("test_fixed", prefix="fixed")
    T0 = 2000000000   # 2033: far from the wall clock (and below 2038, the end of FROM_UNIXTIME here)
    r = put(path("hot"), {"value": "used often"}, key=akey, headers=at(T0))
    check(r.status in (200, 201) and secs(r.json["expires_at"]) == T0 + 1800,
          "adaptive plan: a new entry starts with 50 % of the plan's 3600 s", r)
    put(path("cold"), {"value": "never read"}, key=akey, headers=at(T0))
    r = put(path("pinned"), {"value": "own ttl", "ttl_seconds": 600}, key=akey, headers=at(T0))
    check(r.status in (200, 201) and secs(r.json["expires_at"]) == T0 + 600,
          "an entry stored with its own ttl_seconds keeps it", r)

    got = expiry_after_hit("hot", akey, T0 + 1000, T0 + 1000 + 3600)
    check(got == T0 + 4600, "a hit at +1000 s gives it the plan's TTL from the hit: expires at +4600 s", got)
    got = expiry_after_hit("hot", akey, T0 + 4000, T0 + 7600)
    check(got == T0 + 7600, "a hit at +4000 s: expires at +7600 s", got)
    got = expiry_after_hit("hot", akey, T0 + 7000, T0 + 10600)
    check(got == T0 + 10600, "a hit at +7000 s: expires at +10600 s", got)
    got = expiry_after_hit("hot", akey, T0 + 10000, T0 + 10800)
    check(got == T0 + 10800, "a hit at +10000 s is capped at 300 % of the TTL from creation: +10800 s", got)
    r = get(path("hot"), key=akey, headers=at(T0 + 10801))
    check(r.status == 404, "... and the entry is gone after the cap", r.status)

    r = get(path("cold"), key=akey, headers=at(T0 + 1801))
    check(r.status == 404, "an entry never hit leaves at 50 % of the plan's TTL (+1800 s)", r.status)
    got = expiry_after_hit("pinned", akey, T0 + 500, T0 + 600)
    check(got == T0 + 600, "a hit does not extend an entry with its own ttl_seconds", got)

    r = put(path("plain"), {"value": "fixed plan"}, key=fkey, headers=at(T0))
    check(r.status in (200, 201) and secs(r.json["expires_at"]) == T0 + 3600,
          "a plan without adaptive TTL stores with its full TTL", r)
    got = expiry_after_hit("plain", fkey, T0 + 3000, T0 + 3600)
    check(got == T0 + 3600, "... and a hit does not move it", got)

    # the stats show the distribution of effective TTLs
    put(path("fresh"), {"value": "x"}, key=akey, headers=at(T0 + 20000))
    r = get("/api/v1/cache/stats", key=akey, headers=at(T0 + 20000))
    buckets = {b["ttl_up_to"]: b for b in (r.json or {}).get("effective_ttl", [])}
    check(r.status == 200 and list(buckets) == ["15m", "1h", "6h", "24h", "7d", "longer", "never"]
          and buckets["1h"]["entries"] == 1 and buckets["1h"]["adaptive"] == 1,
          "cache stats: live entries by effective TTL, adaptive ones counted (a fresh entry: 30 min)", r.json)
finally:
    sql_write("UPDATE users SET plan = 'pro_monthly' WHERE plan IN ('test_adapt', 'test_fixed');"
              " DELETE FROM plans WHERE name IN ('test_adapt', 'test_fixed')")
done()
