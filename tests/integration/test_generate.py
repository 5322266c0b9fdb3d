"""test_generate.py - POST /api/v1/generate against the mock upstream
(issue 5): miss/hit, faults, retries, single flight, usage ledger, secrets."""
import json
import os
import time
import urllib.request

from qc import (check, done, get, is_problem, new_user, parallel, post, request, sql)

MOCK = os.environ["QC_MOCK_URL"]
SECRET = os.environ["QC_UPSTREAM_SECRET"]
seen_bodies = []


def mock(path, data=None):
    req = urllib.request.Request(MOCK + path, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def calls():
    return mock("/_calls")["total"]


def gen(key, body):
    r = post("/api/v1/generate", body, key=key, timeout=60)
    seen_bodies.append(r.body)
    return r


def quota(key):
    s = get("/api/v1/quota/status", key=key).json
    return (s["daily"]["used"], s["daily"]["reserved"], s["hourly_calls"]["used"])


def cached_rows(uid):
    return int(sql(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {uid}")[0][0])


admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="gadmin")
uid, key, _ = new_user("pro_monthly", prefix="gen")

# --- miss, then hit ------------------------------------------------------------
mock("/_reset", b"")
body = {"task": "cover_letter", "prompt": "Write a cover letter for ACME", "max_tokens": 200}
r1 = gen(key, body)
check(r1.status == 200 and r1.json["cached"] is False and r1.json["content"] == "echo: Write a cover letter for ACME",
      "miss: the upstream's answer", r1)
u = r1.json and r1.json["usage"]
check(u and u["prompt_tokens"] == 8 and u["completion_tokens"] == 9 and u["total_tokens"] == 17,
      "usage from the upstream's usage block", u)
check(r1.json and abs(r1.json["cost_usd"] - (8 * 0.001 + 9 * 0.002) / 1000) < 1e-9,
      "cost from the configured per-1K prices", r1.json and r1.json["cost_usd"])
check(r1.json and r1.json["tier"] == "content" and r1.json["model"] == "mock-model"
      and isinstance(r1.json["latency_ms"], int), "tier, model and latency reported", r1)
r2 = gen(key, body)
check(r2.status == 200 and r2.json["cached"] is True and r2.json["content"] == r1.json["content"]
      and r2.json["cost_usd"] == 0 and r2.json["usage"]["total_tokens"] == 0, "second call: a hit, costs 0", r2)
check(calls() == 1, "the mock saw exactly one call", calls())
check(quota(key) == (17, 0, 1), "quota billed the actual 17 tokens once; the hit reserved nothing", quota(key))
last = mock("/_last")
check(last["had_auth"] is True and last["max_tokens"] == 200 and last["messages"][-1]["role"] == "user",
      "the upstream got the key, max_tokens and the user message", last)

# system prompt from the system tier
r = gen(key, {"task": "cv_drafting", "prompt": "Draft my CV", "system_prompt_key": "cv_drafting_system"})
last = mock("/_last")
check(r.status == 200 and last["messages"][0]["role"] == "system"
      and "CV writer" in last["messages"][0]["content"],
      "system prompt read from the system tier (warmed from conf/prompts at start-up)", last)
before = quota(key)
r = gen(key, {"task": "cv_drafting", "prompt": "x", "system_prompt_key": "no_such_prompt"})
check(is_problem(r, 400) and "system_prompt_key" in r.json["detail"], "unknown system prompt key: 400", r)
check(quota(key) == before, "and nothing was reserved")

# --- freemium: never cached, quota-billed --------------------------------------------------------
fid, fkey, _ = new_user("freemium", prefix="genf")
mock("/_reset", b"")
fb = {"task": "extraction", "prompt": "Extract this job"}
ra, rb = gen(fkey, fb), gen(fkey, fb)
check(ra.status == 200 and rb.status == 200 and not ra.json["cached"] and not rb.json["cached"],
      "freemium: both calls answered, neither from cache", (ra, rb))
check(calls() == 2 and cached_rows(fid) == 0, "freemium: two upstream calls, nothing stored")
check(quota(fkey)[0] == ra.json["usage"]["total_tokens"] * 2, "freemium: both billed", quota(fkey))

# --- faults: status, release, nothing cached -------------------------------------------------------
faults = [
    ("[[fault:500]]", 502, 3, "500 after 2 retries"),
    ("[[fault:503]]", 502, 3, "503 after 2 retries"),
    ("[[fault:malformed]]", 502, 1, "malformed JSON"),
    ("[[fault:nonjson]]", 502, 1, "non-JSON body"),
    ("[[fault:nochoices]]", 502, 1, "JSON without choices"),
    ("[[fault:truncated]]", 502, 1, "truncated body"),
    ("[[fault:hang]]", 504, 1, "hang past the 2 s timeout"),
    ("[[fault:429:5]]", 502, 1, "429 whose Retry-After passes the time budget"),
]
for marker, want, n_calls, name in faults:
    mock("/_reset", b"")
    before = quota(key)
    rows = cached_rows(uid)
    r = gen(key, {"task": "t", "prompt": f"fault {marker}"})
    check(is_problem(r, want), f"{name}: {want} problem+json", r)
    check(calls() == n_calls, f"{name}: {n_calls} upstream call(s)", calls())
    after = quota(key)
    check(after[0] == before[0] and after[1] == before[1] and after[2] == before[2] + 1,
          f"{name}: reservation released (only the call is counted)", (before, after))
    check(cached_rows(uid) == rows, f"{name}: nothing cached")
    check(SECRET not in r.body.decode(errors="replace"), f"{name}: the upstream key is not in the answer")
mock("/_reset", b"")
r = gen(key, {"task": "t", "prompt": "flaky [[fault:flaky:2]]"})
check(r.status == 200 and calls() == 3, "two 500s then success: retried within the bound", (r, calls()))
mock("/_reset", b"")
r = gen(key, {"task": "t", "prompt": "retry-after [[fault:flaky:1]] [[fault:429]]"})
check(r.status in (200, 502), "429 with Retry-After: 1 is honoured or refused cleanly", r)
mock("/_reset", b"")
r = gen(key, {"task": "t", "prompt": "tell me [[fault:nousage]] twelve chars"})
check(r.status == 200 and r.json["usage"]["completion_tokens"] > 0 and r.json["usage"]["prompt_tokens"] > 0,
      "no usage block: tokens estimated from the text", r)

# connection refused is covered without a server by tests/unit/test_upstream.c

# --- single flight ---------------------------------------------------------------------------------
sid, skey, _ = new_user("pro_annual", prefix="flight")
mock("/_reset", b"")
fl = {"task": "cv_drafting", "prompt": "single flight please [[latency:700]]", "cache_key": "flight-1"}
res = parallel(50, lambda i: gen(skey, fl))
ok = [r for r in res if getattr(r, "status", 0) == 200]
check(len(ok) == 50, "50 concurrent identical misses all answered", [getattr(r, "status", r) for r in res][:10])
check(calls() == 1, "the mock saw exactly one call for 50 identical misses", calls())
check(len({r.json["content"] for r in ok}) == 1, "all 50 got the same content")
check(sum(1 for r in ok if not r.json["cached"]) == 1, "one leader, 49 served from the cache")
q = quota(skey)
# the waiters that arrived while the leader ran reserved (each passed its own
# quota check) and released; later ones were plain hits and reserved nothing
check(q[0] == max(r.json["usage"]["total_tokens"] for r in ok) and q[1] == 0 and 1 <= q[2] <= 50,
      "only the leader is billed; waiters' reservations were released", q)
check(int(sql("SELECT COUNT(*) FROM generate_flights")[0][0]) == 0, "no flight row left behind")

# quota refusal on generate
gid, gkey, _ = new_user("freemium", prefix="genq")
sql(f"INSERT INTO quota_overrides (user_id, tokens_per_day, reason) VALUES ({gid}, 100, 'test')")
r = gen(gkey, {"task": "cv_drafting", "prompt": "too big"})
check(is_problem(r, 429) and r.header("retry-after") and r.json["window"] == "daily", "over quota: 429", r)

# --- bad input ---------------------------------------------------------------------------------------
bad = [({}, "task"), ({"task": "t"}, "prompt"), ({"task": "t", "prompt": ""}, "prompt"),
       ({"task": "t", "prompt": 5}, "prompt"), ({"task": "a b", "prompt": "x"}, "task"),
       ({"task": "t", "prompt": "x", "cache_tier": "system"}, "cache_tier"),
       ({"task": "t", "prompt": "x", "max_tokens": 0}, "max_tokens"),
       ({"task": "t", "prompt": "x", "model": "gpt'; DROP"}, "model"),
       ({"task": "t", "prompt": "x", "cache_key": "k" * 256}, "cache"),
       ({"task": "t", "prompt": "x", "extra": 1}, "extra")]
for b, field in bad:
    r = gen(key, b)
    check(is_problem(r, 400) and field in r.json["detail"], f"generate {b}: 400 naming {field}", r)
r = request("POST", "/api/v1/generate", raw=b"{not json", key=key)
check(is_problem(r, 400), "generate with malformed JSON: 400", r)
r = request("POST", "/api/v1/generate", raw=b'{"task":"t","prompt":"' + b"p" * (5 << 20) + b'"}', key=key)
check(is_problem(r, 413), "generate with a 5 MiB body: 413", r)

# --- usage ledger agrees ------------------------------------------------------------------------------
time.sleep(1.6)   # workers write usage events at most a second later
rows = {r[0]: r[1:] for r in sql(
    f"SELECT outcome, COUNT(*), SUM(prompt_tokens + completion_tokens), SUM(saved_tokens) "
    f"FROM usage_events WHERE user_id = {sid} GROUP BY outcome")}
billed = [r.json["usage"]["total_tokens"] for r in ok if not r.json["cached"]]
check(set(rows) == {"ok", "cached"} and rows["ok"] == ["1", str(billed[0]), "0"]
      and rows["cached"] == ["49", "0", str(49 * billed[0])],
      "usage_events: 1 billed call, 49 cached ones keeping the tokens they saved apart", rows)
us = get("/api/v1/usage", key=skey)
t = us.json["tasks"]["cv_drafting"]
check(us.status == 200 and t["calls"] == 50 and t["cached"] == 49 and t["failures"] == 0,
      "GET /api/v1/usage: per task calls and cache hits", us)
ev = sql(f"SELECT COUNT(*), SUM(outcome = 'upstream_error'), SUM(outcome = 'timeout') FROM usage_events WHERE user_id = {uid}")
check(int(ev[0][1]) >= 7 and int(ev[0][2]) >= 1, "failures are in the ledger too", ev)
r = get(f"/api/v1/usage?user_id={uid}", key=key)
check(is_problem(r, 403), "a user cannot read another's usage", r)
r = get(f"/api/v1/usage?user_id={sid}", key=admin_key)
check(r.status == 200 and r.json["tasks"]["cv_drafting"]["calls"] == 50, "an admin reads any user's usage", r)
r = get("/api/v1/usage?user_id=all&from=2000-01-01", key=admin_key)
check(r.status == 200 and "pro_annual" in r.json["plans"] and r.json["user_id"] == "all", "admin totals per plan", r)
today = time.strftime("%Y-%m-%d", time.gmtime())
r = get(f"/api/v1/usage?user_id={sid}&from={today}&to={today}", key=admin_key)
check(r.status == 200 and r.json["tasks"]["cv_drafting"]["calls"] == 50, "from=to=today covers the whole day", r)
for q in ("from=yesterday", "from=2026-01-02&to=2026-01-01", "user_id=abc"):
    check(r.status == 200 and is_problem(get("/api/v1/usage?" + q, key=admin_key), 400), f"usage {q}: 400")

# --- the upstream key never leaks ---------------------------------------------------------------------------
check(all(SECRET.encode() not in b for b in seen_bodies), "the upstream key is in no generate answer")
done()
