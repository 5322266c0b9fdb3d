"""test_alerts.py - SPEC §14 alerts.

1. The Prometheus rules in conf/quotacache-alerts.yml cannot drift from the
   code: every metric they name is a family of the live /metrics, and what
   they rate() is a counter; qc_quota_users counts users per plan and level.
2. The level-crossing webhook (alert_webhook_url, written by run.sh to a
   port this test listens on): each crossing posted once, however many
   workers saw it; a receiver that fails gets it on retry; no crossing, no
   post; a receiver that hangs or is down slows and blocks no request.
"""
import hashlib
import hmac
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from qc import check, ctl, done, get, new_user, parallel, post, sql

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = os.path.join(HERE, "..", "..", "conf", "quotacache-alerts.yml")
ALERT_PORT = int(os.environ.get("QC_ALERT_PORT", "0"))
SECRET = os.environ.get("QC_ALERT_SECRET", "")


def scrape():
    """(families {name: type}, samples {series: value}) of GET /metrics."""
    r = get("/metrics")
    fams, samples = {}, {}
    for line in r.body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            fams[name] = typ
        elif line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return r.status, fams, samples


def rule_exprs():
    text = open(RULES).read()
    try:
        import yaml
        doc = yaml.safe_load(text)
        return [(r.get("alert") or r.get("record"), r["expr"]) for g in doc["groups"] for r in g["rules"]]
    except ImportError:   # no PyYAML: every qc_ name of the file counts
        return [("file", text)]


# --- 1. the rules against the live exposition ----------------------------------
status, fams, samples = scrape()
check(status == 200, "GET /metrics answers 200")
used, rated = set(), set()
for alert, expr in rule_exprs():
    for name in re.findall(r"\bqc_[a-z0-9_]+", expr):
        used.add(re.sub(r"_(bucket|sum|count)$", "", name) if name not in fams else name)
    rated.update(re.findall(r"(?:rate|increase|irate)\(\s*(qc_[a-z0-9_]+)", expr))
check(len(used) >= 6, "the rules name the metrics they alert on", sorted(used))
missing = sorted(n for n in used if n not in fams)
check(not missing, "every metric the alerting rules use is in the live /metrics", missing)
not_counters = sorted(n for n in rated if fams.get(n) != "counter")
check(not not_counters, "every metric the rules rate() or increase() is a counter", not_counters)
check(fams.get("qc_quota_users") == "gauge", "qc_quota_users is a gauge")
users_series = [k for k in samples if k.startswith("qc_quota_users{")]
plans = {re.search(r'plan="([^"]*)"', k).group(1) for k in users_series}
check(all(re.fullmatch(r'qc_quota_users\{plan="[^"]*",level="(warning|critical|exceeded)"\}', k) for k in users_series)
      and len(users_series) == 3 * len(plans) and {"freemium", "payg", "enterprise"} <= plans,
      "qc_quota_users: one series per plan and level (warning, critical, exceeded), no user label",
      users_series[:6])


# --- 2. the webhook ----------------------------------------------------------------
class Receiver:
    """A loopback webhook receiver.  mode: 'ok' (200), 'hang' (answers after
    the worker's timeout), and fail[user_id] = n answers 503 to that user's
    first n posts."""

    def __init__(self, port):
        self.port, self.posts, self.mode, self.fail = port, [], "ok", {}
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        rcv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                with rcv.lock:
                    mode = rcv.mode
                    uid = doc.get("user_id") if isinstance(doc, dict) else None
                    code = 200
                    if mode == "hang":
                        code = 0
                    elif rcv.fail.get(uid, 0) > 0:
                        rcv.fail[uid] -= 1
                        code = 503
                    rcv.posts.append({"doc": doc, "code": code, "path": self.path,
                                      "ctype": self.headers.get("Content-Type"),
                                      "delivery": self.headers.get("X-Quotacache-Delivery"),
                                      "signature": self.headers.get("X-Quotacache-Signature"),
                                      "raw": body, "received": time.time()})
                if code == 0:
                    time.sleep(2.5)   # past alert_webhook_timeout_ms (1 s)
                    code = 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def of(self, uid, delivered_only=True):
        with self.lock:
            return [p for p in self.posts if isinstance(p["doc"], dict) and p["doc"].get("user_id") == uid
                    and (p["code"] == 200 or not delivered_only)]


def wait_for(fn, secs=15.0):
    end = time.time() + secs
    while time.time() < end:
        if fn():
            return True
        time.sleep(0.1)
    return fn()


def reserve(key, tokens):
    """A reservation of exactly `tokens` (>= 1500, the default task's estimate)."""
    return post("/api/v1/quota/reserve", {"task_type": "alerts_probe", "max_tokens": tokens}, key=key)


if not ALERT_PORT:
    check(False, "run.sh exports QC_ALERT_PORT (the webhook receiver's port)")
    done()

rcv = Receiver(ALERT_PORT)
rcv.start()
try:
    # a user at 61 %, then at 76 % (warning) seen by many requests over all
    # workers at once, then 91 % (critical), then 100 % through a commit that
    # used more than it reserved (exceeded): one post for each
    a_id, a_key, _ = new_user("freemium", prefix="alerta")
    b_id, b_key, _ = new_user("payg", prefix="alertb")
    r1 = reserve(a_key, 6100)
    for _ in range(3):
        reserve(b_key, 1500)   # 4,500 of 50,000: ok
    time.sleep(2.0)
    check(r1.status == 201 and not rcv.of(a_id, False) and not rcv.of(b_id, False),
          "no crossing, no post (61 % and 9 % of the daily limit)", (r1, len(rcv.posts)))

    r2 = reserve(a_key, 1500)
    res = parallel(16, lambda i: get("/api/v1/quota/status", key=a_key))
    check(r2.status == 201 and all(getattr(x, "status", 0) == 200 for x in res)
          and all(x.json["level"] == "warning" for x in res), "76 %: the user is at warning", r2)
    check(wait_for(lambda: rcv.of(a_id)), "the warning crossing is posted to the receiver")
    time.sleep(1.5)   # anything posted twice would have arrived by now
    got = rcv.of(a_id, False)
    check(len(got) == 1, "posted exactly once although 17 requests over every worker saw it",
          [p["doc"] for p in got])
    d = got[0]["doc"] if got else {}
    day_start = int(time.time()) // 86400 * 86400
    check(d.get("event") == "quota.level_crossing" and d.get("user_id") == a_id and d.get("plan") == "freemium"
          and d.get("window") == "daily" and d.get("level") == "warning" and d.get("used") == 7600
          and d.get("limit") == 10000 and d.get("percent") == 76 and d.get("attempt") == 1
          and d.get("time", "").endswith("Z") and d.get("id") == f"{a_id}:daily:{day_start}:warning",
          "the body: event, id, user_id, plan, window, level, used, limit, percent, time, attempt", d)
    check(got and got[0]["ctype"] == "application/json" and got[0]["delivery"] == d.get("id")
          and got[0]["path"] == "/hook", "POST to the configured path, JSON, X-Quotacache-Delivery = id",
          got[0] if got else None)

    # signed: t=T,v1=HMAC-SHA256(secret, "T." + body), T the time of the post
    sig = got[0]["signature"] if got else None
    parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p) if sig else {}
    want = (hmac.new(SECRET.encode(), parts.get("t", "").encode() + b"." + got[0]["raw"], hashlib.sha256).hexdigest()
            if got and SECRET else None)
    check(bool(want) and parts.get("v1") == want and abs(int(parts.get("t", 0)) - got[0]["received"]) < 5,
          "X-Quotacache-Signature verifies: HMAC-SHA256 of \"T.\" + the exact body with the configured secret, "
          "T the time of the post", (sig, want))

    # housekeeping without the event scheduler: quotacachectl quota prune-alerts
    # drops delivered or given-up crossings of windows that began > 32 days ago
    old = int(time.time()) - 40 * 86400
    for lvl, state, start in ((1, "sent", old), (2, "failed", old), (3, "pending", old),
                              (1, "sent", old + 20 * 86400)):
        sql(f"INSERT INTO alert_crossings (user_id, window_kind, window_start, level, plan, used, lim, crossed_at,"
            f" state, next_at_ms) VALUES ({b_id}, 'month', {start}, {lvl}, 'payg', 1, 2, {start}, '{state}',"
            f" 9000000000000000)")   # never due: no sender posts the pending one
    _, out, _ = ctl("quota", "prune-alerts")
    left = sorted((int(r[0]), r[1]) for r in sql(f"SELECT level, state FROM alert_crossings WHERE user_id = {b_id}"
                                                 f" AND window_kind = 'month'"))
    check(left == [(1, "sent"), (3, "pending")] and "pruned 2 " in out,
          "quotacachectl quota prune-alerts drops sent and failed crossings of windows over 32 days old, "
          "keeps pending ones and recent ones", (left, out))
    sql(f"DELETE FROM alert_crossings WHERE user_id = {b_id} AND window_kind = 'month'")

    _, _, s_before = scrape()
    r3 = reserve(a_key, 1500)
    check(r3.status == 201, "91 %: reserved", r3)
    check(wait_for(lambda: len(rcv.of(a_id)) >= 2), "the critical crossing is posted")
    c = post("/api/v1/quota/commit", {"reservation_id": r3.json["reservation_id"], "actual_tokens": 2400},
             key=a_key)
    st = get("/api/v1/quota/status", key=a_key)
    check(c.status == 200 and st.json["level"] == "exceeded",
          "a commit over its estimate takes the user to 100 %: exceeded", (c, st))
    check(wait_for(lambda: len(rcv.of(a_id)) >= 3), "the exceeded crossing is posted (seen at the next status read)")
    for _ in range(3):
        get("/api/v1/quota/status", key=a_key)
    refused = reserve(a_key, 1500)
    time.sleep(1.5)
    levels = [p["doc"]["level"] for p in rcv.of(a_id, False)]
    check(refused.status == 429 and levels == ["warning", "critical", "exceeded"],
          "warning, critical, exceeded: each crossing once, nothing for reads and refusals after it", levels)
    x = [p["doc"] for p in rcv.of(a_id)][-1]
    check(x["used"] == 10000 and x["percent"] == 100, "exceeded: used 10,000 of 10,000", x)
    time.sleep(1.2)   # the workers' counters reach the database a second later
    _, _, s_after = scrape()
    k_ex, k_cr = 'qc_quota_users{plan="freemium",level="exceeded"}', 'qc_quota_users{plan="freemium",level="critical"}'
    check(s_after.get(k_ex, -1) - s_before.get(k_ex, -1) == 1 and s_after.get(k_ex, 0) >= 1,
          "qc_quota_users{freemium, exceeded} counts the user at exceeded", (s_before.get(k_ex), s_after.get(k_ex)))
    check(not rcv.of(b_id, False), "still no post for the user who crossed nothing")

    # a receiver that fails the first two attempts gets the crossing on the third
    c_id, c_key, _ = new_user("freemium", prefix="alertc")
    with rcv.lock:
        rcv.fail[c_id] = 2
    r = reserve(c_key, 8000)
    check(r.status == 201, "80 %: reserved", r)
    check(wait_for(lambda: rcv.of(c_id)), "503, 503, then delivered on a retry")
    time.sleep(1.5)
    got = rcv.of(c_id, False)
    check([p["code"] for p in got] == [503, 503, 200] and [p["doc"]["attempt"] for p in got] == [1, 2, 3]
          and len({p["doc"]["id"] for p in got}) == 1,
          "three attempts of one crossing, then no more", [(p["code"], p["doc"]["attempt"]) for p in got])

    # a receiver that hangs: requests go on, the crossing arrives once it answers
    d_id, d_key, _ = new_user("freemium", prefix="alertd")
    with rcv.lock:
        rcv.mode = "hang"
    r = reserve(d_key, 8000)
    res = [get("/api/v1/quota/status", key=d_key) for _ in range(5)]
    res += parallel(8, lambda i: reserve(b_key, 1500))
    check(r.status == 201 and all(getattr(x, "status", 0) in (200, 201) for x in res),
          "while the receiver hangs, every request is answered", [getattr(x, "status", x) for x in res])
    check(wait_for(lambda: rcv.of(d_id, False), 5), "the hanging receiver was being posted to")
    with rcv.lock:
        rcv.mode = "ok"
    check(wait_for(lambda: rcv.of(d_id), 20), "the crossing is delivered once the receiver answers")

    # a receiver that is down: requests go on, the crossing arrives when it is back
    rcv.stop()
    e_id, e_key, _ = new_user("freemium", prefix="alerte")
    r = reserve(e_key, 9000)
    res = [get("/api/v1/quota/status", key=e_key) for _ in range(5)] + [reserve(b_key, 1500) for _ in range(3)]
    check(r.status == 201 and all(x.status in (200, 201) for x in res),
          "with the receiver down, every request is answered", [x.status for x in res])
    time.sleep(0.8)
    rcv.start()
    check(wait_for(lambda: rcv.of(e_id), 20), "the crossing is delivered when the receiver is back")
    check([p["doc"]["level"] for p in rcv.of(e_id)] == ["critical"], "one critical post for 90 %",
          [p["doc"] for p in rcv.of(e_id)])
    time.sleep(1.2)
    _, _, s_end = scrape()
    check(s_end.get('qc_alert_webhooks_total{outcome="sent"}', 0) >= 6
          and s_end.get('qc_alert_webhooks_total{outcome="retried"}', 0) >= 2
          and s_end.get('qc_alert_crossings_total{level="exceeded"}', 0) >= 1,
          "qc_alert_webhooks_total and qc_alert_crossings_total count deliveries and crossings",
          {k: v for k, v in s_end.items() if k.startswith("qc_alert")})
finally:
    rcv.stop()
done()
