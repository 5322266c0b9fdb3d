"""test_openai.py - the OpenAI-compatible endpoint (SPEC §10) driven by the
official openai npm package (6.x, pinned in tests/openai/package-lock.json)
as the real client: tests/openai/client.mjs runs one scenario per call and
prints a JSON object that the checks below judge. Non-streamed and streamed
misses and hits, progressive delivery (the client has the first chunk before
the upstream sent its last), the SDK's exceptions for quotacache's errors
(no retry of insufficient_quota), the ledger equal to the calls made, and a
client that disconnects mid-stream. Behaviour only: no wall-clock thresholds.
Installs node/npm (Debian packages) and the SDK (npm ci) when missing."""
import fcntl
import json
import math
import os
import shutil
import subprocess
import time
import urllib.request

from qc import URL, VAR, check, done, new_user, sql, sql_write

MOCK = os.environ["QC_MOCK_URL"]
SRC = os.environ.get("QC_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OAI = os.path.join(SRC, "tests", "openai")
CLIENT = os.path.join(OAI, "client.mjs")
RUN = f"{os.getpid()}-{int(time.time())}"
# One request at a time, a few prompts: mod_fcgid (one request per process at
# a time) runs the same checks as lighttpd and mod_proxy_fcgi.


def comment(text):
    """Installer output as TAP comments: it must never look like a check."""
    for line in text.splitlines():
        if line.strip():
            print(f"# {line}", flush=True)


def mock(path, data=None):
    req = urllib.request.Request(MOCK + path, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())



def apt_install(*pkgs):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    comment(p.stdout + p.stderr)
    if p.returncode == 0:
        return True
    p = subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env)
    comment(p.stdout + p.stderr)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    comment(p.stdout + p.stderr)
    return p.returncode == 0


def ensure_sdk():
    """node, npm and tests/openai/node_modules (npm ci from the lock file).
    A lock in the run's var directory keeps two passes from running npm ci
    at once. Returns an error text, or None when the SDK is ready."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("# installing nodejs and npm (Debian packages)", flush=True)
        if not apt_install("nodejs", "npm"):
            return "nodejs/npm could not be installed"
    p = subprocess.run(["node", "-e", "process.exit(+process.versions.node.split('.')[0] >= 20 ? 0 : 1)"])
    if p.returncode != 0:
        comment(f"warning: node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}"
                " is older than 20, which the openai SDK 6.x asks for")
    sdk = os.path.join(OAI, "node_modules", "openai", "package.json")
    lock = os.path.join(OAI, "package-lock.json")
    marker = os.path.join(OAI, "node_modules", ".package-lock.json")

    def fresh():
        return (os.path.isfile(sdk) and os.path.isfile(marker)
                and os.path.getmtime(marker) >= os.path.getmtime(lock))

    if fresh():
        return None
    os.makedirs(VAR, exist_ok=True)
    with open(os.path.join(VAR, "openai-npm-ci.lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if fresh():   # another pass installed it while we waited
            return None
        print("# npm ci (the openai SDK, tests/openai)", flush=True)
        try:
            p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=OAI,
                               capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return "npm ci timed out"
        comment(p.stdout + p.stderr)
        if p.returncode != 0 or not os.path.isfile(sdk):
            return f"npm ci failed ({p.returncode})"
    return None


def sdk(scenario, *args, key=None):
    """Run one client.mjs scenario; its JSON object, or {"error": ...}."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(QC_URL=URL, QC_KEY=key if key is not None else KEY)
    try:
        p = subprocess.run(["node", CLIENT, scenario, *args], env=env, capture_output=True, text=True,
                           timeout=120)
    except subprocess.TimeoutExpired:
        return {"error": f"client.mjs {scenario} did not finish within 120 s"}
    lines = p.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"error": f"client.mjs {scenario}: rc {p.returncode}, no JSON",
                "stdout": p.stdout[-2000:], "stderr": p.stderr[-2000:]}
    if not isinstance(out, dict):
        return {"error": f"client.mjs {scenario}: not an object", "stdout": p.stdout[-2000:]}
    if p.stderr.strip():
        comment(f"client.mjs {scenario} stderr: {p.stderr.strip()[-1000:]}")
    return out


def brief(o):
    """A result without the per-chunk list, for a failed check's detail."""
    if isinstance(o, dict) and "chunks" in o:
        o = dict(o, chunks=[(c.get("content"), c.get("finish_reason")) for c in o["chunks"]])
    return o


def content_chunks(s):
    return [c for c in s.get("chunks") or [] if c.get("content")]


def ends_with_stop(s):
    return any(c.get("finish_reason") == "stop" for c in s.get("chunks") or [])


def is_usage(u, positive=True):
    names = ("prompt_tokens", "completion_tokens", "total_tokens")
    if not isinstance(u, dict) or not all(isinstance(u.get(n), int) for n in names):
        return False
    return u["total_tokens"] > 0 if positive else True


def mock_tokens(text):
    """The mock upstream's count: ceil(characters / 4), at least 1."""
    return max(1, math.ceil(len(text) / 4))


def ledger(where):
    time.sleep(1.5)   # every worker flushes its ledger rows within a second
    return sql(f"SELECT COUNT(*) FROM usage_events WHERE user_id = {uid} AND {where}")[0][0]


err = ensure_sdk()
if not check(err is None, "the openai SDK is installed (node, npm ci in tests/openai)", err):
    done()
ver = subprocess.run(["node", "-p", "require('./node_modules/openai/package.json').version"], cwd=OAI,
                     capture_output=True, text=True).stdout.strip()
check(ver.startswith("6."), "the SDK is openai 6.x", ver)

uid, KEY, _ = new_user("pro_monthly", prefix="oai")
# an upstream call an earlier suite left behind (a 30 s [[fault:hang]] the
# gateway gave up on) would finish inside our count: let it end first
for _ in range(90):
    if mock("/_calls").get("in_flight") == 0:
        break
    time.sleep(0.5)
mock("/_reset", b"")
misses = 0   # answers this file caused that called the upstream


def miss(o):
    global misses
    if o.get("cache") == "MISS":
        misses += 1
    return o


# --- models ---------------------------------------------------------------------
m = sdk("models")
check("mock-model" in (m.get("ids") or []) and all(x.get("object") == "model" for x in m.get("data") or [{}]),
      "models.list() through the SDK lists 'mock-model' (object 'model')", m)

# --- non-streamed: a miss, then a hit ---------------------------------------------
p1 = f"hello from the sdk {RUN}"
a = miss(sdk("complete", p1, "oai_complete"))
check(a.get("content") == "echo: " + p1 and a.get("object") == "chat.completion"
      and a.get("finish_reason") == "stop" and a.get("role") == "assistant" and a.get("id"),
      "chat.completions.create: the mock's answer as a chat.completion, finish_reason 'stop'", a)
check(is_usage(a.get("usage")) and a["usage"]["completion_tokens"] == mock_tokens("echo: " + p1),
      "... with the upstream's usage", a.get("usage"))
check(a.get("cache") == "MISS", "... X-Quotacache-Cache: MISS", a.get("headers"))
six = ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
       "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]
rl = a.get("ratelimit") or {}
check(all(rl.get(h) for h in six), "a 200 carries the six x-ratelimit-* headers", rl)
check(bool(rl.get("ratelimit") and rl.get("ratelimit-policy")), "... and RateLimit / RateLimit-Policy", rl)
b = miss(sdk("complete", p1, "oai_complete"))
check(b.get("cache") == "HIT" and b.get("content") == a.get("content") and b.get("finish_reason") == "stop"
      and b.get("object") == "chat.completion", "the same request again: HIT with identical content", b)
check(is_usage(b.get("usage"), positive=False) and b["usage"]["total_tokens"] == 0,
      "... and its usage is 0 tokens (a hit bills nothing)", b.get("usage"))

# --- streamed miss, paced by the mock: delivered progressively ----------------------
p2 = f"[[chunk-ms:50]] stream {RUN} " + " ".join(f"w{i}" for i in range(8))
s = miss(sdk("stream", p2, "0", "oai_stream"))
last = mock("/_last")
cc = content_chunks(s)
check(s.get("done") is True and s.get("text") == "echo: " + p2 and ends_with_stop(s),
      "stream: the SDK's iterator ends, the deltas join to the mock's answer, finish_reason 'stop'", brief(s))
check(len(cc) >= 3 and s.get("objects") == ["chat.completion.chunk"] and s.get("n_ids") == 1,
      "... in several chat.completion.chunk events of one id", brief(s))
check(s.get("cache") == "MISS" and (s.get("content_type") or "").startswith("text/event-stream"),
      "... text/event-stream, X-Quotacache-Cache: MISS", s.get("headers"))
check(s.get("usage") is None, "... no usage chunk when include_usage was not asked", s.get("usage"))
times = last.get("chunk_times") or []
ours = p2 in json.dumps(last.get("messages"))   # the mock's last stream is this one
first = cc[0]["t"] / 1000.0 if cc else None
check(ours and times and first is not None and first < times[-1],
      "progressive delivery: the client had the first content chunk before the upstream sent its last chunk",
      {"ours": ours, "client_first": first, "mock_first": times[:1], "mock_last": times[-1:]})

p3 = f"[[chunk-ms:10]] usage please {RUN} alpha beta gamma"
u = miss(sdk("stream", p3, "1", "oai_stream_usage"))
check(u.get("done") is True and u.get("text") == "echo: " + p3 and is_usage(u.get("usage")),
      "stream with include_usage: the usage chunk is there, total_tokens > 0", brief(u))
check(is_usage(u.get("usage")) and u["usage"]["completion_tokens"] == mock_tokens("echo: " + p3)
      and u["usage"]["prompt_tokens"] == mock_tokens(p3),
      "... with the upstream's counts", u.get("usage"))

# --- a hit served in both modes -------------------------------------------------------
p4 = f"both modes {RUN} one two three four five six"
m4 = miss(sdk("complete", p4, "oai_both"))
h1 = miss(sdk("complete", p4, "oai_both"))
h2 = miss(sdk("stream", p4, "0", "oai_both"))
check(m4.get("cache") == "MISS" and h1.get("cache") == "HIT" and h2.get("cache") == "HIT",
      "after a miss, the same request is a HIT non-streamed and streamed",
      [x.get("cache") or x.get("error") for x in (m4, h1, h2)])
check(m4.get("content") == "echo: " + p4 and h1.get("content") == m4.get("content")
      and h2.get("text") == m4.get("content"), "... with identical text in both modes", (m4, h1, brief(h2)))
check(h2.get("done") is True and len(content_chunks(h2)) >= 2 and ends_with_stop(h2) and h2.get("usage") is None,
      "... the streamed hit is a valid stream: several content deltas, finish_reason 'stop', the iterator ends",
      brief(h2))
h3 = miss(sdk("stream", p4, "1", "oai_both"))
check(h3.get("cache") == "HIT" and h3.get("text") == m4.get("content") and is_usage(h3.get("usage"), positive=False),
      "... and with include_usage it has the usage chunk", brief(h3))

# --- errors: the SDK raises the right exception -----------------------------------------
e = sdk("error-auth")
check(e.get("name") == "AuthenticationError" and e.get("status") == 401 and e.get("code") == "invalid_api_key",
      "an unknown key: AuthenticationError 401, code 'invalid_api_key'", e)
e = sdk("error-badmodel")
check(e.get("name") == "BadRequestError" and e.get("status") == 400 and e.get("param") == "model"
      and e.get("type") == "invalid_request_error",
      "a model not configured: BadRequestError 400, invalid_request_error, param 'model'", e)
e = sdk("error-n2")
check(e.get("name") == "BadRequestError" and e.get("status") == 400 and e.get("param") == "n",
      "n: 2: BadRequestError 400, param 'n'", e)

# insufficient_quota, and the SDK does not retry it (plan removed again below:
# the other suites see the five plans)
sql_write("INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
          " session_ttl_seconds, content_ttl_seconds, sort_order)"
          " VALUES ('test_oai_tiny', 'Test OpenAI tiny', 5, 5, NULL, 1800, 3600, 97)")
try:
    tid, tkey, _ = new_user("test_oai_tiny", prefix="oaitiny")
    q = sdk("error-quota", f"over my tiny quota {RUN}", "oai_quota", key=tkey)
finally:
    sql_write("UPDATE users SET plan = 'pro_monthly' WHERE plan = 'test_oai_tiny';"
              " DELETE FROM plans WHERE name = 'test_oai_tiny'")
check(q.get("name") == "RateLimitError" and q.get("status") == 429 and q.get("code") == "insufficient_quota",
      "an exhausted token window: RateLimitError 429, code 'insufficient_quota'", q)
check((q.get("headers") or {}).get("x-should-retry") == "false", "... with x-should-retry: false", q.get("headers"))
time.sleep(1.5)
nq = sql(f"SELECT COUNT(*), COALESCE(SUM(outcome = 'quota'), 0) FROM usage_events WHERE user_id = {tid}")[0]
check(q.get("attempts") == 1 and nq == ["1", "1"],
      "... and the SDK (maxRetries 2) did not retry it: one request sent, one 'quota' ledger row",
      {"attempts": q.get("attempts"), "rows, quota rows": nq})

# --- a client that disconnects mid-stream ------------------------------------------------
# (the whole stream stays well under the test config's 2 s upstream timeout)
p5 = f"[[chunk-ms:100]] leave early {RUN} " + " ".join(f"v{i}" for i in range(5))
full = "echo: " + p5
ab = miss(sdk("stream-abort", p5, "2", "oai_abort"))
check(ab.get("aborted") is True and len(ab.get("got") or []) == 2 and "".join(ab["got"]) != full,
      "stream-abort: the client read 2 content chunks, then closed the connection", ab)
want = mock_tokens(full)
row = []
for _ in range(20):
    time.sleep(0.5)
    row = sql(f"SELECT COUNT(*), COALESCE(MAX(completion_tokens), -1) FROM usage_events"
              f" WHERE user_id = {uid} AND task = 'oai_abort' AND outcome = 'ok'")[0]
    if row[0] != "0":
        time.sleep(1.2)   # a second row would be a double bill: let it show
        row = sql(f"SELECT COUNT(*), COALESCE(MAX(completion_tokens), -1) FROM usage_events"
                  f" WHERE user_id = {uid} AND task = 'oai_abort' AND outcome = 'ok'")[0]
        break
check(row == ["1", str(want)],
      "after the disconnect the upstream was drained: one 'ok' row with the FULL answer's completion tokens",
      {"rows, completion_tokens": row, "want": want})
h5 = miss(sdk("complete", p5, "oai_abort"))
check(h5.get("cache") == "HIT" and h5.get("content") == full,
      "... and the full answer was stored: the same request again is a HIT with the full text", h5)

# --- the ledger equals the calls made --------------------------------------------------------
calls = {}
for _ in range(10):   # the drained stream counts at the mock once its [DONE] is sent
    calls = mock("/_calls")
    if calls.get("completions") == misses and calls.get("in_flight") == 0:
        break
    time.sleep(0.5)
ok_rows = ledger("outcome = 'ok'")
check(misses == 5 and ok_rows == str(misses),
      "the ledger has one billed 'ok' row per MISS the client saw (each miss billed once)",
      {"misses": misses, "ok rows": ok_rows})
check(calls.get("completions") == misses and calls.get("total") == misses,
      "the mock upstream was called once per MISS, never for a hit or a refused call",
      {"misses": misses, "mock": calls})
# --- raw SSE: /api/v1/generate streams, a stream the upstream breaks, the hourly limit --------
import http.client
from urllib.parse import urlsplit
_u = urlsplit(URL)


def sse(path, body, key, headers=None):
    """(status, headers, list of data payloads) of one request, read to its end."""
    c = http.client.HTTPConnection(_u.hostname, _u.port, timeout=30)
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=json.dumps(body), headers=h)
    r = c.getresponse()
    raw = r.read().decode(errors="replace")
    c.close()
    events = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
    return r.status, {k.lower(): v for k, v in r.getheaders()}, events, raw


def deltas(events):
    out = []
    for e in events:
        if e == "[DONE]":
            continue
        o = json.loads(e)
        for ch in o.get("choices") or []:
            out.append((ch.get("delta") or {}).get("content") or "")
    return out


gid, gkey, _ = new_user("pro_monthly", prefix="oaigen")
gp = f"[[chunk-ms:20]] generate streams too {RUN} one two three four"
st, hd, ev, _ = sse("/api/v1/generate", {"task": "gen_stream", "prompt": gp, "stream": True}, gkey)
usage_ev = [json.loads(e) for e in ev if e != "[DONE]" and json.loads(e).get("usage")]
check(st == 200 and hd.get("content-type", "").startswith("text/event-stream") and ev[-1:] == ["[DONE]"]
      and "".join(deltas(ev)) == "echo: " + gp and len([d for d in deltas(ev) if d]) >= 3
      and usage_ev and usage_ev[-1]["usage"]["total_tokens"] > 0 and hd.get("x-quotacache-cache") == "MISS",
      "/api/v1/generate with stream: chunk events of the answer, the usage chunk, [DONE]", (st, hd, ev[:3]))
st2, hd2, ev2, _ = sse("/api/v1/generate", {"task": "gen_stream", "prompt": gp, "stream": True}, gkey)
check(st2 == 200 and hd2.get("x-quotacache-cache") == "HIT" and "".join(deltas(ev2)) == "echo: " + gp
      and len([d for d in deltas(ev2) if d]) >= 2 and ev2[-1:] == ["[DONE]"],
      "... the same again: a hit replayed as several deltas with the same text", (st2, ev2[:3]))

# the upstream breaks the stream after its first piece: an error event ends
# it, what was streamed is billed ('partial'), nothing is cached or held
bp = f"[[fault:midstream]] [[chunk-ms:20]] break me {RUN} one two three"
st, hd, ev, raw = sse("/v1/chat/completions", {"model": "mock-model", "stream": True, "temperature": 0,
                                               "messages": [{"role": "user", "content": bp}]}, gkey,
                      {"X-Quotacache-Task": "oai_broken"})
errs = [json.loads(e) for e in ev if e != "[DONE]" and "error" in json.loads(e)]
check(st == 200 and "[DONE]" not in ev and len(errs) == 1 and errs[0]["error"].get("code") == "upstream_error"
      and "".join(deltas(ev)) == "echo: ",
      "an upstream that breaks mid-stream: the piece it sent, then an SSE error event, no [DONE]", raw[-400:])
time.sleep(1.2)
rows = sql(f"SELECT outcome, completion_tokens, estimated FROM usage_events WHERE user_id = {gid}"
           " AND task = 'oai_broken'")
held = sql(f"SELECT COUNT(*) FROM quota_reservations WHERE user_id = {gid} AND state = 'active'")[0][0]
cached = sql(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {gid} AND gen_tokens > 0")[0][0]
check(rows == [["partial", "2", "1"]] and held == "0" and cached == "1",
      "... billed for what was streamed (outcome partial, 2 tokens estimated from 'echo: '), "
      "the reservation settled, nothing cached but the /generate answer", (rows, held, cached))
st, hd, ev, raw = sse("/v1/chat/completions", {"model": "mock-model", "stream": True,
                                               "messages": [{"role": "user", "content": "[[fault:500]] x"}]}, gkey)
check(st == 502 and json.loads(raw).get("error", {}).get("code") == "upstream_error",
      "an upstream that fails before its first chunk: the ordinary 502 in OpenAI's shape", raw[:300])

# an upstream stream without usage: tokens estimated from the text, the row marked estimated,
# and the client that asked for usage still gets a usage chunk (the estimate)
np_ = f"[[fault:nousage]] no usage here {RUN} one two three"
st, hd, ev, raw = sse("/v1/chat/completions", {"model": "mock-model", "stream": True, "temperature": 0,
                                               "stream_options": {"include_usage": True},
                                               "messages": [{"role": "user", "content": np_}]}, gkey,
                      {"X-Quotacache-Task": "oai_nousage"})
uc = [json.loads(e)["usage"] for e in ev if e != "[DONE]" and json.loads(e).get("usage")]
want_ct = math.ceil(len("echo: " + np_) / 4)
time.sleep(1.2)
rows = sql(f"SELECT completion_tokens, estimated, streamed, api FROM usage_events WHERE user_id = {gid}"
           " AND task = 'oai_nousage'")
check(st == 200 and ev[-1:] == ["[DONE]"] and len(uc) == 1 and uc[0]["completion_tokens"] == want_ct
      and rows == [[str(want_ct), "1", "1", "openai"]],
      "no upstream usage: tokens estimated from the text (characters / 4), the ledger row marked "
      "estimated (and streamed, api openai), the usage chunk the client asked for carries the estimate",
      (st, uc, rows, want_ct))

# the hourly call limit: 429 rate_limit_exceeded with Retry-After (the SDKs may retry it)
sql_write("INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
          " max_inflight, session_ttl_seconds, content_ttl_seconds, sort_order)"
          " VALUES ('test_oai_hourly', 'OAI hourly', NULL, NULL, 1, 8, 1800, 3600, 97)")
hid, hkey, _ = new_user("test_oai_hourly", prefix="oaihour")
sse("/v1/chat/completions", {"model": "mock-model", "messages": [{"role": "user", "content": f"one {RUN}"}]}, hkey)
st, hd, ev, raw = sse("/v1/chat/completions", {"model": "mock-model",
                                               "messages": [{"role": "user", "content": f"two {RUN}"}]}, hkey)
err = json.loads(raw).get("error", {}) if raw.startswith("{") else {}
check(st == 429 and err.get("code") == "rate_limit_exceeded" and hd.get("retry-after")
      and hd.get("x-should-retry") is None,
      "the hourly call limit: 429 rate_limit_exceeded with Retry-After (retrying is allowed)", (st, hd, raw[:200]))
sql_write(f"UPDATE users SET plan = 'pro_monthly' WHERE id = {hid}")
sql_write("DELETE FROM plans WHERE name = 'test_oai_hourly'")

done()
