#!/usr/bin/env python3
"""mock_upstream.py - a mock OpenAI-compatible chat-completions upstream for
the test suite (Python 3.11 standard library only).

  python3 tests/mock_upstream.py --port N [--host 127.0.0.1] [--latency-ms 0]
      [--content "fixed text" | --echo] [--pidfile F] [--expect-key KEY]

Binds to loopback only. HTTP/1.1 keep-alive, one thread per connection (daemon
threads with 1 MiB stacks; listen backlog 4096; RLIMIT_NOFILE soft raised to
the hard limit at start): it holds well over 1,100 connections each waiting on
a 1 s answer at once.

Endpoints
  POST /v1/chat/completions, POST /chat/completions  an OpenAI-style answer
  GET  /_calls   {"total": T, "completions": C, "in_flight": I, "peak": P}
                 T: every request to the completion endpoint (faults, 400s and
                 401s included), counted on arrival; C: requests that got a
                 well-formed 200 completion (also with nousage / content; a
                 stream counts once its [DONE] is sent); I: completion
                 requests being handled right now (from the end of their
                 headers to the end of the answer, streams included); P: the
                 highest I since start or the last /_reset.
  POST /_reset   zero the counters, the flaky counters and /_last; the peak
                 becomes the current in_flight -> {"ok":true}
  GET  /_last    {"model", "messages", "max_tokens", "had_auth", "stream",
                 "stream_options", "chunk_times"} of the last completion
                 request whose body parsed ({} before any); "stream" is true
                 when that request asked for a stream, "stream_options" its
                 object (or null); "chunk_times" lists the send time
                 (time.time(), seconds) of each chat.completion.chunk event of
                 the LAST STREAMED request, in order, growing while it streams
                 ([] before any stream)
  anything else  404 JSON

Answer: CONTENT is --content, else (--echo, the default) "echo: " + the last
user message's content (markers included). usage: prompt_tokens =
ceil(characters of all message contents / 4), completion_tokens =
ceil(len(CONTENT) / 4), each at least 1 (characters = Unicode code points).

Streaming: a body with "stream": true gets 200 text/event-stream (HTTP/1.1
chunked, keep-alive) of OpenAI chat.completion.chunk events, each
"data: {json}\n\n", all with the same id, created and model:
  1. delta {"role": "assistant", "content": ""}
  2. the CONTENT in pieces, one word each with the whitespace after it
     (regex \s*\S+\s*, so the pieces join back to CONTENT exactly; 3+ words
     give 3+ pieces), delta {"content": PIECE}, finish_reason null
  3. delta {}, finish_reason "stop"
  4. if stream_options.include_usage is true (and no nousage marker): the
     usage chunk, "choices": [] and "usage" as above; the chunks before it
     then carry "usage": null, as OpenAI's do
  5. data: [DONE]
The headers go out after the sleeps (latency, hang); the first chunk event
[[first-chunk-ms:N]] ms after them, each later chunk event [[chunk-ms:N]] ms
after the one before (both default 0); [DONE] right after the last.

Markers in the LAST user message (several may combine):
  [[latency:MS]]        sleep MS ms first (added to --latency-ms)
  [[fault:500]]         500 OpenAI-style error     [[fault:503]]  503
  [[fault:429]]         429 + Retry-After: 1       [[fault:429:S]] Retry-After: S
  [[fault:flaky:N]]     the first N calls with this exact last-user-message
                        text answer 500, later ones go on normally
  [[fault:hang]]        sleep 30 s (quits at once on shutdown), then normal
  [[fault:malformed]]   200 application/json  {"choices": [ {"message":
                        (streamed: the role chunk, then the event
                        data: {"choices": [ {"delta":  then data: [DONE])
  [[fault:nonjson]]     200 text/html  <html>gateway</html>  (streamed too)
  [[fault:nochoices]]   200 JSON with id, object, usage but no choices
                        (streamed: 400, not supported)
  [[fault:truncated]]   Content-Length of the full body, half of it, close
                        (streamed: as midstream)
  [[fault:midstream]]   streamed: the first 2 chunk events (the role chunk
                        and the first piece), then the connection is closed
                        without the terminating chunk (no finish, no [DONE]);
                        not streamed: as truncated
  [[fault:nousage]]     normal answer without "usage" (streamed: no usage
                        chunk even when asked)
  [[content:TEXT]]      TEXT (up to the first "]]") is the content
  [[chunk-ms:N]]        streamed: N ms between chunk events
  [[first-chunk-ms:N]]  streamed: N ms between the headers and the first event
An unknown [[fault:...]] marker answers 400 (so a typo in a test shows), and
so does a non-numeric latency / chunk-ms / first-chunk-ms.
Order: sleeps (latency, hang); then the first status fault in text order
(500, 503, 429, a flaky call still failing); then malformed > nonjson >
nochoices > truncated / midstream; nousage and content shape the normal body.

One line per request on stderr: method, path (no query), status, faults
("stream" for a streamed answer), milliseconds. Never the Authorization
header nor message contents.
SIGTERM / SIGINT: clean exit 0 (pidfile removed).
"""
import argparse
import hmac
import ipaddress
import json
import math
import os
import re
import resource
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOP = threading.Event()
MAX_BODY = 16 * 1024 * 1024
HANG_SECONDS = 30.0
COMPLETION_PATHS = ("/v1/chat/completions", "/chat/completions")
MARKER_RE = re.compile(r"\[\[(latency|fault|content|chunk-ms|first-chunk-ms):(.*?)\]\]", re.S)
PIECE_RE = re.compile(r"\s*\S+\s*")
THREAD_STACK = 1024 * 1024   # per connection thread (the default is 8 MiB of address space)
LISTEN_BACKLOG = 4096        # the kernel caps it at net.core.somaxconn


def log(line):
    try:
        sys.stderr.write("mock-upstream: " + line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def nap(seconds):
    """Sleep, returning early (False) when the server is stopping. One
    timed wait on the STOP event (no polling: a thousand sleeping threads
    cost no CPU)."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return True
        if STOP.wait(left):
            return False


def err_body(message, etype, code=None):
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def text_of(content):
    """A message content as text: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def tokens(n_chars):
    return max(1, math.ceil(n_chars / 4))


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.completions = 0
        self.flaky = {}
        self.last = None
        self.chunk_times = []   # of the last streamed request (a new list per stream)
        self.in_flight = 0
        self.peak = 0

    def enter(self):
        with self.lock:
            self.in_flight += 1
            if self.in_flight > self.peak:
                self.peak = self.in_flight

    def leave(self):
        with self.lock:
            self.in_flight -= 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "mock-upstream/1"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------
    def log_request(self, code="-", size="-"):
        pass  # we write our own line per request

    def log_message(self, fmt, *args):
        # only http.server's own errors get here (bad request lines etc.)
        log("%s %s" % (self.address_string(), fmt % args))

    def read_body(self):
        """The request body as bytes, or None after answering an error."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    n = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    self.reply(400, err_body("bad chunked body", "invalid_request_error"))
                    return None
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                size += n
                if size > MAX_BODY:
                    self.close_connection = True
                    self.reply(413, err_body("body too large", "invalid_request_error"))
                    return None
                chunks.append(self.rfile.read(n))
                self.rfile.readline(65537)
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        try:
            n = int(cl)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self.reply(400, err_body("bad Content-Length", "invalid_request_error"))
            return None
        if n > MAX_BODY:
            self.close_connection = True
            self.reply(413, err_body("body too large", "invalid_request_error"))
            return None
        return self.rfile.read(n) if n else b""

    def reply(self, status, body, ctype="application/json", headers=(), truncate=False):
        if isinstance(body, (dict, list)):
            data = json.dumps(body, separators=(",", ":")).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        self.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection and not truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data[: len(data) // 2] if truncate else data)
        self.wfile.flush()
        if truncate:
            self.close_connection = True

    def route(self):
        self.t0 = time.monotonic()
        self.status = 0
        self.faults = []
        path = self.path.split("?", 1)[0]
        st = self.server.state
        counted = self.command == "POST" and path in COMPLETION_PATHS
        if counted:
            st.enter()
        try:
            body = self.read_body()
            if body is None:
                return
            if counted:
                self.completion(body)
            elif self.command == "GET" and path == "/_calls":
                with st.lock:
                    calls = {"total": st.total, "completions": st.completions,
                             "in_flight": st.in_flight, "peak": st.peak}
                self.reply(200, calls)
            elif self.command == "POST" and path == "/_reset":
                with st.lock:
                    st.total = st.completions = 0
                    st.flaky.clear()
                    st.last = None
                    st.chunk_times = []
                    st.peak = st.in_flight
                self.reply(200, {"ok": True})
            elif self.command == "GET" and path == "/_last":
                with st.lock:
                    last = dict(st.last, chunk_times=list(st.chunk_times)) if st.last is not None else {}
                self.reply(200, last)
            else:
                self.reply(404, err_body("no route for %s %s" % (self.command, path),
                                         "invalid_request_error", "not_found"))
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
            self.faults.append("client-gone")
        finally:
            if counted:
                st.leave()
            log("%s %s %s fault=%s %dms" % (
                self.command, path if path.isprintable() else "?", self.status or "-",
                ",".join(self.faults) or "-", (time.monotonic() - self.t0) * 1000))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = route

    # -- the completion endpoint -------------------------------------------
    def completion(self, raw):
        st, cfg = self.server.state, self.server.cfg
        auth = self.headers.get("Authorization") or ""
        try:
            req = json.loads(raw.decode("utf-8"))
            if not isinstance(req, dict):
                raise ValueError("the body must be a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            req, bad = None, "could not parse the JSON body: %s" % e.__class__.__name__
        else:
            bad = None
            if not isinstance(req.get("messages"), list) or not all(
                    isinstance(m, dict) for m in req["messages"]):
                bad = "'messages' must be an array of objects"
            elif req.get("stream") not in (None, True, False):
                bad = "'stream' must be a boolean"
            elif req.get("stream_options") is not None and not isinstance(req["stream_options"], dict):
                bad = "'stream_options' must be an object"
        with st.lock:
            st.total += 1
            seq = st.total
            if req is not None:
                st.last = {"model": req.get("model"), "messages": req.get("messages"),
                           "max_tokens": req.get("max_tokens"), "had_auth": bool(auth.strip()),
                           "stream": req.get("stream") is True,
                           "stream_options": req.get("stream_options")}
        if cfg.expect_key is not None:
            parts = auth.split(None, 1)
            ok = (len(parts) == 2 and parts[0].lower() == "bearer"
                  and hmac.compare_digest(parts[1].strip().encode(), cfg.expect_key.encode()))
            if not ok:
                self.faults.append("auth")
                return self.reply(401, err_body("Incorrect API key provided.",
                                                "invalid_request_error", "invalid_api_key"))
        if bad:
            self.faults.append("bad-request")
            return self.reply(400, err_body(bad, "invalid_request_error"))

        messages = req["messages"]
        texts = [text_of(m.get("content")) for m in messages]
        prompt = ""
        for m, t in zip(messages, texts):
            if m.get("role") == "user":
                prompt = t
        model = req.get("model") if isinstance(req.get("model"), str) else "mock-model"
        content = cfg.content if cfg.content is not None else "echo: " + prompt

        stream = req.get("stream") is True
        latency = cfg.latency_ms / 1000.0
        pace = {"chunk-ms": 0.0, "first-chunk-ms": 0.0}
        status_fault = None
        shape = set()
        for kind, arg in MARKER_RE.findall(prompt):
            if kind == "content":
                content = arg
                shape.add("content")
            elif kind in ("latency", "chunk-ms", "first-chunk-ms"):
                try:
                    ms = max(0, int(arg)) / 1000.0
                except ValueError:
                    self.faults.append("bad-marker")
                    return self.reply(400, err_body("mock: bad marker [[%s:%s]]" % (kind, arg),
                                                    "invalid_request_error"))
                if kind == "latency":
                    latency += ms
                else:
                    pace[kind] = ms
            elif arg in ("500", "503") or re.fullmatch(r"429(:\d+)?", arg):
                status_fault = status_fault or arg
            elif re.fullmatch(r"flaky:\d+", arg):
                with st.lock:
                    n = st.flaky.get(prompt, 0) + 1
                    st.flaky[prompt] = n
                if n <= int(arg[6:]):
                    status_fault = status_fault or "flaky"
                else:
                    self.faults.append("flaky-passed")
            elif arg in ("hang", "malformed", "nonjson", "nochoices", "truncated", "nousage"):
                shape.add(arg)
            elif arg == "midstream":
                shape.add("truncated")   # the same cut, named for streams
            else:
                self.faults.append("bad-marker")
                return self.reply(400, err_body("mock: unknown marker [[fault:%s]]" % arg,
                                                "invalid_request_error"))

        if stream and "nochoices" in shape:
            self.faults.append("bad-marker")
            return self.reply(400, err_body("mock: [[fault:nochoices]] is not supported with stream",
                                            "invalid_request_error"))

        if latency > 0 and not nap(latency):
            self.close_connection = True
            return
        if "hang" in shape:
            self.faults.append("hang")
            if not nap(HANG_SECONDS):
                self.close_connection = True
                return
        if status_fault:
            self.faults.append(status_fault)
            if status_fault in ("500", "flaky"):
                return self.reply(500, err_body("mock: injected server error", "server_error"))
            if status_fault == "503":
                return self.reply(503, err_body("mock: injected service unavailable",
                                                "server_error", "service_unavailable"))
            retry = status_fault[4:] or "1"
            return self.reply(429, err_body("mock: injected rate limit", "requests",
                                            "rate_limit_exceeded"),
                              headers=[("Retry-After", retry)])
        if "malformed" in shape and not stream:
            self.faults.append("malformed")
            return self.reply(200, '{"choices": [ {"message": ')
        if "nonjson" in shape and not (stream and "malformed" in shape):
            self.faults.append("nonjson")
            return self.reply(200, "<html>gateway</html>", ctype="text/html")

        p = tokens(sum(len(t) for t in texts))
        c = tokens(len(content))
        usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        if stream:
            so = req.get("stream_options") or {}
            return self.stream_answer(seq, model, content, usage, shape, pace,
                                      so.get("include_usage") is True and "nousage" not in shape)
        answer = {"id": "chatcmpl-mock-%d" % seq, "object": "chat.completion",
                  "created": int(time.time()), "model": model}
        if "nochoices" in shape:
            self.faults.append("nochoices")
            answer["usage"] = usage
            return self.reply(200, answer)
        answer["choices"] = [{"index": 0,
                              "message": {"role": "assistant", "content": content},
                              "finish_reason": "stop"}]
        if "nousage" in shape:
            self.faults.append("nousage")
        else:
            answer["usage"] = usage
        if "truncated" in shape:
            self.faults.append("truncated")
            return self.reply(200, answer, truncate=True)
        if "content" in shape:
            self.faults.append("content")
        self.reply(200, answer)
        with st.lock:
            st.completions += 1


    # -- streamed answers (SSE) ---------------------------------------------
    def stream_answer(self, seq, model, content, usage, shape, pace, include_usage):
        st = self.server.state
        self.faults.append("stream")
        self.faults += sorted(shape & {"content", "nousage"})
        base = {"id": "chatcmpl-mock-%d" % seq, "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model}

        def chunk(choices, **extra):
            d = dict(base, choices=choices, **extra)
            if include_usage and "usage" not in d:
                d["usage"] = None
            return "data: " + json.dumps(d, separators=(",", ":")) + "\n\n"

        pieces = PIECE_RE.findall(content) or ([content] if content else [])
        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                          "logprobs": None, "finish_reason": None}])]
        if "malformed" in shape:
            self.faults.append("malformed")
            events.append('data: {"choices": [ {"delta": \n\n')
        else:
            events += [chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                               "finish_reason": None}]) for piece in pieces]
            events.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
            if include_usage:
                events.append(chunk([], usage=usage))
        cut = "truncated" in shape
        if cut:
            self.faults.append("midstream")
            events = events[:2]

        times = []
        with st.lock:
            st.chunk_times = times   # /_last shows this list, growing as we send
        self.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()

        def send(text):
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        for i, ev in enumerate(events):
            wait = pace["first-chunk-ms"] if i == 0 else pace["chunk-ms"]
            if wait > 0 and not nap(wait):
                self.close_connection = True
                return
            send(ev)
            with st.lock:
                times.append(time.time())
        if cut:
            # no terminating chunk: the client sees the body end early
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        send("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if "malformed" not in shape:
            with st.lock:
                st.completions += 1


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


def loopback(host):
    if host == "localhost":
        return "127.0.0.1"
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description="mock OpenAI-compatible upstream (loopback only)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--latency-ms", type=int, default=0)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--content", help="fixed answer text")
    g.add_argument("--echo", action="store_true", help='answer "echo: <last user message>" (default)')
    ap.add_argument("--pidfile")
    ap.add_argument("--expect-key", help="require Authorization: Bearer KEY (else 401)")
    cfg = ap.parse_args(argv)
    host = loopback(cfg.host)
    if host is None:
        ap.error("refusing to bind to non-loopback host %r" % cfg.host)
    if cfg.latency_ms < 0:
        ap.error("--latency-ms must be >= 0")

    # many connections at once: every file descriptor the hard limit allows,
    # and small thread stacks (address space, and the pages they touch)
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        log("cannot raise RLIMIT_NOFILE: %s" % e)
    threading.stack_size(THREAD_STACK)

    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = Server((host, cfg.port), Handler)
    except OSError as e:
        log("cannot bind %s:%d: %s" % (host, cfg.port, e))
        return 1
    server.cfg = cfg
    server.state = State()

    def stop(signum, frame):
        STOP.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pid = str(os.getpid())
    if cfg.pidfile:
        with open(cfg.pidfile + ".tmp", "w") as f:
            f.write(pid + "\n")
        os.replace(cfg.pidfile + ".tmp", cfg.pidfile)
    port = server.server_address[1]
    log_host = "[%s]" % host if ":" in host else host
    sys.stderr.write("mock-upstream listening on %s:%d\n" % (log_host, port))
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        STOP.set()
        server.server_close()
        if cfg.pidfile:
            try:
                with open(cfg.pidfile) as f:
                    mine = f.read().strip() == pid
                if mine:
                    os.unlink(cfg.pidfile)
            except OSError:
                pass
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
