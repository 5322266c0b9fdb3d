"""test_openai_input.py - hostile input to the OpenAI-compatible endpoint
(SPEC §10): raw bodies to POST /v1/chat/completions with a valid key. Each
is refused with 400 (413 for a body over max_body) and an OpenAI-shaped error
{"error": {"message", "type": "invalid_request_error", "param", "code"}} as
application/json; afterwards nothing is reserved, nothing cached and the
upstream was never called. Also 401 without a key and 405 for a wrong method.
(Unknown top-level fields are ignored, as OpenAI does: not tested here.)"""
import json
import os
import time
import urllib.request

from qc import check, done, get, new_user, post, sql

MOCK = os.environ["QC_MOCK_URL"]
RUN = f"{os.getpid()}-{int(time.time())}"
PATH = "/v1/chat/completions"


def mock(path, data=None):
    req = urllib.request.Request(MOCK + path, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def oai_error(r, status, etype="invalid_request_error"):
    """The answer is an OpenAI-shaped error with this status (and type)."""
    e = r.json.get("error") if isinstance(r.json, dict) else None
    return (r.status == status
            and (r.header("content-type") or "").split(";")[0].strip() == "application/json"
            and isinstance(e, dict) and isinstance(e.get("message"), str) and e["message"] != ""
            and (etype is None or e.get("type") == etype)
            and "param" in e and "code" in e)


def param(r):
    e = r.json.get("error") if isinstance(r.json, dict) else None
    return e.get("param") if isinstance(e, dict) else None


def send(raw, k=None):
    try:
        return post(PATH, raw=raw, key=k or key, headers={"X-Quotacache-Task": "oai_input"}, timeout=60)
    except OSError as e:   # a connection the server dropped is a result too
        return e


def refused(name, raw, names=None, statuses=(400,)):
    """400 (or one of statuses), OpenAI-shaped; when names is given the param
    must name one of them (the top-level field, or a path inside it)."""
    r = send(raw)
    ok = (not isinstance(r, Exception) and any(oai_error(r, s) for s in statuses)
          and (names is None or (isinstance(param(r), str) and any(n in param(r) for n in names))))
    want = " or ".join(map(str, statuses))
    what = f", param naming {'/'.join(repr(n) for n in names)}" if names else ""
    check(ok, f"{name}: {want}, OpenAI-shaped invalid_request_error{what}", r)
    return r


DROP = object()   # body(field=DROP) leaves the field out


def body(**fields):
    b = {"model": "mock-model", "messages": [{"role": "user", "content": f"hostile {RUN}"}], "temperature": 0}
    b.update(fields)
    for k, v in list(b.items()):
        if v is DROP:
            del b[k]
    return json.dumps(b).encode()


uid, key, _ = new_user("pro_monthly", prefix="oaiin")
mock("/_reset", b"")

# --- the body is not a valid request ------------------------------------------------
refused("malformed JSON", b'{"model": "mock-model", "messages": [{"role": "user", "content": "x"}')
refused("invalid UTF-8 bytes in a content",
        b'{"model": "mock-model", "messages": [{"role": "user", "content": "bad \xff\xfe\xc3 bytes"}]}')
refused("messages missing", body(messages=DROP), ["messages"])
refused("messages not an array", body(messages="hello"), ["messages"])
refused("messages an empty array", body(messages=[]), ["messages"])
refused("a message that is not an object", body(messages=["hello"]), ["messages"])
refused("an unknown role ('wizard')", body(messages=[{"role": "wizard", "content": "x"}]), ["messages", "role"])
refused("a role that is not a string", body(messages=[{"role": 7, "content": "x"}]), ["messages", "role"])
refused("a content that is a number", body(messages=[{"role": "user", "content": 42}]), ["messages", "content"])
refused("a content part of an unknown type",
        body(messages=[{"role": "user", "content": [{"type": "hologram", "hologram": "x"}]}]),
        ["messages", "content"])
many = [{"role": "user", "content": "x"}] * 100000
refused("100,000 messages", body(messages=many), statuses=(400, 413))
refused("10,000 nested arrays in 'tools'",
        b'{"model": "mock-model", "messages": [{"role": "user", "content": "x"}], "tools": '
        + b"[" * 10000 + b"]" * 10000 + b"}")
refused("10,000 nested objects in 'response_format'",
        b'{"model": "mock-model", "messages": [{"role": "user", "content": "x"}], "response_format": '
        + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b"}")

# --- known fields of the wrong type or out of range ------------------------------------
refused("'stream' as the string \"true\"", body(stream="true"), ["stream"])
refused("'n' = 2", body(n=2), ["n"])
refused("'temperature' as a string", body(temperature="0.5"), ["temperature"])
refused("'temperature' 5 (out of 0..2)", body(temperature=5), ["temperature"])
refused("'max_tokens' -1", body(max_tokens=-1), ["max_tokens"])
refused("'max_tokens' as a string", body(max_tokens="10"), ["max_tokens"])
refused("'stream_options' not an object", body(stream=True, stream_options="include_usage"), ["stream_options"])
refused("'model' a number", body(model=42), ["model"])

# --- a body over max_body (4 MiB in the test config) ---------------------------------
big = body(messages=[{"role": "user", "content": "x" * (4 * 1024 * 1024 + 4096)}])
r = send(big)
check(not isinstance(r, Exception) and oai_error(r, 413), "a body over max_body (4 MiB): 413, OpenAI-shaped", r)

# --- no key, wrong method ------------------------------------------------------------------
r = post(PATH, raw=body(), key=None)
check(oai_error(r, 401, etype=None) and r.json["error"]["code"] == "invalid_api_key",
      "POST /v1/chat/completions without a key: 401, OpenAI-shaped, code 'invalid_api_key'", r)
r = get("/v1/models")
check(oai_error(r, 401, etype=None) and r.json["error"]["code"] == "invalid_api_key",
      "GET /v1/models without a key: 401, OpenAI-shaped, code 'invalid_api_key'", r)
r = get(PATH, key=key)
check(r.status == 405, "GET /v1/chat/completions: 405", r)
check("POST" in (r.header("allow") or ""), "... with Allow naming POST", r.headers)

# --- and nothing happened -------------------------------------------------------------------
time.sleep(1.5)   # anything a worker batched reaches the database within a second
active = sql(f"SELECT COUNT(*) FROM quota_reservations WHERE user_id = {uid} AND state = 'active'")[0][0]
check(active == "0", "after all of them nothing is reserved (no active reservation)", active)
cached = sql(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {uid}")[0][0]
check(cached == "0", "... nothing is cached", cached)
calls = mock("/_calls")
check(calls.get("total") == 0, "... and the upstream was never called", calls)
done()
