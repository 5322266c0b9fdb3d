"""test_cache.py - the three-tier cache through lighttpd + MariaDB (issue 4)."""
import json
import time
import urllib.parse

from qc import (SERVER, check, delete, done, get, is_problem, new_user, parallel, post,
                put, request, sql)


def path(tier, key):
    return f"/api/v1/cache/{tier}/" + urllib.parse.quote(key, safe="")


admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="cadmin")
a_id, a_key, _ = new_user("pro_monthly", prefix="ca")
b_id, b_key, _ = new_user("pro_monthly", prefix="cb")
f_id, f_key, _ = new_user("freemium", prefix="cf")

# --- round trip per tier --------------------------------------------------------
for tier in ("session", "content", "extraction"):
    r = put(path(tier, "rt-key"), {"value": f"v-{tier}", "metadata": {"src": tier}}, key=a_key)
    check(r.status == 200 and r.json["cached"] is True and r.json["expires_at"], f"{tier}: stored", r)
    r = get(path(tier, "rt-key"), key=a_key)
    check(r.status == 200 and r.json["value"] == f"v-{tier}" and r.json["metadata"] == {"src": tier}
          and r.json["tier"] == tier and r.json["created_at"] and r.json["access_count"] >= 1,
          f"{tier}: read back with metadata", r)
r = put(path("system", "drafting_rules"), {"value": "Use active verbs."}, key=admin_key)
check(r.status == 200 and r.json["cached"] is True and r.json["expires_at"] is None,
      "system: admin writes, never expires", r)
r = get(path("system", "drafting_rules"), key=f_key)
check(r.status == 200 and r.json["value"] == "Use active verbs.", "system: any user (even freemium) reads it", r)
r = put(path("system", "drafting_rules"), {"value": "hacked"}, key=a_key)
check(is_problem(r, 403), "system: a non-admin cannot write", r)
r = delete(path("system", "drafting_rules"), key=a_key)
check(is_problem(r, 403), "system: a non-admin cannot delete", r)
r = put(path("content", "json-value"), {"value": {"skills": ["C", "SQL"], "years": 7}}, key=a_key)
r = get(path("content", "json-value"), key=a_key)
check(r.json and r.json["value"] == {"skills": ["C", "SQL"], "years": 7}, "JSON values round-trip as JSON", r)

# TTL per plan (pro_monthly: session 30 min, content 60 min)
r = put(path("session", "ttl"), {"value": "x"}, key=a_key)
r2 = put(path("content", "ttl"), {"value": "x"}, key=a_key)
def secs(iso):
    return time.mktime(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())
check(1795 <= secs(r.json["expires_at"]) <= 1805 and 3595 <= secs(r2.json["expires_at"]) <= 3605,
      "pro_monthly TTLs: session 30 min, content 60 min", (r.json, r2.json))
r = put(path("content", "short"), {"value": "x", "ttl_seconds": 60}, key=a_key)
check(55 <= secs(r.json["expires_at"]) <= 65, "ttl_seconds shortens the TTL", r)

# freemium: accepted, not stored; reads miss
r = put(path("content", "f"), {"value": "x"}, key=f_key)
check(r.status == 200 and r.json == {"key": "f", "tier": "content", "cached": False, "reason": "plan"},
      "freemium write: cached false, reason plan", r)
check(is_problem(get(path("content", "f"), key=f_key), 404), "freemium read misses")
check(int(sql(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {f_id}")[0][0]) == 0, "nothing stored for freemium")

# --- isolation -----------------------------------------------------------------------
put(path("content", "secret"), {"value": "A's CV"}, key=a_key)
r = get(path("content", "secret"), key=b_key)
check(is_problem(r, 404) and r.json["type"].endswith("cache-miss"), "B reading A's key: a miss, not a 403", r)
r = delete(path("content", "secret"), key=b_key)
check(is_problem(r, 404), "B deleting A's key: 404", r)
r = put(path("content", "secret"), {"value": "B's CV"}, key=b_key)
check(get(path("content", "secret"), key=a_key).json["value"] == "A's CV"
      and get(path("content", "secret"), key=b_key).json["value"] == "B's CV",
      "B writing the same key makes B's own entry; A's is untouched")
sb = get("/api/v1/cache/stats", key=b_key).json
check(sb["scope"] == "user" and "top_keys" not in sb and "plans" not in sb, "user stats show no one else", sb)
r = delete(path("content", "secret"), key=a_key)
check(r.status == 204 and get(path("content", "secret"), key=b_key).status == 200,
      "A deletes A's entry only", r)

# --- keys, limits, bad input --------------------------------------------------------------
pairs = [("A", "a"), ("é", "e"), ("ss", "ß"), ("key", "key ")]
for x, y in pairs:
    put(path("session", x), {"value": "first"}, key=a_key)
    check(is_problem(get(path("session", y), key=a_key), 404), f"keys {x!r} and {y!r} are different")
r = put(path("session", "k" * 255), {"value": "x"}, key=a_key)
check(r.status == 200, "255-byte key accepted", r)
r = put(path("session", "k" * 256), {"value": "x"}, key=a_key)
check(is_problem(r, 400), "256-byte key: 400", r)
# lighttpd itself refuses control characters in URLs (400) before the worker;
# the worker refuses them too (tests/unit/test_route.c)
r = get("/api/v1/cache/session/a%0Ab", key=a_key)
check(r.status == 400, "control character in key: 400", r)
r = get("/api/v1/cache/session/a%00b", key=a_key)
# Apache decodes the path itself and answers a %00 with its own 404
check(r.status == (404 if SERVER == "apache" else 400), "NUL in key: refused (400; Apache: its own 404)", r)
r = get(path("bogus", "k"), key=a_key)
check(is_problem(r, 400) and "tier" in r.json["detail"], "unknown tier: 400", r)
r = put(path("content", "big"), {"value": "x" * ((1 << 20) + 1)}, key=a_key)
check(is_problem(r, 413), "entry over 1 MiB: 413", r)
r = put(path("content", "almost"), {"value": "x" * ((1 << 20) - 100)}, key=a_key)
check(r.status == 200, "entry just under 1 MiB stored", r)
r = put(path("content", "meta-big"), {"value": "x" * ((1 << 20) - 10), "metadata": {"pad": "y" * 20}}, key=a_key)
check(is_problem(r, 413), "value + metadata over 1 MiB: 413", r)
for name, body in [("no value", {}), ("null value", {"value": None}),
                   ("metadata not an object", {"value": "x", "metadata": [1]}),
                   ("negative ttl", {"value": "x", "ttl_seconds": -1}),
                   ("ttl string", {"value": "x", "ttl_seconds": "60"}),
                   ("unknown field", {"value": "x", "owner": 5})]:
    r = put(path("content", "bad"), body, key=a_key)
    check(is_problem(r, 400), f"PUT with {name}: 400", r)
r = request("PUT", path("content", "bad"), raw=b'{"value": "x"', key=a_key)
check(is_problem(r, 400), "PUT with malformed JSON: 400", r)
r = request("PUT", path("content", "bad"), raw=b'{"value": "x"}', ctype="text/plain", key=a_key)
check(is_problem(r, 415), "PUT with text/plain: 415", r)
r = put(path("content", "'; DROP TABLE ai_cache; --"), {"value": "'; DELETE FROM users; --",
                                                         "metadata": {"q": "\" OR 1=1"}}, key=a_key)
r2 = get(path("content", "'; DROP TABLE ai_cache; --"), key=a_key)
check(r.status == 200 and r2.json["value"] == "'; DELETE FROM users; --" and r2.json["metadata"]["q"] == "\" OR 1=1",
      "SQL metacharacters in key, value and metadata are data", r2)
check(int(sql("SELECT COUNT(*) FROM ai_cache")[0][0]) > 0, "ai_cache still there")

# binary-safe and UTF-8 values round-trip byte for byte
tricky = "NUL:\u0000 end; émoji 😀; CJK 漢字; RTL עברית; \u2028 line sep; quote \" backslash \\"
put(path("content", "tricky"), {"value": tricky}, key=a_key)
raw = get(path("content", "tricky"), key=a_key)
check(raw.json["value"] == tricky, "UTF-8 with NUL round-trips exactly", raw)
check(b"\\u0000" in raw.body, "NUL goes out escaped as \\u0000")

# --- hits, access_count and savings over 100 hits -----------------------------------
c_id, c_key, _ = new_user("pro_annual", prefix="cc")
put(path("content", "hot"), {"value": "cached cover letter"}, key=c_key)
res = parallel(100, lambda i: get(path("content", "hot"), key=c_key))
check(all(getattr(r, "status", 0) == 200 for r in res), "100 concurrent hits all served")
for i in range(5):
    get(path("content", "nothing-here"), key=c_key)
time.sleep(1.6)  # workers flush counters at least every second
ac = int(sql(f"SELECT access_count FROM ai_cache WHERE user_id = {c_id} AND cache_key = 'hot'")[0][0])
check(ac == 100, "access_count is exactly 100 in the database", ac)
st = get("/api/v1/cache/stats", key=c_key).json
ct = st["tiers"]["content"]
check(ct["hits"] == 100 and ct["misses"] == 5 and abs(ct["saved_usd"] - 0.5) < 1e-9
      and abs(ct["hit_ratio"] - 100 / 105) < 1e-6, "stats: 100 hits, 5 misses, $0.50 saved", ct)
check(ct["entries"] == 1 and ct["bytes"] == len("cached cover letter"), "stats: entries and bytes", ct)
ts = get("/api/v1/cache/stats/timeseries?hours=24", key=c_key)
b = ts.json["buckets"]
check(ts.status == 200 and len(b) == 24 and b[-1]["hits"] == 100 and b[-1]["misses"] == 5
      and sum(x["hits"] for x in b[:-1]) == 0, "timeseries: 24 hourly buckets, this hour has them", b[-3:])
for q in ("hours=0", "hours=169", "hours=abc", "hours="):
    check(is_problem(get("/api/v1/cache/stats/timeseries?" + q, key=c_key), 400), f"timeseries {q}: 400")
ga = get("/api/v1/cache/stats", key=admin_key).json
check(ga["plans"]["pro_annual"]["entries"] >= 1 and ga["plans"]["pro_annual"]["bytes"] >= len("cached cover letter"),
      "admin stats: live entries and bytes per plan", ga["plans"].get("pro_annual"))
check(ga["scope"] == "global" and ga["tiers"]["content"]["hits"] >= 100 and "pro_annual" in ga["plans"]
      and any(k["key"] == "hot" and k["hits"] == 100 for k in ga["top_keys"]),
      "admin stats: global, per plan, top keys", {k: ga.get(k) for k in ("plans", "top_keys")})
# several entries hit in one flush window: each worker writes one row per entry
# in one flush (an array-bound UPDATE in a transaction); every count is exact
for k in range(6):
    put(path("content", f"warm-{k}"), {"value": f"entry {k}"}, key=c_key)
res = parallel(60, lambda i: get(path("content", f"warm-{i % 6}"), key=c_key))
check(all(getattr(r, "status", 0) == 200 for r in res), "60 concurrent hits over 6 entries all served")
time.sleep(1.6)
acs = dict(sql(f"SELECT cache_key, access_count FROM ai_cache WHERE user_id = {c_id}"
               " AND cache_key LIKE 'warm-%'"))
check(sorted(acs) == [f"warm-{k}" for k in range(6)] and all(int(v) == 10 for v in acs.values()),
      "6 entries hit 10 times each: every access_count is exactly 10", acs)

# --- hash ----------------------------------------------------------------------------------
h1 = post("/api/v1/cache/hash", {"url": "https://Jobs.Example.com/posting/42#apply"}, key=a_key)
h2 = post("/api/v1/cache/hash", {"url": "  HTTPS://JOBS.EXAMPLE.COM/posting/42 "}, key=a_key)
h3 = post("/api/v1/cache/hash", {"url": "https://jobs.example.com/posting/43"}, key=a_key)
check(h1.status == 200 and len(h1.json["hash"]) == 64 and h1.json["hash"] == h2.json["hash"]
      and h1.json["hash"] != h3.json["hash"], "URL hash: same URL in another case/fragment, same hash", (h1, h2))
t1 = post("/api/v1/cache/hash", {"text": "  Draft my CV \n"}, key=a_key)
t2 = post("/api/v1/cache/hash", {"text": "Draft my CV"}, key=a_key)
check(t1.json["hash"] == t2.json["hash"] == __import__("hashlib").sha256(b"Draft my CV").hexdigest(),
      "text hash: trimmed SHA-256", t1)
for body in ({}, {"url": "a", "text": "b"}, {"url": 5}):
    check(is_problem(post("/api/v1/cache/hash", body, key=a_key), 400), f"hash with {body}: 400")

# --- the per-user byte cap (4 MiB in the test configuration): 507 ----------------
g_id, g_key, _ = new_user("enterprise", prefix="cg")
codes = [put(path("content", f"mb{i}"), {"value": "z" * 1000000}, key=g_key).status for i in range(4)]
check(codes == [200] * 4, "four 1 MB entries fit under 4 MiB", codes)
r = put(path("content", "mb4"), {"value": "z" * 1000000}, key=g_key)
check(is_problem(r, 507), "the fifth would pass the cap: 507 Insufficient Storage", r)
check(is_problem(get(path("content", "mb4"), key=g_key), 404), "nothing half-written")
check(delete(path("content", "mb0"), key=g_key).status == 204
      and put(path("content", "mb4"), {"value": "z" * 1000000}, key=g_key).status == 200,
      "deleting one makes room again")
check(put(path("content", "small"), {"value": "z"}, key=a_key).status == 200, "other users are not affected")

# --- cleanup ---------------------------------------------------------------------------------
e_id, e_key, _ = new_user("payg", prefix="ce")
for i in range(3):
    put(path("session", f"soon{i}"), {"value": "x", "ttl_seconds": 1}, key=e_key)
time.sleep(2.1)
check(is_problem(get(path("session", "soon0"), key=e_key), 404), "expired entry is never served")
r = request("POST", "/api/v1/cache/cleanup", raw=b"", key=a_key)
check(is_problem(r, 403), "cleanup is admin only", r)
r = request("POST", "/api/v1/cache/cleanup", raw=b"", key=admin_key)
check(r.status == 200 and r.json["deleted"] >= 3, "admin cleanup removes the expired entries", r)
left = int(sql(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {e_id}")[0][0])
check(left == 0, "their rows are gone", left)
ev = sql("SELECT event_name, status, interval_value, interval_field FROM information_schema.events "
         "WHERE event_name = 'qc_cache_cleanup'")
check(ev and ev[0][1] == "ENABLED" and ev[0][2:] == ["1", "HOUR"], "an hourly MariaDB EVENT cleans up too", ev)
sched = sql("SELECT @@event_scheduler")
check(sched[0][0] == "ON", "the event scheduler is on", sched)
done()
