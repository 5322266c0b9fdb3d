"""test_warming.py - predictive warming (SPEC §13, issue 14, sql/015).

Refresh-ahead: an entry hit warm_refresh_hits times is regenerated shortly
before it expires (POST /api/v1/admin/warming/run sweeps at the request's
clock; workers also sweep by themselves).  Next-task warming (opt-in): a
generation's "next" request is generated ahead when the plan's learned
P(next task | this task) reaches warm_next_pct.  Both spend the plan's daily
warming budget through its warming user's reservations: never billed to the
user, recorded in the ledger as 'warm:TASK', never past the budget even with
every worker sweeping at once.  Needs the test clock."""
import json
import os
import secrets
import time
import urllib.request

from qc import check, done, get, is_problem, new_user, parallel, post, request, sql, sql_write

if os.environ.get("QC_TEST_CLOCK_BUILD") != "1":
    print("# warming: needs the test clock build; skipped")
    done()

T = 2001000000          # far from the wall clock and from the other suites' times
TAG = secrets.token_hex(3)


def at(t):
    return {"X-QC-Test-Now": str(t)}


def gen(key, task, prompt, t, **extra):
    body = {"task": task, "prompt": prompt, "cache_tier": "session", **extra}
    return post("/api/v1/generate", body, key=key, headers=at(t), timeout=60)


def run_sweep(t):
    return request("POST", "/api/v1/admin/warming/run", raw=b"", key=admin_key, headers=at(t))


def poll(fn, what, tries=60):
    for _ in range(tries):
        v = fn()
        if v:
            return v
        time.sleep(0.25)
    return fn()


def mock_calls():
    with urllib.request.urlopen(os.environ["QC_MOCK_URL"] + "/_calls", timeout=10) as r:
        return json.loads(r.read())["completions"]


def one(q):
    rows = sql(q)
    return rows[0][0] if rows else None


sql_write("INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
          " session_ttl_seconds, content_ttl_seconds, sort_order, warm_tokens_per_day, warm_refresh_hits,"
          " warm_next_pct) VALUES"
          " ('test_warm', 'Test warming', NULL, NULL, NULL, 3600, 7200, 93, 1000000, 2, 40),"
          " ('test_tight', 'Test warming budget', NULL, NULL, NULL, 3600, 7200, 92, 3500, 1, NULL)")
admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="wadmin")
try:
    # --- refresh-ahead -------------------------------------------------------------
    uid, key, _ = new_user("test_warm", prefix="warm")
    task = f"cv_{TAG}"
    r = gen(key, task, "a CV for the warming test", T)
    check(r.status == 200 and r.json["cached"] is False, "a miss on a warming plan", r)
    used0 = get("/api/v1/quota/status", key=key, headers=at(T)).json["daily"]["used"]
    meta = one(f"SELECT JSON_VALUE(metadata, '$.regen.prompt') FROM ai_cache WHERE user_id = {uid}")
    check(meta == "a CV for the warming test", "its entry keeps what regenerating it needs", meta)
    check(run_sweep(T + 100).json == {"started": 0}, "a sweep long before expiry starts nothing")
    hits = [gen(key, task, "a CV for the warming test", T + 10).json["cached"] for _ in range(2)]
    check(hits == [True, True], "two hits (warm_refresh_hits = 2)")
    poll(lambda: one(f"SELECT access_count >= 2 FROM ai_cache WHERE user_id = {uid}") == "1", "hits flushed")
    r = run_sweep(T + 3600 - 200)
    check(r.status == 200 and r.json["started"] == 1, "200 s before expiry the sweep starts one regeneration", r)
    created = poll(lambda: one(f"SELECT UNIX_TIMESTAMP(created_at) FROM ai_cache WHERE user_id = {uid}"
                               f" AND UNIX_TIMESTAMP(created_at) = {T + 3400}"), "refreshed")
    check(created == str(T + 3400), "the entry is regenerated in the background (created at the sweep's time)",
          created)
    check(one(f"SELECT JSON_VALUE(metadata, '$.warmed') FROM ai_cache WHERE user_id = {uid}") == "refresh",
          "... marked as warmed by refresh")
    r = gen(key, task, "a CV for the warming test", T + 3700)
    check(r.status == 200 and r.json["cached"] is True, "after the original expiry the user still gets a hit", r)
    wid = one("SELECT id FROM users WHERE email = 'warming+test_warm@quotacache.invalid'")
    ledger = sql(f"SELECT task, outcome, cost_micro > 0 FROM usage_events WHERE user_id = {wid}")
    check(ledger == [[f"warm:{task}", "ok", "1"]], "the warming spend is the warming user's ledger row", ledger)
    check(get("/api/v1/quota/status", key=key, headers=at(T)).json["daily"]["used"] == used0,
          "the user is billed nothing for it")
    usage = get(f"/api/v1/usage?from=2033-05-01&to=2033-06-30", key=key).json
    check(not any(t.startswith("warm:") for t in usage.get("tasks", {})), "nor sees it in their usage", usage)
    check(run_sweep(T + 3600 - 199).json == {"started": 0}, "a refreshed entry is not refreshed again at once")

    # --- next-task warming -----------------------------------------------------------
    ext, cv, letter = f"ext_{TAG}", f"cvn_{TAG}", f"letter_{TAG}"
    T2 = T + 10000
    hist = [new_user("test_warm", prefix=f"hist{i}") for i in range(20)]
    for i, (hid, hkey, _) in enumerate(hist):   # half of the users go on to the CV
        check(gen(hkey, ext, f"posting {i}", T2 + i).status == 200, f"history: user {i} extracts")
        if i % 2 == 0:
            check(gen(hkey, cv, f"cv for posting {i}", T2 + 60 + i).status == 200, f"history: user {i} drafts a CV")
    vid, vkey, _ = new_user("test_warm", prefix="next")
    T3 = T2 + 600
    r = gen(vkey, ext, "posting 99", T3, next={"task": cv, "prompt": "cv for posting 99"})
    check(r.status == 200, "a generation naming its likely next request", r)
    warmed = poll(lambda: one(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {vid}") == "2", "warmed")
    check(warmed, "P(CV | extraction) = 10/21 (this call included) reaches warm_next_pct 40: the CV is generated ahead")
    used_v = get("/api/v1/quota/status", key=vkey, headers=at(T3)).json["daily"]["used"]
    r = gen(vkey, cv, "cv for posting 99", T3 + 120)
    check(r.status == 200 and r.json["cached"] is True, "the user's next request is a hit", r)
    check(get("/api/v1/quota/status", key=vkey, headers=at(T3)).json["daily"]["used"] == used_v,
          "... that cost the user nothing")
    r = gen(vkey, ext, "posting 98", T3 + 200, next={"task": letter, "prompt": "letter for posting 98"})
    time.sleep(1.5)   # a worker's timer loop takes hints 4 times a second
    r2 = gen(vkey, letter, "letter for posting 98", T3 + 300)
    check(r.status == 200 and r2.json["cached"] is False,
          "P(letter | extraction) = 0: the letter was not generated ahead", r2)
    # the user's own request while the warming call is in flight waits for it:
    # one upstream call either way, whichever of the two starts first
    before = mock_calls()
    slow_cv = "[[latency:1500]] cv for posting 96"
    gen(vkey, ext, "posting 96", T3 + 400, next={"task": cv, "prompt": slow_cv})
    time.sleep(0.7)
    r = gen(vkey, cv, slow_cv, T3 + 401)
    time.sleep(0.5)
    check(r.status == 200 and mock_calls() - before == 2,
          "the user's request during the warming call: one upstream call for it (plus the extraction's)",
          (r, mock_calls() - before))
    pid, pkey, _ = new_user("pro_monthly", prefix="nowarm")
    gen(pkey, ext, "posting 97", T3, next={"task": cv, "prompt": "cv for posting 97"})
    time.sleep(1.5)
    r = gen(pkey, cv, "cv for posting 97", T3 + 60)
    check(r.json["cached"] is False, "a plan without warming ignores the hint", r)
    for bad, what in (({"next": "cv"}, "a string"), ({"next": {"task": cv}}, "no prompt"),
                      ({"next": {"task": "a b", "prompt": "x"}}, "a bad task"),
                      ({"next": {"task": cv, "prompt": "x", "cache_tier": "system"}}, "the system tier"),
                      ({"next": {"task": cv, "prompt": "x", "price": 1}}, "an unknown member")):
        check(is_problem(gen(vkey, ext, "posting 1", T3, **bad), 400), f"next as {what}: 400")

    # --- the budget holds with every worker sweeping at once ---------------------------
    T4 = T + 20000
    tight = [new_user("test_tight", prefix=f"tight{i}") for i in range(6)]
    # each regeneration takes 1.2 s at the mock, so reservations overlap
    slow = "[[latency:1200]] slow draft"
    res = parallel(6, lambda i: gen(tight[i][1], "tight", f"{slow} {i}", T4, max_tokens=1000))
    check(all(x.status == 200 for x in res), "six entries on a plan with a 3,500-token daily warming budget")
    for i in range(6):
        gen(tight[i][1], "tight", f"{slow} {i}", T4 + 1, max_tokens=1000)
    ids = ",".join(str(u[0]) for u in tight)
    poll(lambda: one(f"SELECT COUNT(*) FROM ai_cache WHERE user_id IN ({ids}) AND access_count >= 1") == "6",
         "hits flushed")
    runs = parallel(4, lambda i: run_sweep(T4 + 3600 - 100))
    started = sum(x.json["started"] for x in runs if x.status == 200)
    check(all(x.status == 200 for x in runs) and started == 2,
          "4 concurrent sweeps: each entry claimed once, and only 2 calls (reserving the 1,500-token default "
          "estimate each) fit the 3,500-token budget", [x.json for x in runs])
    tid = one("SELECT id FROM users WHERE email = 'warming+test_tight@quotacache.invalid'")
    poll(lambda: one(f"SELECT COUNT(*) FROM usage_events WHERE user_id = {tid} AND outcome = 'ok'") == "2", "done")
    spent = sql(f"SELECT outcome, COUNT(*), SUM(prompt_tokens + completion_tokens) FROM usage_events"
                f" WHERE user_id = {tid} GROUP BY outcome ORDER BY outcome")
    check([r[:2] for r in spent] == [["ok", "2"], ["quota", "4"]],
          "the ledger: 2 warming calls, 4 refused by the budget", spent)
    day = sql(f"SELECT used, reserved FROM quota_counters WHERE user_id = {tid} AND window_kind = 'day'")
    check(day and int(day[0][0]) <= 3500 and day[0][1] == "0", "the budget's day: used within it, nothing held", day)
    st = get("/api/v1/cache/stats", key=admin_key).json["warming"]
    check(st.get("test_tight", {}).get("calls") == 2 and st["test_tight"]["refused_by_budget"] == 4
          and st.get("test_warm", {}).get("calls", 0) >= 2 and st["test_warm"]["cost_usd"] > 0,
          "cache stats: the warming spend per plan", st)
    body = get("/metrics").body.decode()
    check('qc_warming_total{kind="refresh",outcome="ok"}' in body
          and 'qc_warming_total{kind="refresh",outcome="budget"}' in body
          and 'qc_warming_total{kind="next",outcome="ok"}' in body, "/metrics: qc_warming_total by kind and outcome")
finally:
    sql_write("UPDATE users SET plan = 'payg' WHERE plan IN ('test_warm', 'test_tight')")
    sql_write("DELETE FROM plans WHERE name IN ('test_warm', 'test_tight')")
done()
