#!/usr/bin/env bash
# bench/streams.sh - the streaming benchmarks of issue 12 (SPEC §10), as root:
#
#     bash bench/streams.sh [DURATION_SECONDS]      # default 10
#
# Builds quotacache -O2 -g into bench/out/build (as bench/run.sh does), starts a
# private MariaDB, the mock upstream and lighttpd with the default pool of 4
# workers under bench/out/streams, then measures with bench/stream_client.py (a
# closed loop of streamed requests; time to the first SSE event and to [DONE]):
#   stream_mock_256   straight at the mock: first chunk after 1 s, then a chunk
#                     every 50 ms (the floor: what the mock alone takes)
#   stream_miss_256   POST /v1/chat/completions, stream, a new prompt each time,
#                     through lighttpd + quotacache, same mock (c = 256)
#   stream_mock_1024  straight at the mock, c = 1024 (the floor there)
#   stream_miss_1024  the same at c = 1024: streams in flight at once, worker RSS
# The misses are spread over 64 enterprise users (connection i uses user i mod 64).
# and with wrk (c = 32): a cached stream replayed (the same deterministic
# request, stream: true) against a /api/v1/generate hit.
# Writes bench/out/streams.md and prints it.  Every server is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
BENCH=$ROOT/bench
OUT=$BENCH/out
VAR=$OUT/streams
BUILD=$OUT/build
DURATION=${1:-10}
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "usage: bash bench/streams.sh [DURATION_SECONDS]" >&2; exit 2; }
((EUID == 0)) || { echo "bench: run as root" >&2; exit 1; }
say() { echo "bench: $*" >&2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cleanup() {
	local rc=$?
	trap - EXIT
	bash "$ROOT/scripts/lighttpd.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mock.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mariadb.sh" stop "$VAR" >/dev/null 2>&1 || true
	exit "$rc"
}
trap cleanup EXIT

bash "$ROOT/scripts/deps.sh"
command -v wrk >/dev/null || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -q --no-install-recommends wrk >/dev/null; }
say "building quotacache -O2 -g into $BUILD"
bash "$ROOT/scripts/build.sh" "$BUILD" CFLAGS="-O2 -g"
WORKER=$BUILD/src/quotacache-fcgi
CTL=$BUILD/src/quotacachectl

rm -rf "$VAR"
mkdir -p "$VAR"
bash "$ROOT/scripts/mariadb.sh" start "$VAR" >&2
MOCKPORT=$(free_port)
bash "$ROOT/scripts/mock.sh" start "$VAR" "$MOCKPORT" --latency-ms 0 >&2
CONF=$VAR/quotacache.conf
{ base_config "$VAR" "$ROOT"
  echo "upstream_base_url = http://127.0.0.1:$MOCKPORT/v1"
  echo "upstream_model = mock-model"
  echo "upstream_prices = mock-model:0.00015:0.0006"
  echo "upstream_timeout_ms = 30000"
  echo "log_level = warn"
  # settings to try, as bench/run.sh (BENCH_QC_SET="batch_wait_ms = 0")
  [[ -z ${BENCH_QC_SET:-} ]] || tr ';' '\n' <<<"$BENCH_QC_SET"; } >"$CONF"
export QC_CONFIG=$CONF
"$CTL" migrate >&2
MISS_KEY=$(for i in $(seq 1 64); do "$CTL" user add --email "miss$i@bench.invalid" --plan enterprise 2>/dev/null; done | paste -sd,)
HIT_KEY=$("$CTL" user add --email hit@bench.invalid --plan pro_annual 2>/dev/null)
PORT=$(free_port)
bash "$ROOT/scripts/lighttpd.sh" start "$VAR" "$PORT" 4 "$WORKER" "$CONF" "$ROOT/www" >&2
BASE=http://127.0.0.1:$PORT

worker_rss_kib() {   # summed VmRSS of the quotacache workers
	local p s=0 r
	for p in $(pgrep -f "$WORKER" || true); do
		r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
		s=$((s + r))
	done
	echo "$s"
}
mock_peak() { curl -s "http://127.0.0.1:$MOCKPORT/_calls" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("peak", 0))'; }
mock_reset() { curl -s -X POST "http://127.0.0.1:$MOCKPORT/_reset" >/dev/null; }

declare -A PEAK=() RSS=()
run_stream() {   # NAME URL KEY C
	local peak_rss=0 r sampler out
	mock_reset
	out=$OUT/streams-$1.json
	( while :; do worker_rss_kib; sleep 0.5; done ) >"$OUT/streams-$1.rss" &
	sampler=$!
	say "$1: c=$4 for ${DURATION}s"
	python3 "$BENCH/stream_client.py" "$2" "$3" "$4" "$DURATION" --warmup 2 --unique >"$out"
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	peak_rss=$(sort -n "$OUT/streams-$1.rss" | tail -n 1)
	PEAK[$1]=$(mock_peak)
	RSS[$1]=${peak_rss:-0}
}
run_stream stream_mock_256 "http://127.0.0.1:$MOCKPORT" none 256
run_stream stream_miss_256 "$BASE" "$MISS_KEY" 256
run_stream stream_mock_1024 "http://127.0.0.1:$MOCKPORT" none 1024
run_stream stream_miss_1024 "$BASE" "$MISS_KEY" 1024

# the replay: one deterministic streamed request (a hit after the first)
HIT_BODY='{"model":"mock-model","messages":[{"role":"user","content":"replay me: the quick brown fox jumps over the lazy dog, twice, and then a third time for luck"}],"stream":true,"temperature":0}'
curl -sS -o /dev/null -H "Authorization: Bearer $HIT_KEY" -H 'Content-Type: application/json' -d "$HIT_BODY" "$BASE/v1/chat/completions"
GEN_BODY='{"task":"bench","prompt":"replay me: the quick brown fox jumps over the lazy dog, twice, and then a third time for luck"}'
curl -sS -o /dev/null -H "Authorization: Bearer $HIT_KEY" -H 'Content-Type: application/json' -d "$GEN_BODY" "$BASE/api/v1/generate"
wrk_post() {   # NAME PATH BODY
	local lua=$OUT/streams-$1.lua
	printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer %s"\n' \
		"$3" "$HIT_KEY" >"$lua"
	wrk -t2 -c32 -d2s -s "$lua" "$BASE$2" >/dev/null
	wrk -t2 -c32 -d"${DURATION}s" --latency -s "$lua" "$BASE$2" >"$OUT/streams-$1.wrk"
}
wrk_post replay_stream /v1/chat/completions "$HIT_BODY"
wrk_post generate_hit /api/v1/generate "$GEN_BODY"
hit_stats() {   # req/s p99 non2xx of a wrk output
	awk '/^Requests\/sec:/ { r = $2 } /^ +99%/ { p = $2 } /Non-2xx/ { n = $5 } END { printf "%s %s %d\n", r, p, n }' "$1"
}
read -r rs_rps rs_p99 rs_bad <<<"$(hit_stats "$OUT/streams-replay_stream.wrk")"
read -r gh_rps gh_p99 gh_bad <<<"$(hit_stats "$OUT/streams-generate_hit.wrk")"

{
	echo "# Streaming benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$ROOT" rev-parse --short HEAD))"
	echo
	echo "bench/stream_client.py: a closed loop of streamed requests (a new prompt each), ${DURATION} s after 2 s"
	echo "of warm-up; the mock sends its first chunk 1 s after the request, then a chunk every 50 ms (7 words:"
	echo "about 1.4 s a stream). TTFB: the first SSE event at the client. Default pool: 4 workers, lighttpd; the misses spread over 64 users."
	echo
	echo "| subject | c | streams done | errors | req/s | TTFB p50 ms | TTFB p99 ms | total p50 ms | total p99 ms | peak open at client | mock peak in flight | workers RSS peak MiB |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for n in stream_mock_256 stream_miss_256 stream_mock_1024 stream_miss_1024; do
		python3 - "$n" "$(cat "$OUT/streams-$n.json")" "${PEAK[$n]}" "${RSS[$n]}" <<'PY'
import json, sys
n, j, peak, rss = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
print(f"| {n} | {j['conns']} | {j['requests']:,} | {j['errors']} | {j['req_per_s']} | {j['ttfb_p50_ms']} | "
      f"{j['ttfb_p99_ms']} | {j['total_p50_ms']} | {j['total_p99_ms']} | {j['peak_open_streams']} | {peak} | "
      f"{'-' if n.startswith('stream_mock') else format(rss / 1024, '.1f')} |")
PY
	done
	echo
	python3 - "$(cat "$OUT/streams-stream_mock_256.json")" "$(cat "$OUT/streams-stream_miss_256.json")" <<'PY'
import json, sys
m, q = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if m["ttfb_p50_ms"] and q["ttfb_p50_ms"]:
    d = q["ttfb_p50_ms"] - m["ttfb_p50_ms"]
    print(f"TTFB p50 through quotacache - straight at the mock, c = 256: **{d:+.1f} ms** (target: <= +5 ms): "
          f"**{'met' if d <= 5 else 'not met'}**.\n")
PY
	echo "| cached replay (wrk -t2 -c32, ${DURATION} s) | req/s | p99 | non-2xx |"
	echo "|---|---:|---:|---:|"
	echo "| POST /v1/chat/completions, stream: true, a hit (SSE replay) | $rs_rps | $rs_p99 | $rs_bad |"
	echo "| POST /api/v1/generate, a hit (one JSON) | $gh_rps | $gh_p99 | $gh_bad |"
} >"$OUT/streams.md"
cat "$OUT/streams.md"
