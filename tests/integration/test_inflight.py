"""test_inflight.py - many generations in flight with the default pool of 4
worker processes (issue 10, SPEC §9): an upstream call in flight costs no
thread, the fast routes keep answering meanwhile, single flight without
tight polling, a dead leader's flight taken over, backpressure, a client
that goes away, SIGTERM.  Behaviour only: no wall-clock thresholds."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from qc import (HOST, PORT, SERVER, check, done, get, is_problem, metric, new_user, parallel, post, sql,
                sql_write)

MOCK = os.environ["QC_MOCK_URL"]
# mod_fcgid hands one request at a time to each process (its design): the
# concurrency there is the process count, so the bursts are small
FCGID = SERVER == "apache"
RUN = f"{os.getpid()}-{int(time.time())}"


def mock(path, data=None):
    req = urllib.request.Request(MOCK + path, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def gen(key, prompt, task="inflight", timeout=60, **extra):
    body = {"task": task, "prompt": prompt}
    body.update(extra)
    return post("/api/v1/generate", body, key=key, timeout=timeout)


def counter(name):
    """Sum of a counter family in /metrics (all label sets)."""
    time.sleep(1.6)   # workers add their counts within a second
    r = get("/metrics", key=admin_key)
    total = 0.0
    for line in r.body.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.split(" ")[-1])
    return total


admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="ifadmin")
uid, key, _ = new_user("enterprise", prefix="inflight")

# --- a burst of distinct 1 s misses -----------------------------------------------
N = 8 if FCGID else 256
mock("/_reset", b"")
hit_key = f"inflight-hit-{RUN}"
r = gen(key, f"warm the hit {RUN}", cache_key=hit_key)
check(r.status == 200, "a first call stores the entry the burst's hit reads", r)
side = {}


def side_requests():
    # while the burst is in flight: health, a cache hit, the quota status
    deadline = time.time() + 5
    while mock("/_calls").get("in_flight", 0) < min(N, 100) * 0.5 and time.time() < deadline:
        time.sleep(0.02)
    side["health"] = get("/api/v1/health")
    side["hit"] = gen(key, f"warm the hit {RUN}", cache_key=hit_key)
    side["status"] = get("/api/v1/quota/status", key=key)
    time.sleep(0.4)   # each worker writes its gauges every 250 ms
    side["metrics"] = get("/metrics", key=admin_key)
    side["in_flight_after"] = mock("/_calls").get("in_flight", 0)


t = threading.Thread(target=side_requests)
t.start()
res = parallel(N, lambda i: gen(key, f"[[latency:1000]] burst {RUN} #{i}", timeout=60))
t.join(30)
ok = [x for x in res if not isinstance(x, Exception) and x.status == 200]
check(len(ok) == N, f"{N} concurrent distinct 1 s misses all answered 200",
      [x for x in res if isinstance(x, Exception) or x.status != 200][:3])
c = mock("/_calls")
check(c.get("completions", 0) >= N + 1, "every miss made its upstream call", c)
want_peak = N if FCGID else 200
check(c.get("peak", 0) >= want_peak, f"the mock held at least {want_peak} calls at once (peak {c.get('peak')})", c)
if not FCGID:
    check(side.get("health") is not None and side["health"].status == 200 and side.get("in_flight_after", 0) > 0,
          "/health answered 200 while the burst's calls were still in flight", side)
    h = side.get("hit")
    check(h is not None and h.status == 200 and h.json["cached"] is True and side.get("in_flight_after", 0) > 0,
          "a cache hit answered while the burst's calls were still in flight", h)
    check(side.get("status") is not None and side["status"].status == 200,
          "quota status answered during the burst", side.get("status"))
    gauges = {}
    for line in (side["metrics"].body.decode() if side.get("metrics") else "").splitlines():
        if line.startswith(("qc_inflight_calls ", "qc_workers ", "qc_busy_request_threads ")):
            gauges[line.split(" ")[0]] = float(line.split(" ")[1])
    check(gauges.get("qc_inflight_calls", 0) >= 50 and gauges.get("qc_workers", 0) >= 4,
          "/metrics during the burst: qc_inflight_calls summed over the workers", gauges)

# --- answers that come back together are billed together (sql/019) ----------------
def together():
    time.sleep(1.6)   # workers add their counts within a second
    return metric("qc_billed_together_total", 'outcome="together"')


def batches(kind):
    """qc_batches_total{kind}: shared transactions that landed (read after together() or
    reserved_together(), which wait for the workers' counts)."""
    return metric("qc_batches_total", f'kind="{kind}"')


def per_batch(misses, nbatch):
    """misses / batches when each batch held 2 to 16 (the shared paths take n >= 2)."""
    return nbatch >= 1 and 2 * nbatch <= misses <= 16 * nbatch


def books_balance(user):
    """The user's rows, to check they agree: what quotacache billed, counted and stored."""
    one = lambda q: sql(q)[0]
    return {
        "ledger": one(f"SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_events"
                      f" WHERE user_id = {user} AND outcome = 'ok'"),
        "committed": one(f"SELECT COUNT(*), COALESCE(SUM(actual), 0) FROM quota_reservations"
                         f" WHERE user_id = {user} AND state = 'committed'"),
        "active": one(f"SELECT COUNT(*) FROM quota_reservations WHERE user_id = {user} AND state = 'active'")[0],
        "day": one(f"SELECT used, reserved FROM quota_counters WHERE user_id = {user} AND window_kind = 'day'"
                   " ORDER BY window_start DESC LIMIT 1"),
        "month": one(f"SELECT used, reserved FROM quota_counters WHERE user_id = {user} AND window_kind = 'month'"
                     " ORDER BY window_start DESC LIMIT 1"),
        "stored": one(f"SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM ai_cache WHERE user_id = {user}"),
        "usage": (sql(f"SELECT entries, bytes FROM cache_usage WHERE user_id = {user}") or [None])[0],
    }


def balanced(b, answers):
    return (int(b["ledger"][0]) == answers and list(b["ledger"]) == list(b["committed"])
            and b["active"] == "0" and b["day"][0] == b["ledger"][1] == b["month"][0]
            and b["day"][1] == "0" and b["month"][1] == "0"
            and b["usage"] is not None and list(b["usage"]) == list(b["stored"]))


if not FCGID:
    b = books_balance(uid)
    check(balanced(b, N + 1), f"after the burst: {N + 1} ledger rows, as many committed reservations with the"
          " same tokens, the day and month counters equal to them with nothing reserved, and the cache usage"
          " row equal to the entries stored", b)
    # a fresh user (its first store has no usage row yet: the database declines
    # that batch and bills one by one), answers with bytes JSON and SQL could bend
    t_id, t_key, _ = new_user("pro_annual", prefix="together")
    tricky = ["quote \" and backslash \\ and tab \t", "emoji \U0001F600 and CJK \u4e2d\u6587",
              "new\nlines\r\n", "' OR 1=1 -- ", "%s %n {}", "\u00e9\u00e8 \u2028 \u2029", "<b>x</b> &amp;",
              "plain"]
    t0 = together()
    bb0 = batches("bill")
    first = parallel(2 * len(tricky), lambda i: gen(t_key, f"[[latency:600]] {tricky[i % len(tricky)]} #{i} {RUN}",
                                                    task="together", timeout=60))
    got = [x for x in first if not isinstance(x, Exception) and x.status == 200]
    check(len(got) == 2 * len(tricky), "16 concurrent misses of a fresh user all answered 200",
          [x for x in first if x not in got][:2])
    more = parallel(3 * len(tricky), lambda i: gen(t_key, f"[[latency:600]] second {tricky[i % len(tricky)]}"
                                                   f" #{i} {RUN}", task="together", timeout=60))
    check(all(not isinstance(x, Exception) and x.status == 200 for x in more), "... and 24 more",
          [x for x in more if isinstance(x, Exception) or x.status != 200][:2])
    check(together() - t0 >= 2, "answers that came back together were billed in one transaction"
          " (qc_billed_together_total{outcome=\"together\"} grew)", together() - t0)
    check(per_batch(together() - t0, batches("bill") - bb0),
          "qc_batches_total{kind=\"bill\"} counts the shared bills: 2 to 16 answers each",
          (together() - t0, batches("bill") - bb0))
    again = parallel(2 * len(tricky), lambda i: gen(t_key, f"[[latency:600]] {tricky[i % len(tricky)]} #{i} {RUN}",
                                                    task="together", timeout=60))
    check(all(not isinstance(x, Exception) and x.status == 200 and x.json["cached"] is True
              and x.json["content"] == first[i].json["content"] for i, x in enumerate(again)),
          "each answer comes back from the cache byte for byte (quotes, emoji, CJK, newlines, U+2028)",
          [(x.json if not isinstance(x, Exception) else x, first[i].json["content"])
           for i, x in enumerate(again) if isinstance(x, Exception) or x.json.get("content") != first[i].json["content"]][:2])
    b = books_balance(t_id)
    check(balanced(b, 5 * len(tricky)), "the fresh user's books balance too (40 answers billed, 16 hits not)", b)


# --- misses of one user waiting together are reserved together (sql/020) ----------
def reserved_together():
    time.sleep(1.6)   # workers add their counts within a second
    return metric("qc_reserved_together_total", 'outcome="together"')


def hour_calls(user):
    return int(sql(f"SELECT COALESCE(SUM(calls), 0) FROM quota_counters WHERE user_id = {user}"
                   " AND window_kind = 'hour'")[0][0])


if not FCGID:
    r_id, r_key, _ = new_user("pro_annual", prefix="rtogether")
    r0, answers, rounds = reserved_together(), 0, 0
    rb0 = batches("reserve")
    for rnd in range(6):   # until misses met in a completion queue (bounded)
        rounds += 1
        res = parallel(24, lambda i: gen(r_key, f"reserve together {rnd} #{i} {RUN}", task="rtogether"))
        good = [x for x in res if not isinstance(x, Exception) and x.status == 200 and x.json["cached"] is False]
        answers += len(good)
        if len(good) != 24 or reserved_together() - r0 >= 2:
            break
    check(answers == 24 * rounds, f"{rounds} round(s) of 24 concurrent misses of one user: all answered 200",
          (answers, rounds))
    check(reserved_together() - r0 >= 2, "misses that waited together were reserved in one transaction"
          " (qc_reserved_together_total{outcome=\"together\"} grew)", reserved_together() - r0)
    check(per_batch(reserved_together() - r0, batches("reserve") - rb0),
          "qc_batches_total{kind=\"reserve\"} counts the shared reserves: 2 to 16 misses each",
          (reserved_together() - r0, batches("reserve") - rb0))
    b = books_balance(r_id)
    check(balanced(b, answers) and hour_calls(r_id) == answers,
          f"... and the books balance: {answers} ledger rows, as many committed reservations, the counters"
          " equal to them with nothing reserved, one call counted per miss", (b, hour_calls(r_id)))

    # limits stay exact when misses are reserved together: a batch that would
    # pass a limit is declined and each miss is decided on its own
    sql_write("INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
              " max_inflight, session_ttl_seconds, content_ttl_seconds, sort_order) VALUES"
              " ('test_day6k', 'Test 6.2k a day', 6200, NULL, NULL, NULL, 1800, 3600, 98),"
              " ('test_hour5', 'Test 5 calls an hour', NULL, NULL, 5, NULL, 1800, 3600, 97)")
    for plan, what in (("test_day6k", "tokens per day (6,200: four estimates of 1,500 after the first call's few tokens)"),
                       ("test_hour5", "calls per hour (5: four after the first call)")):
        l_id, l_key, _ = new_user(plan, prefix="rlimit")
        first = gen(l_key, f"first of {plan} {RUN}", task="rlimit")   # the user's counter rows exist now
        res = parallel(32, lambda i: gen(l_key, f"[[latency:1500]] {plan} #{i} {RUN}", task="rlimit"))
        st = sorted(x.status if not isinstance(x, Exception) else 0 for x in res)
        check(first.status == 200 and st == [200] * 4 + [429] * 28,
              f"32 concurrent misses against {what}: exactly 4 pass, 28 get 429", (first, st))
        b = books_balance(l_id)
        check(balanced(b, 5) and hour_calls(l_id) == 5, f"... and {plan}'s books balance (5 answers)",
              (b, hour_calls(l_id)))
        sql_write(f"UPDATE users SET plan = 'pro_monthly' WHERE id = {l_id}")
    sql_write("DELETE FROM plans WHERE name IN ('test_day6k', 'test_hour5')")

# --- single flight: same-process waiters woken, others at most 4 checks/s ----------
mock("/_reset", b"")
checks0 = counter("qc_flight_checks_total")
W = 6 if FCGID else 50
calls0 = hour_calls(uid)
prompt = f"[[latency:1500]] one flight {RUN}"
t0 = time.time()
res = parallel(W, lambda i: gen(key, prompt, timeout=60))
elapsed = time.time() - t0
ok = [x for x in res if not isinstance(x, Exception) and x.status == 200]
check(len(ok) == W and len({x.json["content"] for x in ok}) == 1,
      f"{W} identical misses: all 200 with the same content", [x for x in res if x not in ok][:2])
check(mock("/_calls")["completions"] == 1, "... and exactly one upstream call", mock("/_calls"))
checks = counter("qc_flight_checks_total") - checks0
bound = (W - 1) * (elapsed * 4 + 2)
check(checks <= bound, f"waiters checked the flight row {checks:.0f} times in {elapsed:.1f} s "
      f"(bound {bound:.0f}: at most 4 a second each)", checks)
left = sql("SELECT COUNT(*) FROM generate_flights")[0][0]
check(left == "0", "no flight row is left behind", left)
# waiters reserve nothing (sql/018): one call counted, no reservation left
calls = hour_calls(uid) - calls0
check(calls == 1, f"{W} identical misses count one call against the hourly rate (the leader's)", calls)
active = sql(f"SELECT COUNT(*) FROM quota_reservations WHERE user_id = {uid} AND state = 'active'")[0][0]
check(active == "0", "... and leave no reservation active", active)

# --- backpressure: the plan's cap of generations in flight (429) ---------------

# a plan of its own (removed below, so the other suites see the five plans)
sql_write("INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
          " max_inflight, session_ttl_seconds, content_ttl_seconds, sort_order)"
          " VALUES ('test_cap3', 'Test cap 3', NULL, NULL, NULL, 3, 1800, 3600, 99)")
cid, ckey, _ = new_user("test_cap3", prefix="cap")
K = 3 if FCGID else 8
res = parallel(K, lambda i: gen(ckey, f"[[latency:1000]] capped {RUN} {i}"))
st = [x.status if not isinstance(x, Exception) else str(x) for x in res]
busy = [x for x in res if not isinstance(x, Exception) and x.status == 429]
if FCGID:
    check(st.count(200) == K, "mod_fcgid: calls up to the plan's cap pass", st)
else:
    check(st.count(200) == 3 and len(busy) == K - 3,
          f"{K} concurrent calls of a plan capped at 3 in flight: 3 pass, {K - 3} get 429", st)
    b = busy[0] if busy else None
    check(b is not None and is_problem(b, 429) and b.header("retry-after") is not None
          and b.json["type"].endswith("/too-many-in-flight"), "the 429 is problem+json with Retry-After", b)
    r = gen(ckey, f"after the cap {RUN}")
    check(r.status == 200, "once they finished, the user calls again", r)
    # waiters of one flight are not calls: the cap does not refuse them
    res = parallel(K, lambda i: gen(ckey, f"[[latency:1000]] capped, one flight {RUN}"))
    st = [x.status if not isinstance(x, Exception) else str(x) for x in res]
    check(st.count(200) == K, f"{K} identical misses of a plan capped at 3 in flight: all 200 (one call, "
          f"{K - 1} waiters)", st)
sql_write(f"UPDATE users SET plan = 'pro_monthly' WHERE id = {cid}; DELETE FROM plans WHERE name = 'test_cap3'")

# --- a client that goes away: the call completes, is stored and billed -------------
mock("/_reset", b"")
gone_prompt = f"[[latency:800]] gone client {RUN}"
body = json.dumps({"task": "gone_client", "prompt": gone_prompt}).encode()
s = socket.create_connection((HOST, PORT), timeout=10)
s.sendall(b"POST /api/v1/generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
          b"\r\nConnection: close\r\n\r\n" + body)
time.sleep(0.3)
s.close()
time.sleep(1.5)
rows = sql("SELECT outcome, prompt_tokens + completion_tokens FROM usage_events"
           f" WHERE user_id = {uid} AND task = 'gone_client'")
check(len(rows) == 1 and rows[0][0] == "ok" and int(rows[0][1]) > 0,
      "the gone client's generation is in the ledger, billed", rows)
r = gen(key, gone_prompt, task="gone_client")
check(r.status == 200 and r.json["cached"] is True and mock("/_calls")["completions"] == 1,
      "... and its answer was stored: the retry is a hit, no second upstream call", r)

# --- a dead leader: kill -9 the worker leading a flight -------------------------
if SERVER.startswith("lighttpd"):
    mock("/_reset", b"")
    dead_prompt = f"[[latency:1500]] dead leader {RUN}"
    results = {}

    def one(i):
        results[i] = gen(key, dead_prompt, timeout=60)

    ts = []
    for i in range(12):
        ts.append(threading.Thread(target=one, args=(i,)))
        ts[-1].start()
        time.sleep(0.01)
    owner = None
    for _ in range(100):
        rows = sql("SELECT owner FROM generate_flights")
        if rows:
            owner = rows[0][0]
            break
        time.sleep(0.02)
    pid = int(owner[:8], 16) if owner else 0
    killed = False
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
            killed = True
        except OSError:
            pass
    for t in ts:
        t.join(60)
    check(killed, "the flight row names its leader's process, which was killed with -9", owner)
    oks = [r for r in results.values() if r.status == 200]
    check(len(oks) >= 1 and mock("/_calls")["total"] == 2,
          f"a waiter in another process took the lapsed flight over: {len(oks)} answered 200, "
          "2 upstream calls in all", [r.status for r in results.values()])
    left = sql("SELECT COUNT(*) FROM generate_flights")[0][0]
    check(left == "0", "no flight row is left after the takeover", left)
    time.sleep(1)   # lighttpd starts a new worker for the dead one on demand

# --- SIGTERM: stop accepting, finish the calls in flight -------------------------
if SERVER.startswith("lighttpd"):
    mock("/_reset", b"")
    pids = subprocess.run(["pgrep", "-f", "quotacache-fcgi"], capture_output=True, text=True).stdout.split()
    lpid = open(os.path.join(os.environ["QC_VAR"], "lighttpd", "lighttpd.pid")).read().strip()
    pids = [p for p in pids if open(f"/proc/{p}/stat").read().split()[3] == lpid]
    sid, skey, _ = new_user("enterprise", prefix="sigterm")
    results = {}

    def slow(i):
        results[i] = gen(skey, f"[[latency:1200]] sigterm {RUN} {i}", timeout=60)

    ts = [threading.Thread(target=slow, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for _ in range(100):
        if mock("/_calls").get("in_flight", 0) >= 16:
            break
        time.sleep(0.02)
    for p in pids:
        os.kill(int(p), signal.SIGTERM)
    for t in ts:
        t.join(60)
    st = [r.status for r in results.values()]
    check(st.count(200) == 16, "SIGTERM to every worker: the 16 calls in flight still finish with 200", st)
    for _ in range(50):
        alive = [p for p in pids if os.path.exists(f"/proc/{p}") and
                 open(f"/proc/{p}/stat").read().split()[2] != "Z"]
        if not alive:
            break
        time.sleep(0.1)
    check(not alive, "the workers exit after their calls finished", alive)
    active = sql(f"SELECT COUNT(*) FROM quota_reservations WHERE user_id = {sid} AND state = 'active'")[0][0]
    left = sql("SELECT COUNT(*) FROM generate_flights")[0][0]
    check(active == "0" and left == "0", "no reservation and no flight row leaked", (active, left))
    for _ in range(50):
        if get("/api/v1/health").status == 200:
            break
        time.sleep(0.1)
    check(get("/api/v1/health").status == 200, "lighttpd starts new workers and the API answers again")

done()
