#!/usr/bin/env bash
# test_mock_upstream_selfcheck.sh - prove tests/mock_upstream.py behaves as
# documented: start it on free loopback ports, check every endpoint and fault
# marker with curl, stop it (even on failure). Prints TAP; exit 0 when all pass.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
MOCK=$HERE/mock_upstream.py
TMP=$(mktemp -d)
n=0; failed=0

stop_mocks() {
	local f
	for f in "$TMP"/*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	sleep 0.3
	for f in "$TMP"/*.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap stop_mocks EXIT

ok() {   # ok CONDITION-STATUS "description" [diagnostic]
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"
	else echo "not ok $n - $2"; failed=$((failed + 1)); [ -n "${3:-}" ] && echo "# $3"; fi
	return 0
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_mock() {   # start_mock NAME PORT ARGS... ; waits until it answers
	local name=$1 port=$2 i; shift 2
	python3 "$MOCK" --port "$port" --pidfile "$TMP/$name.pid" "$@" 2>"$TMP/$name.log" &
	for i in $(seq 50); do
		curl -sf -o /dev/null "http://127.0.0.1:$port/_calls" && return 0
		sleep 0.1
	done
	return 1
}
# jq-less JSON assertion: pyok FILE 'python expression over j (parsed JSON)'
pyok() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null; }
msg() {   # msg USER-TEXT [MODEL] -> request body with a system and a user message
	python3 -c 'import json,sys; d={"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":sys.argv[1]}],"max_tokens":50}
if len(sys.argv)>2: d["model"]=sys.argv[2]
print(json.dumps(d))' "$@"
}
# SSE assertion: sseok FILE 'python expression over ev (the data: payloads in
# order, [DONE] included) and js (the JSON ones, parsed)'
sseok() { python3 -c 'import json,sys
ev=[l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
js=[json.loads(e) for e in ev if e!="[DONE]"]
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null; }
smsg() {   # smsg USER-TEXT [STREAM_OPTIONS-JSON] -> a stream request body
	python3 -c 'import json,sys; d={"model":"gpt-s","stream":True,"messages":[{"role":"user","content":sys.argv[1]}]}
if len(sys.argv)>2: d["stream_options"]=json.loads(sys.argv[2])
print(json.dumps(d))' "$@"
}
P1=$(free_port); P2=$(free_port); P3=$(free_port)
U=http://127.0.0.1:$P1; C=$U/v1/chat/completions
# post USER-TEXT [curl args...] -> body in $TMP/b, headers in $TMP/h, prints status
post() { local t=$1; shift; curl -s -o "$TMP/b" -D "$TMP/h" -w '%{http_code}' -H 'Content-Type: application/json' -d "$(msg "$t" gpt-test)" "$@" "$C"; }

start_mock a "$P1"; ok $? "mock starts and answers on 127.0.0.1:$P1"
grep -q "^mock-upstream listening on 127.0.0.1:$P1\$" "$TMP/a.log"; ok $? "startup line on stderr"
[ "$(cat "$TMP/a.pid" 2>/dev/null)" -gt 0 ] 2>/dev/null; ok $? "pidfile written"

s=$(post "hello world")
ok $(( s != 200 )) "normal request: 200" "status $s"
pyok "$TMP/b" 'j["object"]=="chat.completion" and j["id"].startswith("chatcmpl-mock-") and isinstance(j["created"],int) and j["model"]=="gpt-test" and j["choices"][0]["message"]=={"role":"assistant","content":"echo: hello world"} and j["choices"][0]["finish_reason"]=="stop" and j["choices"][0]["index"]==0'
ok $? "echo answer has the OpenAI shape" "$(cat "$TMP/b")"
# 14 + 11 characters -> ceil(25/4)=7; "echo: hello world" 17 -> 5
pyok "$TMP/b" 'j["usage"]=={"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}'
ok $? "usage arithmetic 7+5=12" "$(cat "$TMP/b")"
grep -qi '^content-type: application/json' "$TMP/h"; ok $? "application/json"
curl -s -o "$TMP/b" -d '{"messages":[{"role":"user","content":"x"}]}' "$U/chat/completions"
pyok "$TMP/b" 'j["model"]=="mock-model" and j["choices"][0]["message"]["content"]=="echo: x" and j["usage"]["prompt_tokens"]==1'
ok $? "/chat/completions alias, default model mock-model, min 1 token" "$(cat "$TMP/b")"

s=$(curl -s -o "$TMP/b" -w '%{http_code}' -d '{"messages": [' "$C")
[ "$s" = 400 ] && pyok "$TMP/b" 'j["error"]["type"]=="invalid_request_error" and j["error"]["message"]'
ok $? "bad JSON: 400 invalid_request_error" "$s $(cat "$TMP/b")"

for code in 500 503; do
	s=$(post "boom [[fault:$code]]")
	[ "$s" = "$code" ] && pyok "$TMP/b" 'j["error"]["message"] and j["error"]["type"]'
	ok $? "fault:$code -> $code with an error object" "$s $(cat "$TMP/b")"
done
s=$(post "slow down [[fault:429]]")
[ "$s" = 429 ] && grep -qi '^retry-after: 1' "$TMP/h" && pyok "$TMP/b" '"error" in j'
ok $? "fault:429 -> 429 + Retry-After: 1" "$s"
s=$(post "slow down [[fault:429:7]]")
[ "$s" = 429 ] && grep -qi '^retry-after: 7' "$TMP/h"; ok $? "fault:429:7 -> Retry-After: 7" "$s"

got=""; for i in 1 2 3; do got="$got $(post "retry me [[fault:flaky:2]]")"; done
[ "$got" = " 500 500 200" ]; ok $? "flaky:2 -> 500 500 200" "$got"
s=$(post "other prompt [[fault:flaky:2]]"); [ "$s" = 500 ]; ok $? "flaky counts per distinct prompt" "$s"

s=$(post "x [[fault:malformed]]")
[ "$s" = 200 ] && grep -qi '^content-type: application/json' "$TMP/h" && [ "$(cat "$TMP/b")" = '{"choices": [ {"message": ' ] && ! pyok "$TMP/b" True
ok $? "malformed: 200 application/json, invalid JSON" "$s $(cat "$TMP/b")"
s=$(post "x [[fault:nonjson]]")
[ "$s" = 200 ] && grep -qi '^content-type: text/html' "$TMP/h" && [ "$(cat "$TMP/b")" = '<html>gateway</html>' ]
ok $? "nonjson: 200 text/html gateway page" "$s"
s=$(post "x [[fault:nochoices]]")
[ "$s" = 200 ] && pyok "$TMP/b" '"choices" not in j and j["usage"]["total_tokens"]>0 and j["object"]=="chat.completion"'
ok $? "nochoices: 200 without choices, with usage" "$s $(cat "$TMP/b")"
s=$(post "x [[fault:nousage]]")
[ "$s" = 200 ] && pyok "$TMP/b" '"usage" not in j and j["choices"][0]["message"]["content"].startswith("echo: x")'
ok $? "nousage: 200 with choices, without usage" "$s $(cat "$TMP/b")"
s=$(post "x [[content:forty-two, said the mock]]")
pyok "$TMP/b" 'j["choices"][0]["message"]["content"]=="forty-two, said the mock" and j["usage"]["completion_tokens"]==6'
ok $? "content marker sets the content (24 chars -> 6 tokens)" "$(cat "$TMP/b")"
post "x [[fault:truncated]]" >/dev/null; rc=$?
[ "$rc" = 18 ]; ok $? "truncated: curl transfer error 18" "curl exit $rc"
s=$(post "x [[fault:bogus]]"); [ "$s" = 400 ]; ok $? "unknown fault marker: 400" "$s"

t=$(curl -s -o /dev/null -w '%{time_total}' -d "$(msg 'wait [[latency:200]]')" "$C")
python3 -c "import sys; sys.exit(0 if float('$t') >= 0.18 else 1)"; ok $? "latency:200 takes >= 0.18 s" "$t s"

curl -s -m 1 -o /dev/null -d "$(msg 'stuck [[fault:hang]]')" "$C"; rc=$?
[ "$rc" = 28 ]; ok $? "hang: curl -m 1 times out (28)" "curl exit $rc"
t=$(curl -s -o "$TMP/b" -w '%{time_total}' -d "$(msg quick)" "$C")
python3 -c "import sys; sys.exit(0 if float('$t') < 0.5 else 1)" && pyok "$TMP/b" 'j["choices"][0]["message"]["content"]=="echo: quick"'
ok $? "server answers others at once while a request hangs" "$t s"

curl -sv -o /dev/null -o /dev/null -d "$(msg ka)" "$C" "$C" 2>"$TMP/v"
[ "$(grep -c '^< HTTP/1.1 200' "$TMP/v")" = 2 ] && grep -qi 're-using existing connection' "$TMP/v"
ok $? "keep-alive: two requests on one connection" "$(grep -E '^(\*|<) ' "$TMP/v" | head -20 | tr '\n' '|')"
curl -sv -o /dev/null -d '{bad' "$C" --next -o /dev/null -d "$(msg ka2)" "$C" --next -o /dev/null "$U/nope" --next -o /dev/null -d "$(msg 'e [[fault:500]]')" "$C" --next -o /dev/null -d "$(msg ka3)" "$C" 2>"$TMP/v"
[ "$(grep -c -i 're-using existing connection' "$TMP/v")" = 4 ] && [ "$(grep -c '^< HTTP/1.1 ' "$TMP/v")" = 5 ] && [ "$(grep -c '^< HTTP/1.1 200' "$TMP/v")" = 2 ]
ok $? "keep-alive survives 400, 404 and 500 answers" "$(grep -E '^(\* Re|< HTTP)' "$TMP/v" | tr '\n' '|')"
big=$(python3 -c 'import json; print(json.dumps({"messages":[{"role":"user","content":"y"*2000000}]}))')
t=$(printf '%s' "$big" | curl -s -o "$TMP/b" -w '%{time_total}' -H 'Content-Type: application/json' --data-binary @- "$C")
python3 -c "import sys; sys.exit(0 if float('$t') < 0.9 else 1)" && pyok "$TMP/b" 'j["usage"]["prompt_tokens"]==500000'
ok $? "2 MB body (Expect: 100-continue) answered promptly" "$t s"

curl -s -o "$TMP/b" "$U/_calls"; pyok "$TMP/b" 'j["total"]>=20 and 0<j["completions"]<j["total"]'
ok $? "/_calls counts" "$(cat "$TMP/b")"
curl -s -o "$TMP/b" -X POST "$U/_reset"; pyok "$TMP/b" 'j=={"ok":True}'; ok $? "/_reset -> {\"ok\":true}"
# (the hang request above may still be in flight here: in_flight/peak are checked on mock "s")
curl -s -o "$TMP/b" "$U/_calls"; pyok "$TMP/b" 'j["total"]==0 and j["completions"]==0 and sorted(j)==["completions","in_flight","peak","total"]'; ok $? "/_reset zeroes /_calls" "$(cat "$TMP/b")"
s=$(post "retry me [[fault:flaky:2]]"); [ "$s" = 500 ]; ok $? "/_reset zeroes flaky counters" "$s"
post "one" >/dev/null; post "two [[fault:500]]" >/dev/null; curl -s -o /dev/null -d '{' "$C"
curl -s -o "$TMP/b" "$U/_calls"; pyok "$TMP/b" 'j["total"]==4 and j["completions"]==1'
ok $? "/_calls: total counts faults and 400s, completions only good answers" "$(cat "$TMP/b")"

post "look at me" -H 'Authorization: Bearer sk-SEKRIT-123' >/dev/null
curl -s -o "$TMP/b" "$U/_last"
pyok "$TMP/b" 'j["model"]=="gpt-test" and j["messages"][1]=={"role":"user","content":"look at me"} and j["max_tokens"]==50 and j["had_auth"] is True' && ! grep -q SEKRIT "$TMP/b"
ok $? "/_last shows what was sent, had_auth true, no key" "$(cat "$TMP/b")"
curl -s -o /dev/null -d '{"messages":[{"role":"user","content":"anon"}]}' "$C"; curl -s -o "$TMP/b" "$U/_last"
pyok "$TMP/b" 'j["had_auth"] is False and j["model"] is None and j["max_tokens"] is None'; ok $? "/_last had_auth false" "$(cat "$TMP/b")"
s=$(curl -s -o "$TMP/b" -w '%{http_code}' "$U/v2/whatever"); [ "$s" = 404 ] && pyok "$TMP/b" '"error" in j'
ok $? "unknown path: 404 JSON" "$s"

start_mock k "$P2" --expect-key s3cret-key --content "fixed text" --latency-ms 100; ok $? "second mock with --expect-key --content --latency-ms"
K=http://127.0.0.1:$P2/v1/chat/completions
s=$(curl -s -o "$TMP/b" -w '%{http_code}' -d "$(msg hi)" "$K"); [ "$s" = 401 ] && pyok "$TMP/b" 'j["error"]["type"]=="invalid_request_error"'
ok $? "--expect-key: no Authorization -> 401" "$s"
s=$(curl -s -o "$TMP/b" -w '%{http_code}' -H 'Authorization: Bearer wrong' -d "$(msg hi)" "$K"); [ "$s" = 401 ]
ok $? "--expect-key: wrong key -> 401" "$s"
r=$(curl -s -o "$TMP/b" -w '%{http_code} %{time_total}' -H 'Authorization: Bearer s3cret-key' -d "$(msg hi)" "$K")
[ "${r% *}" = 200 ] && pyok "$TMP/b" 'j["choices"][0]["message"]["content"]=="fixed text" and j["usage"]["completion_tokens"]==3' \
	&& python3 -c "import sys; sys.exit(0 if float('${r#* }') >= 0.09 else 1)"
ok $? "--expect-key right key -> 200 with --content text after --latency-ms" "$r $(cat "$TMP/b")"

# ---- concurrency: in_flight and peak (a fresh mock, nothing hanging)
start_mock s "$P3"; ok $? "third mock for concurrency and streams"
S=http://127.0.0.1:$P3; SC=$S/v1/chat/completions
curl -s -o "$TMP/b" "$S/_calls"; pyok "$TMP/b" 'j=={"total":0,"completions":0,"in_flight":0,"peak":0}'
ok $? "/_calls at start: in_flight 0, peak 0" "$(cat "$TMP/b")"
# wait_calls EXPR: poll /_calls into $TMP/b until EXPR holds (at most 3 s)
wait_calls() { local i; for i in $(seq 30); do curl -s -o "$TMP/b" "$S/_calls"; pyok "$TMP/b" "$1" && return 0; sleep 0.1; done; return 1; }
cpids=()
for i in 1 2 3 4 5 6 7 8; do msg "c$i [[latency:2000]]" >"$TMP/c$i.json"; done
for i in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null -d "@$TMP/c$i.json" "$SC" & cpids+=($!); done
wait_calls 'j["total"]==8'
pyok "$TMP/b" 'j["in_flight"]==8 and j["peak"]==8 and j["total"]==8'
ok $? "8 requests in flight: in_flight 8, peak 8" "$(cat "$TMP/b")"
wait "${cpids[@]}"
curl -s -o "$TMP/b" "$S/_calls"; pyok "$TMP/b" 'j["in_flight"]==0 and j["peak"]==8 and j["completions"]==8'
ok $? "after they finish: in_flight 0, the peak stays 8" "$(cat "$TMP/b")"
cpids=()
for i in 1 2 3; do msg "r$i [[latency:2000]]" >"$TMP/r$i.json"; done
for i in 1 2 3; do curl -s -o /dev/null -d "@$TMP/r$i.json" "$SC" & cpids+=($!); done
wait_calls 'j["in_flight"]==3'
curl -s -o /dev/null -X POST "$S/_reset"; curl -s -o "$TMP/b" "$S/_calls"
pyok "$TMP/b" 'j=={"total":0,"completions":0,"in_flight":3,"peak":3}'
ok $? "/_reset with 3 in flight: peak = in_flight = 3" "$(cat "$TMP/b")"
wait "${cpids[@]}"
curl -s -o "$TMP/b" "$S/_calls"; pyok "$TMP/b" 'j["in_flight"]==0 and j["peak"]==3 and j["completions"]==3'
ok $? "those 3 finish after the reset: counted, peak 3" "$(cat "$TMP/b")"

# 1,200 connections at once, each answered after 2 s (1 s of slack for the
# client to open them all on a busy machine): all 200, all in flight together
cat >"$TMP/burst.py" <<'PY'
import asyncio, json, resource, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def one(i):
    t = time.monotonic()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"messages": [{"role": "user", "content": "b%d [[latency:2000]]" % i}]}).encode()
    w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    status = int((await r.readline()).split()[1])
    n = 0
    while (line := await r.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    await r.readexactly(n)
    w.close()
    return status, time.monotonic() - t
async def main():
    res = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    good = sorted(d for r in res if not isinstance(r, BaseException) and r[0] == 200 for d in [r[1]])
    print(json.dumps({"n": n, "ok": len(good), "min": good[0] if good else None,
                      "p50": good[len(good) // 2] if good else None, "max": good[-1] if good else None}))
asyncio.run(main())
PY
curl -s -o /dev/null -X POST "$S/_reset"
python3 "$TMP/burst.py" "$P3" 1200 >"$TMP/burst.json" 2>"$TMP/burst.err"
curl -s -o "$TMP/b" "$S/_calls"
pyok "$TMP/burst.json" 'j["ok"]==1200 and j["min"]>=1.99 and j["max"]<5.0' && pyok "$TMP/b" 'j["peak"]>=1100 and j["in_flight"]==0'
ok $? "1,200 connections at once with 2 s latency: all 200 within 5 s, peak >= 1,100" "$(cat "$TMP/burst.json" "$TMP/b") $(tail -n 2 "$TMP/burst.err")"

# ---- streaming
curl -s -o /dev/null -X POST "$S/_reset"
r=$(curl -sN -o "$TMP/b" -D "$TMP/h" -w '%{http_code}' -d "$(smsg 'alpha beta gamma delta')" "$SC")
[ "$r" = 200 ] && grep -qi '^content-type: text/event-stream' "$TMP/h" && grep -qi '^transfer-encoding: chunked' "$TMP/h"
ok $? "stream: 200 text/event-stream, chunked" "$r $(tr -d '\r' <"$TMP/h" | tr '\n' '|')"
sseok "$TMP/b" 'ev[-1]=="[DONE]" and all(j["object"]=="chat.completion.chunk" and j["id"]==js[0]["id"] and j["model"]=="gpt-s" and "usage" not in j for j in js)'
ok $? "stream: chat.completion.chunk events with one id, then data: [DONE], no usage" "$(head -c 600 "$TMP/b")"
sseok "$TMP/b" 'js[0]["choices"][0]["delta"]=={"role":"assistant","content":""} and js[-1]["choices"][0]["delta"]=={} and js[-1]["choices"][0]["finish_reason"]=="stop" and all(j["choices"][0]["finish_reason"] is None for j in js[:-1])'
ok $? "stream: a role chunk first, finish_reason stop last" "$(head -c 600 "$TMP/b")"
sseok "$TMP/b" 'len(js[1:-1])>=5 and "".join(j["choices"][0]["delta"]["content"] for j in js[1:-1])=="echo: alpha beta gamma delta"'
ok $? "stream: the content in >= 5 pieces (words) that join back exactly" "$(cat "$TMP/b")"
curl -sN -o "$TMP/b" -d "$(smsg 'one two three [[content:x y z]]' '{"include_usage":true}')" "$SC"
sseok "$TMP/b" 'js[-1]["choices"]==[] and js[-1]["usage"]=={"prompt_tokens":8,"completion_tokens":2,"total_tokens":10} and js[-2]["choices"][0]["finish_reason"]=="stop" and all(j["usage"] is None for j in js[:-1]) and [j["choices"][0]["delta"].get("content") for j in js[1:-2]]==["x ","y ","z"] and ev[-1]=="[DONE]"'
ok $? "stream + include_usage: usage chunk (choices []) after the stop chunk, usage null before; content marker" "$(cat "$TMP/b")"
curl -sN -o "$TMP/b" -d "$(smsg 'a b c [[fault:nousage]]' '{"include_usage":true}')" "$SC"
sseok "$TMP/b" 'ev[-1]=="[DONE]" and js[-1]["choices"][0]["finish_reason"]=="stop" and not any(j.get("usage") for j in js)'
ok $? "stream + include_usage + nousage: no usage chunk" "$(cat "$TMP/b")"
nev=$(grep -c '^data: {' "$TMP/b")
curl -s -o "$TMP/b" "$S/_calls"; pyok "$TMP/b" 'j["completions"]==3 and j["total"]==3'
ok $? "streams count as completions" "$(cat "$TMP/b")"
curl -s -o "$TMP/l" "$S/_last"
pyok "$TMP/l" 'j["stream"] is True and j["stream_options"]=={"include_usage":True} and j["model"]=="gpt-s" and len(j["chunk_times"])=='"$nev"' and j["chunk_times"]==sorted(j["chunk_times"])'
ok $? "/_last: stream, stream_options, one chunk_times entry per chunk event" "$(cat "$TMP/l")"

t0=$(date +%s.%N)
r=$(curl -sN -o "$TMP/b" -w '%{time_starttransfer} %{time_total}' -d "$(smsg 'p [[first-chunk-ms:300]] [[chunk-ms:100]] [[content:q r s t u]]')" "$SC")
curl -s -o "$TMP/l" "$S/_last"
python3 - "$TMP/l" "$t0" "${r% *}" "${r#* }" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); t0, ttfb, total = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ct = j["chunk_times"]
gaps = [b - a for a, b in zip(ct, ct[1:])]
# 1 role + 5 pieces + stop = 7 events, 6 gaps of 100 ms; headers at once, first event after 300 ms
ok = (len(ct) == 7 and ttfb < 0.25 and ct[0] - t0 >= 0.29 and all(0.09 <= g < 0.3 for g in gaps)
      and total >= 0.29 + 0.6 and total < 2.5)
sys.exit(0 if ok else 1)
PY
ok $? "first-chunk-ms:300 and chunk-ms:100: headers at once, first event after 300 ms, 100 ms apart" "$r $(cat "$TMP/l")"

curl -sN -o "$TMP/b" -d "$(smsg 'one two three four [[fault:midstream]]')" "$SC"; rc=$?
[ "$rc" = 18 ] && sseok "$TMP/b" 'len(ev)==2 and "role" in js[0]["choices"][0]["delta"] and js[1]["choices"][0]["delta"]=={"content":"echo: "}'
ok $? "midstream: 2 chunk events, then the connection is cut (curl 18), no [DONE]" "rc $rc $(cat "$TMP/b")"
curl -s -o "$TMP/b" -d "$(msg 'x y z [[fault:midstream]]')" "$SC"; rc=$?
[ "$rc" = 18 ]; ok $? "midstream without stream: as truncated (curl 18)" "rc $rc"
curl -sN -o "$TMP/b" -d "$(smsg 'x [[fault:malformed]]')" "$SC"
! sseok "$TMP/b" True && grep -q '^data: {"choices": \[ {"delta": $' "$TMP/b" && [ "$(tail -n 2 "$TMP/b" | head -n 1)" = "data: [DONE]" ]
ok $? "stream + malformed: a broken JSON event, then [DONE]" "$(cat "$TMP/b")"
s=$(curl -s -o "$TMP/b" -w '%{http_code}' -d "$(smsg 'x [[fault:503]]')" "$SC")
[ "$s" = 503 ] && pyok "$TMP/b" '"error" in j'; ok $? "stream + fault:503: a JSON 503, no stream" "$s"
s=$(curl -s -o "$TMP/b" -w '%{http_code}' -d "$(smsg 'x [[fault:nochoices]]')" "$SC"); [ "$s" = 400 ]
ok $? "stream + nochoices: 400 (not supported)" "$s"
s=$(curl -s -o "$TMP/b" -w '%{http_code}' -d '{"stream":"yes","messages":[{"role":"user","content":"x"}]}' "$SC"); [ "$s" = 400 ]
ok $? "stream not a boolean: 400" "$s"
s=$(curl -s -o "$TMP/b" -w '%{http_code}' -d "$(smsg 'x [[chunk-ms:abc]]')" "$SC"); [ "$s" = 400 ]
ok $? "bad chunk-ms marker: 400" "$s"
curl -sv -N -o "$TMP/b1" -d "$(smsg 'ka one two')" "$SC" --next -N -o "$TMP/b2" -d "$(smsg 'ka three four')" "$SC" 2>"$TMP/v"
grep -qi 're-using existing connection' "$TMP/v" && sseok "$TMP/b1" 'ev[-1]=="[DONE]"' && sseok "$TMP/b2" 'ev[-1]=="[DONE]" and js[2]["choices"][0]["delta"]["content"]=="ka "'
ok $? "keep-alive: two streams on one connection" "$(grep -E '^(\* Re|< HTTP)' "$TMP/v" | tr '\n' '|')"
curl -sN -o /dev/null -d "$(smsg 'in flight [[chunk-ms:200]]')" "$SC" & cpid=$!
sleep 0.3
curl -s -o "$TMP/b" "$S/_calls"; curl -s -o "$TMP/l" "$S/_last"
pyok "$TMP/b" 'j["in_flight"]==1' && pyok "$TMP/l" '1<=len(j["chunk_times"])<6'
ok $? "a stream counts in flight until it ends; chunk_times grows while it streams" "$(cat "$TMP/b") $(cat "$TMP/l")"
wait "$cpid"
curl -s -o "$TMP/b" "$S/_calls"; curl -s -o "$TMP/l" "$S/_last"
pyok "$TMP/b" 'j["in_flight"]==0' && pyok "$TMP/l" 'len(j["chunk_times"])==6'
ok $? "... and leaves in_flight at its end (6 chunk events)" "$(cat "$TMP/b") $(cat "$TMP/l")"
curl -s -o /dev/null -d "$(msg 'not streamed')" "$SC"; curl -s -o "$TMP/l" "$S/_last"
pyok "$TMP/l" 'j["stream"] is False and j["stream_options"] is None and len(j["chunk_times"])==6'
ok $? "/_last after a non-streamed request: stream false, chunk_times of the last stream" "$(cat "$TMP/l")"
curl -s -o /dev/null -X POST "$S/_reset"; curl -s -o "$TMP/l" "$S/_last"; pyok "$TMP/l" 'j=={}'
ok $? "/_reset clears /_last and chunk_times" "$(cat "$TMP/l")"
grep -q 'POST /v1/chat/completions 200 fault=stream,midstream' "$TMP/s.log" && ! grep -q -e alpha -e 'ka one' "$TMP/s.log"
ok $? "stream log lines: fault=stream,...; no contents" "$(grep stream "$TMP/s.log" | head -3)"

! grep -q -e s3cret -e SEKRIT -e 'hello world' -e 'look at me' "$TMP/a.log" "$TMP/k.log"
ok $? "logs hold neither keys nor message contents"
grep -q 'POST /v1/chat/completions 500 fault=500' "$TMP/a.log" && grep -q 'POST /v1/chat/completions 401 fault=auth' "$TMP/k.log"
ok $? "one log line per request with method, path, status, fault"

python3 "$MOCK" --port "$(free_port)" --host 0.0.0.0 2>"$TMP/nl.log"; rc=$?
[ "$rc" -ne 0 ] && grep -q 'non-loopback' "$TMP/nl.log"; ok $? "non-loopback --host refused" "exit $rc"

# SIGTERM while a request hangs: prompt clean exit, pidfile removed
curl -s -m 5 -o /dev/null -d "$(msg 'stuck [[fault:hang]]')" "$K" -H 'Authorization: Bearer s3cret-key' & cpid=$!
sleep 0.3
kpid=$(cat "$TMP/k.pid"); kill -TERM "$kpid"
for i in $(seq 30); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$kpid" 2>/dev/null && [ ! -f "$TMP/k.pid" ]; ok $? "SIGTERM with a hanging request: exit within 3 s, pidfile removed"
wait "$kpid" 2>/dev/null; rc=$?; [ "$rc" = 0 ]; ok $? "exit status 0 after SIGTERM" "exit $rc"
wait "$cpid" 2>/dev/null

echo "1..$n"
[ "$failed" -eq 0 ]
