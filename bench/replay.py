#!/usr/bin/env python3
"""replay.py - replays a bench/trace.py trace against a running quotacache
stack (issue 14 item 1, SPEC §13), Python 3 standard library only.

    python3 bench/replay.py TRACE --keys FILE --base http://127.0.0.1:PORT
        --mock http://127.0.0.1:MOCKPORT --mycnf VAR/mariadb/my.cnf
        [--threads 32] [--latency-ms 300] [--hours H] [--start EPOCH]
        [--sample-min 10] [--full-drain] [--db quotacache]

Needs a worker built with --enable-test-clock and run with allow_test_clock = 1.
FILE has one line per user index: "INDEX PLAN KEY".  Each trace event becomes
POST /api/v1/generate {"task", "prompt": "[[latency:MS]] " + prompt,
"cache_tier": tier} with the user's key and X-QC-Test-Now: START + t (epoch
seconds, whole; the worker's request clock).  Events go out in time order
through a pool of --threads connections, without sleeping: only the simulated
clock counts.  A user's next event is held until that user's previous answer
has come (a user does not overtake itself); other users' events go on.

Bytes: every --sample-min simulated minutes (X), the bytes of live user cache
entries as of X, read through the root mariadb client.  A user's entries
change only through that user's requests (the cache is per user; a hit's
adaptive-TTL extension lands with the worker's next flush), so the sample
needs no global pause: the users with nothing in flight are read at
once; the users with requests up to X still in flight are read when those
are answered, their later requests parked until then.  (A feature that
writes entries off the request path, such as warming, breaks the premise:
--full-drain waits for every request in flight before each sample instead.)
Bytes mean is the trapezoid mean of the samples; byte-hours = mean x
simulated hours.

START defaults to the whole hour one to two hours ahead of now.  The
database's EVENTs expire reservations and cache entries by the real clock:
with the simulated window ahead of it they find nothing of the replay's to
touch (as long as the replay takes under an hour), and bench/replay.sh turns
the event scheduler off anyway.  The workers' batched counters (hit counts,
which adaptive TTL turns into longer expiries, and the ledger's hit rows) are
flushed on the wall clock, every 250 ms: about 90 simulated seconds at the
default pace.

Prints one JSON object on stdout: requests, statuses, hits ("cached": true),
hit ratio, upstream calls (delta of the mock's /_calls "completions"), billed
and saved dollars and warming spend (usage_events), bytes peak and mean,
byte-hours, latency, elapsed wall seconds.  Progress goes to stderr.
"""
import argparse
import collections
import hashlib
import http.client
import json
import math
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def read_trace(path):
    with open(path, encoding="utf-8") as f:
        events = [json.loads(line) for line in f if line.strip()]
    events.sort(key=lambda e: e["t"])          # already in order; make sure
    return events


def read_keys(path):
    keys = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                keys[int(parts[0])] = parts[2]
    return keys


class Db:
    """The root mariadb client of the private server (one process a query)."""

    def __init__(self, mycnf, name):
        self.cmd = ["mariadb", f"--defaults-file={mycnf}", "-N", "-B", name, "-e"]

    def query(self, sql):
        out = subprocess.run(self.cmd + ["SET time_zone = '+00:00'; " + sql], check=True,
                             capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines()]

    def scalar(self, sql):
        return self.query(sql)[0][0]


def mock_completions(mock):
    with urllib.request.urlopen(mock.rstrip("/") + "/_calls", timeout=10) as r:
        return int(json.load(r)["completions"])


class Gate:
    """Sample k at epoch x: `busy` users still have requests up to x in flight."""

    def __init__(self, k, x, busy):
        self.k, self.x, self.users = k, x, sorted(busy)
        self.members, self.busy = set(busy), set(busy)   # all of them / those not yet answered
        self.parked = []                 # events after x of busy users, held back
        self.rest = self.part = 0        # bytes of the quiet users / of the busy ones
        self.done = threading.Event()


class Replayer:
    def __init__(self, a, keys, db, ids):
        u = urllib.parse.urlsplit(a.base)
        self.host, self.port = u.hostname, u.port or 80
        self.a, self.keys, self.db, self.ids = a, keys, db, ids
        self.local = threading.local()
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(a.threads)   # one per event sent or waiting
        self.statuses, self.hits, self.requests, self.errors_shown = {}, 0, 0, 0
        self.latencies = []              # seconds, per answered request
        self.held = {}                   # user -> their next events; present: one in flight
        self.gate = None                 # the sample being completed
        self.gates = []
        self.pool = None
        self.marker = f"[[latency:{a.latency_ms}]] " if a.latency_ms > 0 else ""
        self.sweeps_started = 0

    # --- HTTP ---------------------------------------------------------------
    def conn(self, fresh=False):
        c = getattr(self.local, "c", None)
        if fresh or c is None:
            if c is not None:
                c.close()
            c = self.local.c = http.client.HTTPConnection(self.host, self.port, timeout=120)
            self.local.used = 0
        return c

    def post(self, ev):
        req = {"task": ev["task"], "prompt": self.marker + ev["prompt"], "cache_tier": ev["tier"]}
        if self.a.hints and ev.get("next"):
            n = ev["next"]
            req["next"] = {"task": n["task"], "prompt": self.marker + n["prompt"], "cache_tier": n["tier"]}
        body = json.dumps(req).encode()
        hdrs = {"Content-Type": "application/json", "Authorization": "Bearer " + self.keys[ev["user"]],
                "X-QC-Test-Now": str(int(self.a.start + ev["t"]))}
        for attempt in (0, 1):
            c = self.conn()
            reused = self.local.used > 0
            try:
                c.request("POST", "/api/v1/generate", body, hdrs)
                r = c.getresponse()
                data = r.read()
                self.local.used += 1
                return r.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # an idle keep-alive connection the server closed: the request never
                # reached it, send it once more on a new one
                self.conn(fresh=True)
                if attempt or not reused:
                    raise
        raise AssertionError("unreachable")

    # --- one event (a pool thread) --------------------------------------------
    def run_one(self, ev):
        user, close = ev["user"], None
        try:
            t0 = time.monotonic()
            try:
                status, data = self.post(ev)
            except Exception as e:                 # counted and shown, never lost in a future
                status, data = f"error:{type(e).__name__}", str(e).encode()
                self.conn(fresh=True)
            hit = False
            if status == 200:
                try:
                    hit = json.loads(data).get("cached") is True
                except ValueError:
                    status = "bad-json"
            with self.lock:
                self.latencies.append(time.monotonic() - t0)
                self.requests += 1
                self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
                self.hits += hit
                show = status != 200 and self.errors_shown < 5
                self.errors_shown += show
            if show:
                print(f"replay: {ev['task']} of user {user} at t={ev['t']}: {status} "
                      f"{data[:300].decode(errors='replace')}", file=sys.stderr)
        finally:
            with self.lock:
                q = self.held[user]
                nxt = q.popleft() if q else None
                if nxt is None:
                    del self.held[user]
                    g = self.gate
                    if g is not None and user in g.busy:
                        g.busy.discard(user)
                        if not g.busy:
                            close = g
            self.slots.release()
            if nxt is not None:
                self.pool.submit(self.run_one, nxt)
            if close is not None:
                self.close_gate(close)

    def start_locked(self, ev):
        """Queues ev behind the user's request in flight, or answers True: send it now."""
        q = self.held.get(ev["user"])
        if q is not None:
            q.append(ev)
            return False
        self.held[ev["user"]] = collections.deque()
        return True

    def submit(self, ev):
        """Sends ev (the caller holds a slot for it) now, after the user's request in
        flight, or after the sample that waits for that user."""
        with self.lock:
            g = self.gate
            if g is not None and ev["user"] in g.members:
                g.parked.append(ev)
                return
            go = self.start_locked(ev)
        if go:
            self.pool.submit(self.run_one, ev)

    # --- bytes samples ----------------------------------------------------------
    def live_bytes(self, x, users, within):
        cond = ""
        if users:
            ids = ",".join(str(self.ids[u]) for u in users)
            cond = f" AND user_id {'IN' if within else 'NOT IN'} ({ids})"
        elif within:
            return 0
        return int(self.db.scalar(
            "SELECT COALESCE(SUM(size_bytes), 0) FROM ai_cache WHERE user_id <> 0"
            f" AND (expires_at IS NULL OR expires_at > FROM_UNIXTIME({x})){cond}"))

    def open_gate(self, k, x):
        """Sample k at x, called by the dispatcher before it sends any event after x."""
        if self.gate is not None:
            self.gate.done.wait()                  # one sample at a time
        with self.lock:
            g = Gate(k, x, self.held.keys())
            if g.busy:
                self.gate = g
        self.gates.append(g)
        # nobody else starts a request of a quiet user: the dispatcher is here
        g.rest = self.live_bytes(x, g.users, within=False)
        if not g.users:
            g.done.set()

    def close_gate(self, g):
        """The busy users of g have been answered: read them, send what was parked."""
        g.part = self.live_bytes(g.x, g.users, within=True)
        go = []
        with self.lock:
            self.gate = None
            for ev in g.parked:
                if self.start_locked(ev):
                    go.append(ev)
        for ev in go:
            self.pool.submit(self.run_one, ev)
        g.done.set()

    def sweep(self, x):
        """Refresh-ahead at simulated time x (the workers' own sweeps follow the
        wall clock, which the replay does not)."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            c.request("POST", "/api/v1/admin/warming/run", b"",
                      {"Authorization": "Bearer " + self.a.admin_key, "X-QC-Test-Now": str(int(x))})
            r = c.getresponse()
            data = r.read()
            if r.status == 200:
                self.sweeps_started += json.loads(data).get("started", 0)
        finally:
            c.close()

    def drain(self):
        for _ in range(self.a.threads):
            self.slots.acquire()
        for _ in range(self.a.threads):
            self.slots.release()


def main():
    ap = argparse.ArgumentParser(description="replay a bench/trace.py trace against quotacache")
    ap.add_argument("trace")
    ap.add_argument("--keys", required=True, help='file of "INDEX PLAN KEY" lines')
    ap.add_argument("--base", required=True, help="quotacache base URL, http://127.0.0.1:PORT")
    ap.add_argument("--mock", required=True, help="mock upstream base URL (for /_calls)")
    ap.add_argument("--mycnf", required=True, help="the private MariaDB's my.cnf (root client)")
    ap.add_argument("--db", default="quotacache")
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--latency-ms", type=int, default=300, help="the mock's latency marker on every prompt")
    ap.add_argument("--hours", type=float, help="simulated hours (default: the trace's, by its last event)")
    ap.add_argument("--start", type=int, help="epoch seconds of t = 0 (default: see the header)")
    ap.add_argument("--sample-min", type=float, default=10.0, help="simulated minutes between byte samples")
    ap.add_argument("--full-drain", action="store_true", help="pause everything for each sample (see the header)")
    ap.add_argument("--hints", action="store_true",
                    help='send each event\'s next step as the "next" request (next-task warming)')
    ap.add_argument("--sweep-min", type=float, default=0,
                    help="run the refresh-ahead sweep every so many simulated minutes (needs --admin-key)")
    ap.add_argument("--admin-key", help="an admin key, for --sweep-min")
    a = ap.parse_args()

    events = read_trace(a.trace)
    keys = read_keys(a.keys)
    missing = {e["user"] for e in events} - keys.keys()
    if missing:
        sys.exit(f"replay: no key for users {sorted(missing)[:10]}")
    if a.hours is None:
        a.hours = math.ceil((events[-1]["t"] if events else 0) / 3600) or 1
    if a.start is None:
        a.start = (int(time.time()) // 3600 + 2) * 3600
    db = Db(a.mycnf, a.db)
    index_of = {hashlib.sha256(k.encode()).hexdigest(): i for i, k in keys.items()}
    hashes = ",".join(f"'{h}'" for h in index_of)
    ids = {index_of[h]: int(uid) for h, uid in
           db.query(f"SELECT key_hash, user_id FROM api_keys WHERE key_hash IN ({hashes})")}
    if len(ids) != len(keys):
        sys.exit(f"replay: {len(keys)} keys but {len(ids)} known to the database")
    users = "(" + ",".join(str(i) for i in ids.values()) + ")"

    if a.sweep_min > 0 and not a.admin_key:
        sys.exit("replay: --sweep-min needs --admin-key")
    step = a.sample_min * 60.0
    sweep_step, next_sweep = a.sweep_min * 60.0, a.sweep_min * 60.0
    nsamples = int(a.hours * 3600.0 // step) + 1   # at 0, step, ..., <= hours
    rp = Replayer(a, keys, db, ids)
    calls0 = mock_completions(a.mock)
    t0 = time.monotonic()
    k = 0
    print(f"replay: {len(events)} events, {len(keys)} users, {a.hours:g} simulated h from epoch {a.start}, "
          f"{a.threads} threads", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=a.threads) as rp.pool:
        for ev in events:
            while k < nsamples and ev["t"] > k * step:
                if a.full_drain:
                    if rp.gate is not None:
                        rp.gate.done.wait()
                    rp.drain()
                rp.open_gate(k, a.start + int(k * step))
                if k and (k * step) % 3600 == 0:
                    print(f"replay: {k * step / 3600:g} h simulated, {rp.requests} requests, {rp.hits} hits, "
                          f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
                k += 1
            while sweep_step > 0 and ev["t"] > next_sweep:
                rp.sweep(a.start + next_sweep)
                next_sweep += sweep_step
            rp.slots.acquire()
            rp.submit(ev)
        if rp.gate is not None:
            rp.gate.done.wait()
        rp.drain()
        while k < nsamples:
            rp.open_gate(k, a.start + int(k * step))
            k += 1
    elapsed = time.monotonic() - t0
    calls = mock_completions(a.mock) - calls0
    samples = [g.rest + g.part for g in sorted(rp.gates, key=lambda g: g.k)]

    # the workers write the ledger in batches (every 250 ms here): wait until it
    # holds a row for every answered request, or stops growing
    want, seen, stable, deadline = rp.statuses.get("200", 0), -1, 0, time.monotonic() + 30
    while time.monotonic() < deadline:
        n = int(db.scalar(f"SELECT COUNT(*) FROM usage_events WHERE user_id IN {users}"))
        stable = stable + 1 if n == seen else 0
        seen = n
        if n >= want or stable >= 8:
            break
        time.sleep(0.25)
    billed, saved, ledger_rows, ledger_hits = db.query(
        "SELECT COALESCE(SUM(IF(cached = 0 AND task NOT LIKE 'warm:%', cost_micro, 0)), 0),"
        " COALESCE(SUM(IF(cached = 1, saved_micro, 0)), 0), COUNT(*), COALESCE(SUM(cached = 1), 0)"
        f" FROM usage_events WHERE user_id IN {users}")[0]
    warming = db.scalar("SELECT COALESCE(SUM(cost_micro), 0) FROM usage_events WHERE task LIKE 'warm:%'")

    if len(samples) > 1:
        mean = (sum(samples) - (samples[0] + samples[-1]) / 2) / (len(samples) - 1)
    else:
        mean = float(samples[0]) if samples else 0.0
    n200 = rp.statuses.get("200", 0)
    lat = sorted(rp.latencies)

    def pct(p):
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else 0.0
    out = {
        "events": len(events), "users": len(keys), "requests": rp.requests, "status_200": n200,
        "other_statuses": {s: n for s, n in sorted(rp.statuses.items()) if s != "200"},
        "hits": rp.hits, "hit_ratio": round(rp.hits / n200, 4) if n200 else 0.0,
        "upstream_calls": calls,
        "billed_usd": int(billed) / 1e6, "saved_usd": int(saved) / 1e6,
        "bytes_peak": max(samples, default=0), "bytes_mean": round(mean),
        "byte_hours": round(mean * a.hours), "warming_usd": int(warming) / 1e6,
        "refreshes_started": rp.sweeps_started,
        "warming_calls": int(db.scalar("SELECT COUNT(*) FROM usage_events WHERE task LIKE 'warm:%' AND outcome = 'ok'")),
        "ledger_rows": int(ledger_rows), "ledger_hits": int(ledger_hits),
        "samples": len(samples), "sim_hours": a.hours, "start_epoch": a.start,
        "threads": a.threads, "latency_p50_ms": pct(0.5), "latency_p99_ms": pct(0.99),
        "elapsed_s": round(elapsed, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
