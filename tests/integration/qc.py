"""qc.py - helpers shared by the integration tests (python3 stdlib only).

The stack (MariaDB, lighttpd, workers, mock upstream) is started by run.sh;
this module reads where it is from the environment:
  QC_URL       base URL of lighttpd, e.g. http://127.0.0.1:PORT
  QC_CTL       path of quotacachectl; QC_CONFIG its config file
  QC_VAR       the test run's var directory
Each check prints one TAP line; run_all.sh counts them.
"""
import http.client
import json
import os
import subprocess
import sys
import threading
import urllib.parse

URL = os.environ.get("QC_URL", "http://127.0.0.1:8080")
_u = urllib.parse.urlsplit(URL)
HOST, PORT = _u.hostname, _u.port or 80
CTL = os.environ.get("QC_CTL", "quotacachectl")
VAR = os.environ.get("QC_VAR", "/tmp")

SERVER = os.environ.get("QC_SERVER", "lighttpd")
_n = 0
_failed = 0
_lock = threading.Lock()


def check(cond, name, detail=None):
    """Print one TAP line; returns cond so callers can chain."""
    global _n, _failed
    with _lock:
        _n += 1
        name = f"[{SERVER}] {name}"
        if cond:
            print(f"ok {_n} - {name}", flush=True)
        else:
            _failed += 1
            extra = f"  [{detail}]" if detail is not None else ""
            print(f"not ok {_n} - {name}{extra}", flush=True)
    return cond


def done():
    """End a test file: exit 3 when a check failed (already counted as
    'not ok'); any other non-zero exit (a crash) is counted by run.sh."""
    print(f"1..{_n}", flush=True)
    sys.exit(3 if _failed else 0)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def request(method, path, body=None, key=None, headers=None, raw=None,
            ctype="application/json", timeout=30, conn=None):
    """One HTTP request; body is JSON-encoded unless raw bytes are given."""
    h = {}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    data = None
    if raw is not None:
        data = raw
    elif body is not None:
        data = json.dumps(body).encode()
    if data is not None and ctype:
        h["Content-Type"] = ctype
    if headers:
        h.update(headers)
    own = conn is None
    c = conn or http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return Resp(r.status, r.getheaders(), r.read())
    finally:
        if own:
            c.close()


def get(path, **kw):
    return request("GET", path, **kw)


def post(path, body=None, **kw):
    return request("POST", path, body=body, **kw)


def put(path, body=None, **kw):
    return request("PUT", path, body=body, **kw)


def delete(path, **kw):
    return request("DELETE", path, **kw)


def ctl(*args, check_rc=True):
    """Run quotacachectl; returns (rc, stdout, stderr)."""
    p = subprocess.run([CTL, *args], capture_output=True, text=True)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"quotacachectl {' '.join(args)} failed: {p.stderr}")
    return p.returncode, p.stdout, p.stderr


_user_seq = [0]


def new_user(plan="pro_monthly", admin=False, prefix="u"):
    """Create a user through the admin CLI; returns (id, key, email)."""
    _user_seq[0] += 1
    email = f"{prefix}{_user_seq[0]}-{os.getpid()}@test.example"
    args = ["user", "add", "--email", email, "--plan", plan]
    if admin:
        args.append("--admin")
    _, out, _ = ctl(*args)
    key = out.strip().splitlines()[-1]
    _, lst, _ = ctl("user", "list")
    uid = None
    for line in lst.splitlines():
        cols = line.split("\t")
        if len(cols) > 1 and cols[1] == email:
            uid = int(cols[0])
    return uid, key, email


def is_problem(r, status):
    """The answer is a problem+json with this status."""
    return (r.status == status
            and (r.header("content-type") or "").startswith("application/problem+json")
            and isinstance(r.json, dict) and r.json.get("status") == status
            and "title" in r.json and "type" in r.json)


def metric(name, labels=""):
    """One sample of /metrics, name{labels} (name alone without labels); 0.0 when absent."""
    head = name + ("{" + labels + "}" if labels else "") + " "
    for line in get("/metrics").body.decode().splitlines():
        if line.startswith(head):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def parallel(n, fn, workers=None):
    """Run fn(i) for i in range(n) on n threads released together."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        try:
            results[i] = fn(i)
        except Exception as e:  # a failed request is a result too
            results[i] = e

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return results


def sql(query):
    """Run a read-only SQL query as root over the private socket (tests only)."""
    mycnf = os.path.join(VAR, "mariadb", "my.cnf")
    p = subprocess.run(["mariadb", f"--defaults-file={mycnf}", "-N", "-B", os.environ.get("QC_DB_NAME", "quotacache"),
                        "-e", query], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return [line.split("\t") for line in p.stdout.splitlines()]


def sql_write(stmt):
    """Run a writing SQL statement as root over the private socket (test
    setup: plans of a test's own, clean-up)."""
    sql(stmt)
