"""test_cost_aware.py - cost-aware caching (SPEC §13, issue 14, sql/011).

On a plan with cache_policy = 'cost_aware' an answer is stored only when the
hits its task and tier have been getting per stored entry, times what the
answer cost, exceed its storage cost; while a task has fewer than 20 stores
it is stored (learning), and one skipped answer in 20 (by key hash) is stored
anyway.  Plans with 'always' (the default) store every answer.  Under
cache_full_policy = 'evict_lowest_value' a write past the per-user byte cap
evicts the user's entries of least value per byte instead of 507.

Needs the test clock: the workers' copy of what was learned is a minute old
at most, so each phase runs a simulated minute after the previous one."""
import os
import secrets
import time
import urllib.parse

from qc import check, done, get, is_problem, metric, new_user, post, put, sql, sql_write

if os.environ.get("QC_TEST_CLOCK_BUILD") != "1":
    print("# cost-aware caching: needs the test clock build; skipped")
    done()



def at(t):
    return {"X-QC-Test-Now": str(t)}


def gen(key, task, prompt, t):
    return post("/api/v1/generate", {"task": task, "prompt": prompt, "cache_tier": "session"},
                key=key, headers=at(t), timeout=60)


def count(q):
    return int(sql(q)[0][0])


def wait_for(q, want, what):
    """Hits reach the ledger through the workers' accumulators (about a
    second): poll the database until q answers want."""
    got = None
    for _ in range(50):
        got = count(q)
        if got >= want:
            return got
        time.sleep(0.2)
    check(False, f"{what}: {want} expected in the database", got)
    return got


sql_write("INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
          " session_ttl_seconds, content_ttl_seconds, sort_order, cache_policy, cache_full_policy) VALUES"
          " ('test_costaware', 'Test cost-aware', NULL, NULL, NULL, 3600, 7200, 96, 'cost_aware', 'refuse'),"
          " ('test_always', 'Test always', NULL, NULL, NULL, 3600, 7200, 95, 'always', 'refuse'),"
          " ('test_evict', 'Test evict', NULL, NULL, NULL, 3600, 7200, 94, 'always', 'evict_lowest_value')")
try:
    T = 2000500000
    tag = secrets.token_hex(4)
    cold, hot = f"cold_{tag}", f"hot_{tag}"
    a_id, a_key, _ = new_user("test_costaware", prefix="costa")
    b_id, b_key, _ = new_user("test_always", prefix="costb")
    entries = f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {a_id} AND JSON_VALUE(metadata, '$.task') = "

    # phase 1: both tasks are new, so every answer is stored (learning)
    codes = [gen(a_key, cold, f"cold prompt {i}", T + i).status for i in range(22)]
    codes += [gen(a_key, hot, f"hot prompt {i}", T + i).status for i in range(20)]
    check(codes == [200] * 42, "phase 1: 42 misses answered", codes)
    check(count(entries + f"'{cold}'") == 22 and count(entries + f"'{hot}'") == 20,
          "a task with fewer than 20 stores is stored while the worker learns")
    # the hot task's entries are hit three times each, the cold one's never
    hits = [gen(a_key, hot, f"hot prompt {i}", T + 30 + i).json.get("cached") for i in range(20) for _ in range(3)]
    check(all(hits), "the hot task's answers are served from the cache", hits.count(True))
    wait_for(f"SELECT COUNT(*) FROM usage_events WHERE user_id = {a_id} AND task = '{hot}' AND cached = 1",
             60, "the hits in the ledger")
    check(count(f"SELECT COALESCE(SUM(stored), 0) FROM usage_events WHERE task = '{cold}'") == 22,
          "the ledger says which answers were stored")

    # phase 2, a simulated minute later: the workers read what was learned
    T2 = T + 120
    dec0 = metric("qc_cache_store_decisions_total", 'decision="skipped"')
    rc = [gen(a_key, cold, f"cold prompt {100 + i}", T2 + i) for i in range(20)]
    check(all(x.status == 200 and x.json["cached"] is False for x in rc),
          "cold task: every answer is still served", [x.status for x in rc])
    stored_cold = count(entries + f"'{cold}'") - 22
    check(stored_cold <= 6, "cold task (0 hits in 22 stores): its answers are not stored, but for the "
          "1-in-20 exploration", stored_cold)
    r = [gen(a_key, hot, f"hot prompt {100 + i}", T2 + i) for i in range(10)]
    check(all(x.status == 200 for x in r) and count(entries + f"'{hot}'") == 30,
          "hot task (3 hits a store): every new answer is stored")
    # one that was not stored (not one of the 1-in-20 explored ones)
    skipped_i = next(i for i, x in enumerate(rc)
                     if count(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {a_id}"
                              f" AND cache_key = '{x.json['cache_key']}'") == 0)
    again = gen(a_key, cold, f"cold prompt {100 + skipped_i}", T2 + 30)
    check(again.status == 200 and again.json["cached"] is False, "a skipped answer asked again is a miss, answered",
          again)
    skipped = count(f"SELECT COUNT(*) FROM usage_events WHERE user_id = {a_id} AND task = '{cold}'"
                    f" AND cached = 0 AND stored = 0")
    check(skipped >= 14, "the ledger records the skipped stores", skipped)
    # what the decisions were shows in /metrics (flushed about once a second)
    for _ in range(30):
        dec1 = metric("qc_cache_store_decisions_total", 'decision="skipped"')
        if dec1 - dec0 >= 14:
            break
        time.sleep(0.2)
    check(dec1 - dec0 >= 14, "qc_cache_store_decisions_total{decision=\"skipped\"} counts them", (dec0, dec1))
    st = get("/api/v1/cache/stats", key=a_key, headers=at(T2 + 40))
    tv = {(x["task"], x["tier"]): x for x in (st.json or {}).get("task_value", [])}
    check(st.status == 200 and tv.get((hot, "session"), {}).get("hits") == 60
          and tv[(hot, "session")]["stores"] == 30 and tv[(hot, "session")]["hits_per_store"] == 2.0,
          "cache stats: what cost-aware caching learned per task and tier", tv.get((hot, "session")))
    check(tv.get((cold, "session"), {}).get("hits") == 0, "... the cold task: no hits", tv.get((cold, "session")))

    # a plan with cache_policy 'always' stores the cold task's answers all the same
    codes = [gen(b_key, cold, f"cold prompt {200 + i}", T2 + i).status for i in range(5)]
    check(codes == [200] * 5 and count(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {b_id}") == 5,
          "cache_policy 'always' (the default): every answer stored", codes)

    # --- evict_lowest_value under the per-user cap (4 MiB in the tests) ------
    e_id, e_key, _ = new_user("test_evict", prefix="evict")

    def cpath(k):
        return "/api/v1/cache/content/" + urllib.parse.quote(k, safe="")

    codes = [put(cpath(f"mb{i}"), {"value": "z" * 1000000}, key=e_key).status for i in range(4)]
    check(codes == [200] * 4, "four 1 MB entries fit under 4 MiB", codes)
    for k, n in (("mb0", 3), ("mb2", 2), ("mb3", 1)):
        for _ in range(n):
            check(get(cpath(k), key=e_key).status == 200, f"hit {k}")
    wait_for(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {e_id} AND access_count > 0", 3,
             "the hit counts in the database")
    r = put(cpath("mb4"), {"value": "y" * 1000000}, key=e_key)
    check(r.status == 200, "evict_lowest_value: the fifth 1 MB entry is stored, not 507", r)
    left = sorted(x[0] for x in sql(f"SELECT cache_key FROM ai_cache WHERE user_id = {e_id}"))
    check(left == ["mb0", "mb2", "mb3", "mb4"], "the never-hit entry (lowest value per byte) left", left)
    r = put(cpath("mb5"), {"value": "y" * 1000000}, key=e_key)
    left = sorted(x[0] for x in sql(f"SELECT cache_key FROM ai_cache WHERE user_id = {e_id}"))
    check(r.status == 200 and left == ["mb0", "mb2", "mb3", "mb5"],
          "next: the newest, never hit yet, is of least value per byte (hits count, not age)", left)
    u = sql(f"SELECT bytes, entries, evicted FROM cache_usage WHERE user_id = {e_id}")[0]
    real = sql(f"SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) FROM ai_cache WHERE user_id = {e_id}")[0]
    check(u[:2] == real and u[2] == "2", "cache_usage stays exact and counts the evictions", (u, real))
    st = get("/api/v1/cache/stats", key=e_key)
    check(st.status == 200 and st.json["evicted"] == 2, "cache stats: evicted", st.json and st.json.get("evicted"))
    check(metric("qc_cache_evictions_total", "") >= 0 and "qc_cache_evictions_total" in get("/metrics").body.decode(),
          "/metrics: qc_cache_evictions_total")
    # a generation's answer evicts too, inside its billing transaction: fill
    # the cap to within 50 bytes first
    used = int(sql(f"SELECT bytes FROM cache_usage WHERE user_id = {e_id}")[0][0])
    r = put(cpath("filler"), {"value": "f" * (4194304 - used - 50)}, key=e_key)
    used = int(sql(f"SELECT bytes FROM cache_usage WHERE user_id = {e_id}")[0][0])
    check(r.status == 200 and 4194304 - 50 <= used <= 4194304, "the cap filled to within 50 bytes", (r, used))
    g = gen(e_key, "evict_gen", "an answer worth keeping", int(time.time()))
    g2 = gen(e_key, "evict_gen", "an answer worth keeping", int(time.time()))
    left = sorted(x[0] for x in sql(f"SELECT cache_key FROM ai_cache WHERE user_id = {e_id}"
                                    " AND cache_key NOT LIKE 'mb%' AND cache_key <> 'filler'"))
    check(g.status == 200 and g2.json and g2.json["cached"] is True and len(left) == 1,
          "a generated answer past the cap is stored (the repeat is a hit)", (g, left))
    ev = sql(f"SELECT evicted, bytes <= 4194304 FROM cache_usage WHERE user_id = {e_id}")[0]
    check(ev == ["3", "1"], "... by evicting an entry, within the cap", ev)
    r = put(cpath("mb9"), {"value": "q" * 1000000}, key=e_key)
    check(r.status == 200, "still room by eviction", r)
    # the default policy still answers 507
    f_id, f_key, _ = new_user("test_always", prefix="full")
    codes = [put(cpath(f"mb{i}"), {"value": "z" * 1000000}, key=f_key).status for i in range(5)]
    check(codes[:4] == [200] * 4 and is_problem(put(cpath("mbx"), {"value": "z" * 1000000}, key=f_key), 507),
          "cache_full_policy 'refuse' (the default): 507 as before", codes)
finally:
    sql_write("DELETE c FROM ai_cache c JOIN users u ON u.id = c.user_id"
              " WHERE u.plan IN ('test_costaware', 'test_always', 'test_evict')")
    sql_write("DELETE FROM cache_usage WHERE user_id IN (SELECT id FROM users"
              " WHERE plan IN ('test_costaware', 'test_always', 'test_evict'))")
    sql_write("UPDATE users SET plan = 'payg' WHERE plan IN ('test_costaware', 'test_always', 'test_evict')")
    sql_write("DELETE FROM plans WHERE name IN ('test_costaware', 'test_always', 'test_evict')")
done()
