#!/usr/bin/env bash
# bench/run.sh - the SPEC §8 benchmarks in one command (as root, this machine):
#
#     bash bench/run.sh [DURATION_SECONDS]        # default 15
#     BENCH_ONLY="F0 status cache_get_1k" bash bench/run.sh 5   # a subset
#     bash bench/run.sh --only inflight           # the same with --only (a group)
#
# Builds quotacache optimised (-O2 -g, no sanitizers) into bench/out/build and
# the floors (bench/floors.c) into bench/out; starts a fresh private MariaDB in
# bench/out/var (unix socket only) and the mock upstream (tests/mock_upstream.py,
# 0 ms latency); migrates; creates the floor table, the bench users and the
# cache entries; then measures each subject behind its own lighttpd (4 workers,
# free loopback port): 2 s warm-up, then wrk -t2 -c32 -d${DURATION}s --latency.
# Last, unless BENCH_RSS=0, the worker-RSS run: ~200k mixed requests with the
# workers' RSS sampled after ~100k and at the end. For portkey_miss (the SPEC §8
# Node comparison) it installs the Portkey gateway from npm into
# bench/out/portkey if missing and runs it (bench/portkey.sh) against the same
# mock. Prints the report (ratios to
# the floors measured in this run) and writes bench/out/results.md and
# bench/out/results.json (raw wrk output in bench/out/wrk/). Every server it
# starts is stopped on exit, also on failure and Ctrl-C.
#
# The in-flight subjects (SPEC §8/§9; group "inflight"): /generate misses and
# Portkey against a second mock answering after 1 s, at c = 64, 256, 1024
# (wrk --timeout 10s), with the RSS of the workers (or node) sampled during
# each run; see "Generations in flight" in bench/README.md.
#
# Options: --only NAMES (as BENCH_ONLY; commas or spaces; group names allowed).
# Env: BENCH_ONLY (space-separated subject or group names; default all; the floors a
# target needs are always measured), BENCH_RSS (1; 0 skips the RSS run),
# BENCH_RSS_REQUESTS (200000), BENCH_RSS_REST (3), BENCH_WORKERS (4), BENCH_THREADS (2),
# BENCH_CONNS (32), BENCH_WARMUP (2), BENCH_RESERVE_USERS (32),
# BENCH_INFLIGHT_DURATION (10), BENCH_INFLIGHT_WARMUP (2), BENCH_INFLIGHT_LATENCY_MS (1000).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"   # base_config; the die() below replaces lib.sh's
BENCH=$ROOT/bench
OUT=$BENCH/out
VAR=$OUT/var
while (($#)); do
	case $1 in
	--only) (($# >= 2)) || { echo "bench: --only needs subject names" >&2; exit 2; }
		BENCH_ONLY=${2//,/ }; shift 2 ;;
	--only=*) BENCH_ONLY=${1#--only=}; BENCH_ONLY=${BENCH_ONLY//,/ }; shift ;;
	--) shift; break ;;
	-*) echo "usage: bash bench/run.sh [--only NAMES] [DURATION_SECONDS]" >&2; exit 2 ;;
	*) break ;;
	esac
done
DURATION=${1:-15}
WORKERS=${BENCH_WORKERS:-4}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-32}
WARMUP=${BENCH_WARMUP:-2}
NRESERVE=${BENCH_RESERVE_USERS:-32}
RSS_REQUESTS=${BENCH_RSS_REQUESTS:-200000}
RSS_REST=${BENCH_RSS_REST:-3}   # seconds without load before an "at rest" sample
IF_DURATION=${BENCH_INFLIGHT_DURATION:-10}     # the in-flight subjects: seconds of measurement,
IF_WARMUP=${BENCH_INFLIGHT_WARMUP:-2}          # of warm-up (same c),
IF_LATENCY_MS=${BENCH_INFLIGHT_LATENCY_MS:-1000}   # and the second mock's latency
BUILD=$OUT/build
CTL=$BUILD/src/quotacachectl
QC_WORKER=$BUILD/src/quotacache-fcgi
FLOORS=$OUT/floors
CNF=$VAR/mariadb/my.cnf
FLOOR_DB=quotacache_bench   # the floors' table lives beside the app's database
RESULTS=$OUT/results.tsv    # one row per subject
EXTRAS=$OUT/extras.tsv      # subject, key, value: CPU shares, deadlocks, reservations...
RSS_TSV=$OUT/rss.tsv        # pid, phase, VmRSS KiB, VmHWM KiB

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 1; }
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "usage: bash bench/run.sh [DURATION_SECONDS]"
[[ $NRESERVE =~ ^[1-9][0-9]*$ ]] || die "BENCH_RESERVE_USERS must be a positive number"
[[ $IF_DURATION =~ ^[1-9][0-9]*$ && $IF_WARMUP =~ ^[1-9][0-9]*$ && $IF_LATENCY_MS =~ ^[0-9]+$ ]] ||
	die "BENCH_INFLIGHT_DURATION, BENCH_INFLIGHT_WARMUP, BENCH_INFLIGHT_LATENCY_MS must be numbers"
((EUID == 0)) || die "run as root (the private MariaDB and lighttpd run as root)"

# ---------------------------------------------------------------- subjects
# In measuring order. FLOOR_FOR: the floor a SPEC §8 target of the subject is a
# ratio to (measured whenever the subject is).
# The in-flight subjects (SPEC §8 "/generate miss, 1 s mock, c = 64 / 256 / 1024"):
# inflight_C is quotacache, portkey_1s_C the Portkey gateway, mock_1s_C wrk
# straight at the 1 s mock (the floor: what the mock alone adds to the latency).
IF_CONNS=(64 256 1024)
IF_QC=() IF_PK=() IF_MOCK=()
for c in "${IF_CONNS[@]}"; do IF_QC+=("inflight_$c"); IF_PK+=("portkey_1s_$c"); IF_MOCK+=("mock_1s_$c"); done
SUBJECTS=(F0 F1 F2 health status reserve_commit reserve_commit_1user cache_get_1k cache_get_64k
	cache_put_1k generate_hit generate_miss portkey_miss "${IF_MOCK[@]}" "${IF_QC[@]}" "${IF_PK[@]}" rss)
declare -A FLOOR_FOR=([health]=F0 [status]=F0 [cache_get_1k]=F0 [generate_hit]=F0 [reserve_commit]=F2
	[inflight_64]=mock_1s_64 [inflight_256]=mock_1s_256 [inflight_1024]="mock_1s_1024 portkey_1s_1024")
# group names BENCH_ONLY / --only accept
declare -A GROUP=([inflight]="${IF_MOCK[*]} ${IF_QC[*]} ${IF_PK[*]}" [inflight_qc]="${IF_QC[*]}"
	[inflight_portkey]="${IF_PK[*]}" [inflight_mock]="${IF_MOCK[*]}")
declare -A SEL=()
if [[ -n ${BENCH_ONLY:-} ]]; then
	only=()
	for s in $BENCH_ONLY; do
		if [[ -n ${GROUP[$s]:-} ]]; then read -ra g <<<"${GROUP[$s]}"; only+=("${g[@]}"); else only+=("$s"); fi
	done
	for s in "${only[@]}"; do
		[[ " ${SUBJECTS[*]} " == *" $s "* ]] ||
			die "BENCH_ONLY: unknown subject '$s' (known: ${SUBJECTS[*]}; groups: ${!GROUP[*]})"
		SEL[$s]=1
		for f in ${FLOOR_FOR[$s]:-}; do SEL[$f]=1; done
	done
else
	for s in "${SUBJECTS[@]}"; do SEL[$s]=1; done
fi
[[ ${BENCH_RSS:-1} != 0 ]] || unset 'SEL[rss]'
want() { [[ -n ${SEL[$1]:-} ]]; }
ORDER=()
for s in "${SUBJECTS[@]}"; do if want "$s"; then ORDER+=("$s"); fi; done
((${#ORDER[@]})) || die "nothing to measure"
say "subjects: ${ORDER[*]}"
want_any() { local s; for s in "$@"; do if want "$s"; then return 0; fi; done; return 1; }
WANT_SLOW=0; if want_any "${IF_MOCK[@]}" "${IF_QC[@]}" "${IF_PK[@]}"; then WANT_SLOW=1; fi
WANT_PORTKEY=0; if want_any portkey_miss "${IF_PK[@]}"; then WANT_PORTKEY=1; fi
# c = 1024 needs over 2,048 descriptors in lighttpd (a client and a backend
# connection per request) and 1,024+ in wrk and in the mock: every process
# started from here inherits the hard limit (root without CAP_SYS_RESOURCE
# cannot go past it)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 4096)) || ((WANT_SLOW == 0)) ||
	say "warning: only $(ulimit -n) file descriptors (ulimit -n): c=1024 will likely fail"

# ---------------------------------------------------------------- cleanup
WRK_PID=
SAMPLER_PID=
SLOW_VAR=$VAR/slow   # the second mock (1 s): SLOW_VAR/mock/mock.{pid,log}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $WRK_PID ]] && kill -0 "$WRK_PID" 2>/dev/null; then
		kill -TERM "$WRK_PID" 2>/dev/null || true
		wait "$WRK_PID" 2>/dev/null || true
	fi
	if [[ -n $SAMPLER_PID ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
	bash "$ROOT/scripts/lighttpd.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$BENCH/portkey.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mock.sh" stop "$SLOW_VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mock.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mariadb.sh" stop "$VAR" >/dev/null 2>&1 || true
	((rc == 0)) || say "failed (exit $rc); servers stopped; logs in $VAR/lighttpd, $VAR/mariadb, $VAR/mock, $VAR/portkey"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build
bash "$ROOT/scripts/deps.sh"
command -v wrk >/dev/null || {
	say "installing wrk"
	apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends wrk >/dev/null
}
if ((WANT_PORTKEY)); then bash "$BENCH/portkey.sh" install; fi   # npm, into bench/out/portkey
mkdir -p "$OUT/wrk"
rm -f "$OUT"/wrk/*.txt "$RESULTS" "$EXTRAS" "$RSS_TSV"
say "building quotacache -O2 -g into $BUILD (log: $BUILD/make.log)"
bash "$ROOT/scripts/build.sh" "$BUILD" CFLAGS="-O2 -g"
say "building floors"
# shellcheck disable=SC2046 # pkg-config prints several words
cc -O2 -Wall -Wextra -o "$FLOORS" "$BENCH/floors.c" $(pkg-config --cflags --libs fcgi libmariadb)

# ---------------------------------------------------------------- database, mock
# a fresh database each run: the same table sizes every time
if [[ -d $VAR ]]; then
	bash "$ROOT/scripts/lighttpd.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$BENCH/portkey.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mock.sh" stop "$SLOW_VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mock.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mariadb.sh" stop "$VAR" >/dev/null 2>&1 || true
	rm -rf "$VAR"
fi
bash "$ROOT/scripts/mariadb.sh" start "$VAR"
sql() { mariadb --defaults-file="$CNF" "$@"; }   # root, over the socket

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
MOCKPORT=$(free_port)
bash "$ROOT/scripts/mock.sh" start "$VAR" "$MOCKPORT" --latency-ms 0

CONF=$VAR/quotacache.conf
{ echo "# generated by bench/run.sh; defaults otherwise (auth_cache_seconds 5, log_level info)"
  base_config "$VAR" "$ROOT"
  echo "upstream_base_url = http://127.0.0.1:$MOCKPORT/v1"
  echo "upstream_model = mock-model"
  echo "upstream_prices = mock-model:0.00015:0.0006"
  # settings to try (BENCH_QC_SET="worker_threads = 4;completion_threads = 4")
  [[ -z ${BENCH_QC_SET:-} ]] || tr ';' '\n' <<<"$BENCH_QC_SET"; } >"$CONF"
export QC_CONFIG=$CONF
"$CTL" migrate >&2
# the in-flight subjects: a second mock answering after IF_LATENCY_MS, and a
# configuration that differs from CONF only in the upstream it names
SLOWPORT='' SLOW_CONF=$VAR/quotacache-slow.conf
if ((WANT_SLOW)); then
	SLOWPORT=$(free_port)
	bash "$ROOT/scripts/mock.sh" start "$SLOW_VAR" "$SLOWPORT" --latency-ms "$IF_LATENCY_MS"
	sed "s|^upstream_base_url = .*|upstream_base_url = http://127.0.0.1:$SLOWPORT/v1|" "$CONF" >"$SLOW_CONF"
	grep -q "^upstream_base_url = http://127.0.0.1:$SLOWPORT/v1\$" "$SLOW_CONF" || die "cannot write $SLOW_CONF"
fi

sql <<SQL
CREATE DATABASE $FLOOR_DB;
USE $FLOOR_DB;
CREATE TABLE bench_floor (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB;
INSERT INTO bench_floor (id, n) SELECT seq, 0 FROM seq_1_to_64;
GRANT ALL PRIVILEGES ON $FLOOR_DB.* TO 'quotacache'@'localhost';
SQL

# ---------------------------------------------------------------- users
# add_user EMAIL PLAN [--admin]: prints the key (quotacachectl prints the key on
# stdout, a note on stderr)
add_user() {
	local k
	k=$("$CTL" user add --email "$1" --plan "$2" "${@:3}" 2>/dev/null) || die "user add $1 failed"
	[[ -n $k ]] || die "user add $1 printed no key"
	printf '%s' "$k"
}
uid_of() { sql -N -e "SELECT id FROM quotacache.users WHERE email='$1'"; }
unlimited() {   # no-limit override through the CLI
	"$CTL" quota set-override --id "$1" --day unlimited --month unlimited --hour unlimited \
		--reason bench >/dev/null 2>&1 || die "quota set-override --id $1 failed"
}
say "creating the bench users ($NRESERVE reserve users)"
STATUS_KEY=$(add_user status@bench.invalid pro_annual)
ADMIN_KEY=$(add_user admin@bench.invalid enterprise --admin)
RESERVE1_KEY=$(add_user reserve1@bench.invalid pro_annual)       # reserve_commit_1user
CACHE_KEY=$(add_user cache@bench.invalid pro_annual)              # cache_get_*: bench-1k, bench-64k
CACHEPUT_KEY=$(add_user cacheput@bench.invalid pro_annual)        # cache_put_1k
GEN_KEY=$(add_user gen@bench.invalid pro_annual)                  # generate_hit: bench-hit
GENMISS_KEY=$(add_user genmiss@bench.invalid enterprise)          # generate_miss: never refused
RESERVE1_UID=$(uid_of reserve1@bench.invalid)
[[ -n $RESERVE1_UID ]] || die "no id for reserve1@bench.invalid"
# the reserve_commit users: pro_annual with no-limit overrides, keys in a file
# for bench/reserve_commit.lua (one a line)
RESERVE_KEYS=$VAR/reserve_keys
(umask 077; : >"$RESERVE_KEYS")
for ((i = 1; i <= NRESERVE; i++)); do
	email=$(printf 'reserve-%02d@bench.invalid' "$i")
	printf '%s\n' "$(add_user "$email" pro_annual)" >>"$RESERVE_KEYS"
	unlimited "$(uid_of "$email")"
done
RESERVE_KEY_FIRST=$(head -n 1 "$RESERVE_KEYS")
# which users each reserve subject uses (SQL LIKE on email)
declare -A RC_USERS=([reserve_commit]='reserve-%@bench.invalid' [reserve_commit_1user]='reserve1@bench.invalid')

# ---------------------------------------------------------------- servers
SERVE_BIN='' SERVE_KIND=''
# serve KIND: start lighttpd with WORKERS workers of KIND on a free port and
# set BASE. KIND is "qc" (quotacache) or "floor:MODE" (bench/floors.c), or
# "portkey": the Portkey gateway (bench/portkey.sh: one node process on
# 127.0.0.1, no lighttpd); "mock": no server, wrk goes straight to the 1 s
# mock. SERVE_CONF (default CONF): quotacache's config file.
serve() {
	local port
	port=$(free_port)
	SERVE_KIND=$1
	case $1 in
	mock)
		SERVE_BIN=
		BASE=http://127.0.0.1:$SLOWPORT
		return ;;
	portkey)
		SERVE_BIN=
		bash "$BENCH/portkey.sh" start "$VAR" "$port" ;;
	qc)
		SERVE_BIN=$QC_WORKER
		bash "$ROOT/scripts/lighttpd.sh" start "$VAR" "$port" "$WORKERS" "$QC_WORKER" \
			"${SERVE_CONF:-$CONF}" "$ROOT/www" >/dev/null ;;
	floor:*)
		SERVE_BIN=$FLOORS
		bash "$ROOT/scripts/lighttpd.sh" start "$VAR" "$port" "$WORKERS" "$FLOORS" \
			"$CONF" "$ROOT/www" "QC_FLOOR=${1#floor:}" \
			"QC_DB_SOCKET=$VAR/mariadb/mysqld.sock" "QC_DB_USER=quotacache" \
			"QC_DB_NAME=$FLOOR_DB" "QC_DB_PASSWORD_FILE=$VAR/secrets/db_password" >/dev/null ;;
	*) die "serve: unknown server kind $1" ;;
	esac
	BASE=http://127.0.0.1:$port
}
unserve() {
	if [[ $SERVE_KIND == portkey ]]; then bash "$BENCH/portkey.sh" stop "$VAR"
	elif [[ $SERVE_KIND != mock ]]; then bash "$ROOT/scripts/lighttpd.sh" stop "$VAR" >/dev/null; fi
}

# expect_status CODE METHOD PATH [curl args...]: one request; prints the body
expect_status() {
	local want=$1 method=$2 path=$3 out code
	shift 3
	out=$(curl -sS -X "$method" -w '\n%{http_code}' "$@" "$BASE$path") || die "curl $method $path failed"
	code=${out##*$'\n'}
	[[ $code == "$want" ]] || die "$method $path answered $code, expected $want: ${out%$'\n'*}"
	printf '%s' "${out%$'\n'*}"
}

# ---------------------------------------------------------------- smoke test, fixtures
# The routes behave as the subjects assume; the reserve1 user gets its no-limit
# override through the admin API (the 32 reserve users got theirs through the
# CLI); the cache entries and the /generate cache entry the subjects read are
# created here, once (content tier: plan TTL, 2 h for pro_annual).
say "smoke test of the quotacache routes; creating the cache entries"
serve qc
auth() { printf 'Authorization: Bearer %s' "$1"; }
JSON='Content-Type: application/json'
expect_status 200 GET /api/v1/health >/dev/null
expect_status 200 GET /api/v1/quota/status -H "$(auth "$STATUS_KEY")" >/dev/null
expect_status 200 PUT "/api/v1/quota/users/$RESERVE1_UID/override" -H "$(auth "$ADMIN_KEY")" -H "$JSON" \
	-d '{"tokens_per_day":null,"tokens_per_month":null,"calls_per_hour":null,"reason":"bench"}' >/dev/null
# reserve + commit as reserve_commit.lua does it: max_tokens carries the key
# index and must come back as the estimate
for k in "$RESERVE1_KEY" "$RESERVE_KEY_FIRST"; do
	body=$(expect_status 201 POST /api/v1/quota/reserve -H "$(auth "$k")" -H "$JSON" \
		-d '{"task_type":"bench","max_tokens":100007}')
	[[ $body =~ \"reservation_id\":\ ?\"([0-9a-f]{32})\" ]] || die "reserve: no reservation_id in $body"
	rid=${BASH_REMATCH[1]}
	[[ $body =~ \"estimate\":\ ?100007[,}] ]] ||
		die "reserve: estimate is not max_tokens (reserve_commit.lua relies on it): $body"
	expect_status 200 POST /api/v1/quota/commit -H "$(auth "$k")" -H "$JSON" \
		-d "{\"reservation_id\":\"$rid\",\"actual_tokens\":10}" >/dev/null
done
# cache: 1 KiB and 64 KiB values (printable, like text)
value_file() {   # value_file BYTES FILE: {"value":"<BYTES chars>"}
	python3 -c 'import sys
n = int(sys.argv[1]); pat = "quotacache bench value 0123456789 abcdefghijklmnopqrstuvwxyz. "
sys.stdout.write("{\"value\":\"" + (pat * (n // len(pat) + 1))[:n] + "\"}")' "$1" >"$2"
}
value_file 1024 "$VAR/value-1k.json"
value_file 65536 "$VAR/value-64k.json"
for e in 1k 64k; do
	expect_status 200 PUT "/api/v1/cache/content/bench-$e" -H "$(auth "$CACHE_KEY")" -H "$JSON" \
		--data-binary "@$VAR/value-$e.json" >/dev/null
	body=$(expect_status 200 GET "/api/v1/cache/content/bench-$e" -H "$(auth "$CACHE_KEY")")
	[[ $body == *'"value":"quotacache bench value'* ]] || die "GET bench-$e: unexpected body ${body:0:200}"
done
say "cache: GET bench-1k answers $(expect_status 200 GET /api/v1/cache/content/bench-1k \
	-H "$(auth "$CACHE_KEY")" | wc -c) bytes, bench-64k $(expect_status 200 GET \
	/api/v1/cache/content/bench-64k -H "$(auth "$CACHE_KEY")" | wc -c) bytes"
expect_status 200 PUT /api/v1/cache/content/bench-put-smoke -H "$(auth "$CACHEPUT_KEY")" -H "$JSON" \
	--data-binary "@$VAR/value-1k.json" >/dev/null
# /generate: fill bench-hit (a miss that calls the mock), then it must be a hit
GEN_HIT_BODY='{"task":"cover_letter","prompt":"bench prompt","cache_key":"bench-hit"}'
body=$(expect_status 200 POST /api/v1/generate -H "$(auth "$GEN_KEY")" -H "$JSON" -d "$GEN_HIT_BODY")
[[ $body =~ \"cached\":\ ?false ]] || die "generate: the first call should be a miss: $body"
body=$(expect_status 200 POST /api/v1/generate -H "$(auth "$GEN_KEY")" -H "$JSON" -d "$GEN_HIT_BODY")
[[ $body =~ \"cached\":\ ?true ]] || die "generate: the second call should be a cache hit: $body"
body=$(expect_status 200 POST /api/v1/generate -H "$(auth "$GENMISS_KEY")" -H "$JSON" \
	-d '{"task":"cover_letter","prompt":"bench miss smoke","cache_tier":"session"}')
[[ $body =~ \"cached\":\ ?false ]] || die "generate (miss): expected a miss: $body"
unserve

# ---------------------------------------------------------------- probes
CLK_TCK=$(getconf CLK_TCK)
now_ns() { date +%s%N; }
# pids whose executable is $1
pids_of_exe() {
	find /proc -mindepth 2 -maxdepth 2 -name exe \( -lname "$1" -o -lname "$1 (deleted)" \) \
		-printf '%h\n' 2>/dev/null | sed 's|^/proc/||' | sort -n || true   # find: vanished pids
}
pid_file() { local p; p=$(cat "$1" 2>/dev/null) && [[ $p =~ ^[0-9]+$ ]] && echo "$p"; }
# ticks PID...: user + system CPU ticks of the processes (all their threads)
ticks() {
	local p s a t=0
	for p in "$@"; do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		s=${s##*) }
		read -ra a <<<"$s"
		t=$((t + a[11] + a[12]))
	done
	echo "$t"
}
deadlocks() { sql -N -e "SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'" | awk '{ print $2 }'; }
# The mock a subject's probes read: PROBE_MOCK=slow (env, like SERVER) names
# the 1 s mock of the in-flight subjects; default the 0 ms one.
probe_mock_port() { if [[ ${PROBE_MOCK:-} == slow ]]; then echo "$SLOWPORT"; else echo "$MOCKPORT"; fi; }
probe_mock_var() { if [[ ${PROBE_MOCK:-} == slow ]]; then echo "$SLOW_VAR"; else echo "$VAR"; fi; }
mock_field() {   # mock_field NAME: a number of the probed mock's GET /_calls (0 if unreadable)
	local out
	out=$(curl -sS "http://127.0.0.1:$(probe_mock_port)/_calls" 2>/dev/null) || { echo 0; return; }
	[[ $out =~ \"$1\":\ ?([0-9]+) ]] && echo "${BASH_REMATCH[1]}" || echo 0
}
mock_calls() { mock_field completions; }   # completions the mock answered so far
extra() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$EXTRAS"; }

# probe_start / probe_end NAME: CPU share (% of one core) of the workers,
# lighttpd (or, for SERVE_KIND portkey, of the node process instead), mariadbd
# and the mock over the measurement; Innodb_deadlocks and the mock's
# completions during it. P_*: pids, one a word (none: empty)
# shellcheck disable=SC2086
probe_start() {
	P_WORKERS='' P_LIGHTTPD='' P_NODE=''
	if [[ $SERVE_KIND == portkey ]]; then
		P_NODE=$(pid_file "$VAR/portkey/portkey.pid" || true)
	elif [[ $SERVE_KIND != mock ]]; then
		P_WORKERS=$(pids_of_exe "$SERVE_BIN" | tr '\n' ' ')
		P_LIGHTTPD=$(pid_file "$VAR/lighttpd/lighttpd.pid" || true)
	fi
	P_MYSQLD=$(pid_file "$VAR/mariadb/mariadbd.pid" || true)
	P_MOCK=$(pid_file "$(probe_mock_var)/mock/mock.pid" || true)
	T_WORKERS=$(ticks $P_WORKERS)
	T_LIGHTTPD=$(ticks $P_LIGHTTPD) T_MYSQLD=$(ticks $P_MYSQLD) T_MOCK=$(ticks $P_MOCK) T_NODE=$(ticks $P_NODE)
	D_START=$(deadlocks) M_START=$(mock_calls)
	T0=$(now_ns)
}
# shellcheck disable=SC2086
probe_end() {
	local name=$1 wall t
	wall=$(($(now_ns) - T0))
	pct() { awk -v d="$1" -v hz="$CLK_TCK" -v ns="$wall" 'BEGIN { printf "%.1f", d / hz / (ns / 1e9) * 100 }'; }
	if [[ $SERVE_KIND == portkey ]]; then
		t=$(ticks $P_NODE); extra "$name" cpu_node_pct "$(pct $((t - T_NODE)))"
	elif [[ $SERVE_KIND != mock ]]; then
		t=$(ticks $P_WORKERS); extra "$name" cpu_workers_pct "$(pct $((t - T_WORKERS)))"
		t=$(ticks $P_LIGHTTPD); extra "$name" cpu_lighttpd_pct "$(pct $((t - T_LIGHTTPD)))"
	fi
	t=$(ticks $P_MYSQLD); extra "$name" cpu_mariadbd_pct "$(pct $((t - T_MYSQLD)))"
	t=$(ticks $P_MOCK); extra "$name" cpu_mock_pct "$(pct $((t - T_MOCK)))"
	extra "$name" innodb_deadlocks "$(($(deadlocks) - D_START))"
	extra "$name" upstream_calls "$(($(mock_calls) - M_START))"
}

# ---------------------------------------------------------------- measuring
printf 'name\turl\treq_s\tp50_ms\tp99_ms\trequests\tnon2xx\tsocket_errors\tnote\n' >"$RESULTS"

# wrk latency ("812.00us", "3.21ms", "1.02s", "2.00m") in milliseconds
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		f = u == "us" ? 0.001 : u == "ms" ? 1 : u == "s" ? 1000 : u == "m" ? 60000 : -1
		if (f < 0) { print "nan"; exit }
		printf "%.3f", n * f }'
}

# run_wrk OUTFILE PHASE SECONDS [wrk args...] URL [-- script args]: one wrk run
# in the background (so cleanup can stop it); BENCH_PHASE tells the Lua scripts
# which run this is
# (WRK_CONNS, env: connections instead of CONNS)
run_wrk() {
	local out=$1 phase=$2 secs=$3
	shift 3
	BENCH_PHASE=$phase wrk -t"$THREADS" -c"${WRK_CONNS:-$CONNS}" -d"${secs}s" "$@" >"$out" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || die "wrk ($phase) failed: $(tail -n 5 "$out")"
	WRK_PID=
}
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_total() { awk '/ requests in / { print $1 }' "$1"; }
wrk_non2xx() { awk '/Non-2xx or 3xx responses:/ { n = $NF } END { print n + 0 }' "$1"; }
wrk_sockerr() { awk -F'[ ,]+' '/Socket errors:/ { n = $5 + $7 + $9 + $11 } END { print n + 0 }' "$1"; }
wrk_note() { sed -n 's/^bench-note: //p' "$1" | head -n 1; }

# measure NAME URL [wrk args...]: start the server named by $SERVER ("qc",
# "floor:MODE" or "portkey"), warm up, run wrk, record one row of $RESULTS, stop the server.
# URL is a path (/api/...) on that server. Extra wrk args go before the URL;
# arguments for a Lua script go after "--" (as in: ... -s x.lua -- KEY).
# Optional: URL_LABEL (shown instead of the path); BEFORE_WARMUP, AFTER_WARMUP,
# AFTER_RUN (functions called with NAME before the warm-up, between warm-up
# and measurement, and after the measurement while the server still runs);
# WRK_CONNS, M_DURATION, M_WARMUP (instead of CONNS, DURATION, WARMUP);
# SERVE_CONF (quotacache's config file); PROBE_MOCK=slow (the probes read the
# 1 s mock).
measure() {
	local name=$1 path=$2 pre=() post=() seen=0 a raw rps p50 p99 total non2xx sockerr note
	local dur=${M_DURATION:-$DURATION} wu=${M_WARMUP:-$WARMUP}
	shift 2
	for a in "$@"; do
		if ((seen)); then post+=("$a"); elif [[ $a == -- ]]; then seen=1; else pre+=("$a"); fi
	done
	serve "${SERVER:?measure needs SERVER=qc, floor:MODE, portkey or mock}"
	raw=$OUT/wrk/$name.txt
	say "$name: ${SERVER} $path — c=${WRK_CONNS:-$CONNS}, warm-up ${wu}s, then ${dur}s"
	[[ -z ${BEFORE_WARMUP:-} ]] || "$BEFORE_WARMUP" "$name"
	run_wrk "$OUT/wrk/$name.warmup.txt" warmup "$wu" "${pre[@]}" "$BASE$path" ${post[@]+-- "${post[@]}"}
	[[ -z ${AFTER_WARMUP:-} ]] || "$AFTER_WARMUP" "$name"
	probe_start
	run_wrk "$raw" run "$dur" --latency "${pre[@]}" "$BASE$path" ${post[@]+-- "${post[@]}"}
	probe_end "$name"
	[[ -z ${AFTER_RUN:-} ]] || "$AFTER_RUN" "$name"
	unserve
	rps=$(wrk_rps "$raw")
	p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$raw")")
	p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$raw")")
	total=$(wrk_total "$raw")
	non2xx=$(wrk_non2xx "$raw")
	sockerr=$(wrk_sockerr "$raw")
	note=$(wrk_note "$raw")
	[[ -n $rps && -n $total ]] || die "$name: cannot parse $raw"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${URL_LABEL:-$path}" "$rps" "$p50" "$p99" "$total" \
		"$non2xx" "$sockerr" "$note" >>"$RESULTS"
	say "$name: $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx $non2xx, socket errors $sockerr"
}

# check NAME FLOOR MIN_RATIO [MAX_P99_MS]: a SPEC §8 target, evaluated in the
# report (skipped when NAME or FLOOR was not measured); MIN_RATIO "-": the
# ratio is reported only
CHECKS=()
check() { CHECKS+=("$1:$2:$3:${4:-}"); }

# reserve subjects: Innodb_deadlocks (SHOW GLOBAL STATUS, server-wide) and the
# subject's users' reservations before the warm-up, after it and after the run
rc_counts() {   # rc_counts NAME: "active committed" of the subject's users
	sql -N -e "SELECT COALESCE(SUM(r.state='active'),0), COALESCE(SUM(r.state='committed'),0)
		FROM quotacache.quota_reservations r JOIN quotacache.users u ON u.id = r.user_id
		WHERE u.email LIKE '${RC_USERS[$1]}'" | tr '\t' ' '
}
rc_before() {
	local c
	extra "$1" innodb_deadlocks_before "$(deadlocks)"
	c=$(rc_counts "$1"); RC_A0=${c% *}
}
rc_after_warmup() {
	local c
	extra "$1" innodb_deadlocks_after_warmup "$(deadlocks)"
	c=$(rc_counts "$1"); extra "$1" active_after_warmup "$((${c% *} - RC_A0))"
}
rc_after() {
	local c
	extra "$1" innodb_deadlocks_after "$(deadlocks)"
	c=$(rc_counts "$1")
	extra "$1" active_after_run "$((${c% *} - RC_A0))"
	extra "$1" committed_total "${c#* }"
}

# --- the floors (same lighttpd template, /api/... so the same fastcgi mapping applies)
if want F0; then SERVER=floor:hello  measure F0 /api/floor; fi
if want F1; then SERVER=floor:select measure F1 /api/floor; fi
if want F2; then SERVER=floor:update measure F2 /api/floor; fi

# --- quotacache
if want health; then SERVER=qc measure health /api/v1/health; fi
check health F0 0.80
if want status; then
	SERVER=qc measure status /api/v1/quota/status -H "Authorization: Bearer $STATUS_KEY"
fi
check status F0 0.50 5
if want reserve_commit; then
	SERVER=qc BEFORE_WARMUP=rc_before AFTER_WARMUP=rc_after_warmup AFTER_RUN=rc_after \
		URL_LABEL="/api/v1/quota/reserve + /commit, $NRESERVE users" \
		measure reserve_commit /api/v1/quota/reserve -s "$BENCH/reserve_commit.lua" -- "@$RESERVE_KEYS"
fi
check reserve_commit F2 0.60
if want reserve_commit_1user; then
	SERVER=qc BEFORE_WARMUP=rc_before AFTER_WARMUP=rc_after_warmup AFTER_RUN=rc_after \
		URL_LABEL="/api/v1/quota/reserve + /commit, 1 user" \
		measure reserve_commit_1user /api/v1/quota/reserve -s "$BENCH/reserve_commit.lua" -- "$RESERVE1_KEY"
fi
check reserve_commit_1user F2 -
if want cache_get_1k; then
	SERVER=qc measure cache_get_1k /api/v1/cache/content/bench-1k -H "Authorization: Bearer $CACHE_KEY"
fi
check cache_get_1k F0 0.50 5
if want cache_get_64k; then
	SERVER=qc measure cache_get_64k /api/v1/cache/content/bench-64k -H "Authorization: Bearer $CACHE_KEY"
fi
check cache_get_64k F0 -
if want cache_put_1k; then
	SERVER=qc URL_LABEL="PUT /api/v1/cache/content/bench-put-{0..999}" \
		measure cache_put_1k /api/v1/cache/content -s "$BENCH/cache_put.lua" -- "$CACHEPUT_KEY" 1000 1024
fi
check cache_put_1k F2 -
if want generate_hit; then
	SERVER=qc URL_LABEL="POST /api/v1/generate (cache_key bench-hit)" \
		measure generate_hit /api/v1/generate -s "$BENCH/generate.lua" -- "$GEN_KEY" hit bench-hit
fi
check generate_hit F0 0.40 6
if want generate_miss; then
	SERVER=qc URL_LABEL="POST /api/v1/generate (unique prompts, 0 ms mock)" \
		measure generate_miss /api/v1/generate -s "$BENCH/generate.lua" -- "$GENMISS_KEY" miss session
fi

# --- the Node comparison (SPEC §8: generate_miss >= 1.5x a Node gateway, Portkey
# OSS, on the same mock): OpenAI chat completions through the Portkey gateway
# to the mock, a new prompt each request (bench/portkey.lua). Before the
# warm-up one request by curl must come back 200 with the mock's echo and
# raise the mock's completion counter by exactly one.
pk_smoke() {   # (against the mock PROBE_MOCK names)
	local c0 c1 out
	c0=$(mock_calls)
	out=$(curl -sS -m 10 -w '\n%{http_code}' "$BASE/v1/chat/completions" -H "$JSON" \
		-H 'x-portkey-provider: openai' -H "x-portkey-custom-host: http://127.0.0.1:$(probe_mock_port)/v1" \
		-H 'Authorization: Bearer sk-mock' \
		-d '{"model":"mock-model","messages":[{"role":"user","content":"bench portkey smoke"}]}') ||
		die "portkey: curl failed"
	[[ ${out##*$'\n'} == 200 && $out == *'"echo: bench portkey smoke"'* ]] ||
		die "portkey: the smoke request answered: $out"
	c1=$(mock_calls)
	((c1 == c0 + 1)) || die "portkey: the mock's completions went $c0 -> $c1, expected +1"
	say "$1: smoke request 200 through the gateway, mock completions $c0 -> $c1"
}
if want portkey_miss; then
	SERVER=portkey BEFORE_WARMUP=pk_smoke \
		URL_LABEL="POST /v1/chat/completions via Portkey $(node -e 'process.stdout.write(require(process.argv[1]).version)' \
			"$OUT/portkey/node_modules/@portkey-ai/gateway/package.json") (unique prompts, 0 ms mock)" \
		measure portkey_miss /v1/chat/completions -s "$BENCH/portkey.lua" -- "http://127.0.0.1:$MOCKPORT/v1"
fi
check generate_miss portkey_miss 1.5

# --- generations in flight (SPEC §8/§9): /generate misses and Portkey against
# the second mock (IF_LATENCY_MS, 1 s), c = 64, 256, 1024, wrk --timeout 10s,
# IF_WARMUP s of warm-up at the same c, then IF_DURATION s. Between the two
# the warm-up's calls still in flight upstream may end (the mock's in_flight
# back to 0, at most 5 s) and the mock's peak is zeroed; during the
# measurement the summed VmRSS of the server's processes (the quotacache
# workers, by executable, or the node process) and lighttpd's are sampled every
# 0.5 s (bench/out/wrk/NAME.rss.txt: ns, KiB, processes, lighttpd KiB).
proc_kib() {   # proc_kib FIELD PID...: "SUM COUNT" of /proc/PID/status FIELD (VmRSS, VmHWM) in KiB
	local f=$1 p v s=0 n=0
	shift
	for p in "$@"; do
		v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		[[ -n $v ]] || continue
		s=$((s + v)) n=$((n + 1))
	done
	echo "$s $n"
}
server_pids() {   # the measured server's processes: quotacache workers, the node process, the mock
	case $SERVE_KIND in
	portkey) pid_file "$VAR/portkey/portkey.pid" || true ;;
	mock) pid_file "$SLOW_VAR/mock/mock.pid" || true ;;
	*) pids_of_exe "$SERVE_BIN" ;;
	esac
}
rss_sampler() {   # rss_sampler FILE: a line every 0.5 s until killed
	local pids l
	while :; do
		mapfile -t pids < <(server_pids)
		l="0 0"
		[[ $SERVE_KIND != qc ]] || l=$(proc_kib VmRSS "$(pid_file "$VAR/lighttpd/lighttpd.pid" || echo 0)")
		printf '%s %s %s\n' "$(now_ns)" "$(proc_kib VmRSS "${pids[@]}")" "${l% *}"
		sleep 0.5
	done >>"$1"
}
if_after_warmup() {
	local i
	for ((i = 0; i < 50; i++)); do
		(($(mock_field in_flight) == 0)) && break
		sleep 0.1
	done
	extra "$1" warmup_drain_s "$(awk -v i="$i" 'BEGIN { printf "%.1f", i / 10 }')"
	((i < 50)) || say "$1: $(mock_field in_flight) calls of the warm-up still in flight upstream after 5 s"
	curl -sS -o /dev/null -X POST "http://127.0.0.1:$SLOWPORT/_reset" || die "$1: mock /_reset failed"
	: >"$OUT/wrk/$1.rss.txt"
	rss_sampler "$OUT/wrk/$1.rss.txt" &
	SAMPLER_PID=$!
}
if_after_run() {
	local raw=$OUT/wrk/$1.txt hwm n pids
	kill "$SAMPLER_PID" 2>/dev/null || true
	wait "$SAMPLER_PID" 2>/dev/null || true
	SAMPLER_PID=
	extra "$1" conns "$WRK_CONNS"
	extra "$1" upstream_peak_in_flight "$(mock_field peak)"
	extra "$1" upstream_in_flight_at_end "$(mock_field in_flight)"
	# wrk: mean latency (done() of the Lua script: bench-stats line) and timeouts
	extra "$1" latency_mean_us "$(sed -n 's/^bench-stats: .*mean_us=\([0-9.]*\).*/\1/p' "$raw" | head -n 1)"
	extra "$1" timeouts "$(awk -F'[ ,]+' '/Socket errors:/ { n = $11 } END { print n + 0 }' "$raw")"
	mapfile -t pids < <(server_pids)
	read -r hwm n <<<"$(proc_kib VmHWM "${pids[@]}")"
	extra "$1" rss_hwm_sum_kib "$hwm"
	extra "$1" rss_procs "$n"
	awk '{ if ($2 > m) m = $2; if ($3 > p) p = $3; if ($4 > l) l = $4; k++ }
		END { printf "%d %d %d %d\n", m, l, p, k }' "$OUT/wrk/$1.rss.txt" | {
		read -r m l p k
		extra "$1" rss_peak_kib "$m"
		extra "$1" lighttpd_rss_peak_kib "$l"
		extra "$1" rss_max_procs "$p"
		extra "$1" rss_samples "$k"
	}
}
# mock_1s_C: bench/portkey.lua's requests (the mock ignores the x-portkey headers)
for c in "${IF_CONNS[@]}"; do
	if want "mock_1s_$c"; then
		SERVER=mock PROBE_MOCK=slow WRK_CONNS=$c M_DURATION=$IF_DURATION M_WARMUP=$IF_WARMUP \
			AFTER_WARMUP=if_after_warmup AFTER_RUN=if_after_run \
			URL_LABEL="POST /v1/chat/completions straight to the $IF_LATENCY_MS ms mock (c=$c)" \
			measure "mock_1s_$c" /v1/chat/completions --timeout 10s -s "$BENCH/portkey.lua" -- \
			"http://127.0.0.1:$SLOWPORT/v1"
	fi
done
for c in "${IF_CONNS[@]}"; do
	if want "inflight_$c"; then
		SERVER=qc SERVE_CONF=$SLOW_CONF PROBE_MOCK=slow WRK_CONNS=$c M_DURATION=$IF_DURATION M_WARMUP=$IF_WARMUP \
			AFTER_WARMUP=if_after_warmup AFTER_RUN=if_after_run \
			URL_LABEL="POST /api/v1/generate (unique prompts, $IF_LATENCY_MS ms mock, c=$c)" \
			measure "inflight_$c" /api/v1/generate --timeout 10s -s "$BENCH/generate.lua" -- \
			"$GENMISS_KEY" miss session
	fi
done
for c in "${IF_CONNS[@]}"; do
	if want "portkey_1s_$c"; then
		SERVER=portkey PROBE_MOCK=slow WRK_CONNS=$c M_DURATION=$IF_DURATION M_WARMUP=$IF_WARMUP \
			BEFORE_WARMUP=pk_smoke AFTER_WARMUP=if_after_warmup AFTER_RUN=if_after_run \
			URL_LABEL="POST /v1/chat/completions via Portkey (unique prompts, $IF_LATENCY_MS ms mock, c=$c)" \
			measure "portkey_1s_$c" /v1/chat/completions --timeout 10s -s "$BENCH/portkey.lua" -- \
			"http://127.0.0.1:$SLOWPORT/v1"
	fi
done
# (the in-flight targets are judged in bench/report.py: "Generations in flight")

# --- more subjects go here. Pattern (add the name to SUBJECTS above too):
#   if want NAME; then SERVER=qc measure NAME /api/v1/PATH [wrk args: -H ..., -s script.lua -- args]; fi
#   check NAME F0|F1|F2 MIN_RATIO|- [MAX_P99_MS]

# ---------------------------------------------------------------- worker RSS
# SPEC §8: worker RSS after 200k mixed requests <= 16 MiB, no growth over the
# last 100k. One quotacache server: a warm-up (also the rate estimate), then
# two wrk runs of ~RSS_REQUESTS/2 requests each (health, status, cache GET
# 1 KiB hit, /generate hit in rotation: bench/mixed.lua), VmRSS/VmHWM of each
# worker sampled after the warm-up, and after each half twice: as the load
# stops (half_load, end_load) and at rest, RSS_REST seconds later (half, end:
# what the target is about; a worker at rest gives freed pages back).
rss_sample() {   # rss_sample PHASE
	local p r h
	for p in $(pids_of_exe "$QC_WORKER"); do
		r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		h=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		printf '%s\t%s\t%s\t%s\n' "$p" "$1" "$r" "$h" >>"$RSS_TSV"
	done
}
if want rss; then
	serve qc
	mixed=(-s "$BENCH/mixed.lua" "$BASE/api/v1/health" -- "$STATUS_KEY" "$CACHE_KEY" "$GEN_KEY")
	say "rss: warm-up ${WARMUP}s with the mixed load"
	rss_sample start
	run_wrk "$OUT/wrk/rss.warmup.txt" warmup "$WARMUP" "${mixed[@]}"
	rate=$(wrk_rps "$OUT/wrk/rss.warmup.txt")
	# seconds for N requests at the warm-up's rate (3..300); the warm-up's
	# requests count towards the first half
	secs_for() { awk -v r="$rate" -v n="$1" 'BEGIN { s = int(n / (r > 1 ? r : 1)) + 1;
		print (s < 3 ? 3 : s > 300 ? 300 : s) }'; }
	half1=$(secs_for $((RSS_REQUESTS / 2 - $(wrk_total "$OUT/wrk/rss.warmup.txt"))))
	half2=$(secs_for $((RSS_REQUESTS / 2)))
	rss_sample warmup
	say "rss: mixed load at ~${rate} req/s: ${half1}s, sample, ${half2}s, sample (~${RSS_REQUESTS} requests)"
	probe_start
	run_wrk "$OUT/wrk/rss.half1.txt" run "$half1" --latency "${mixed[@]}"
	rss_sample half_load
	sleep "$RSS_REST"
	rss_sample half
	run_wrk "$OUT/wrk/rss.half2.txt" run "$half2" --latency "${mixed[@]}"
	rss_sample end_load
	sleep "$RSS_REST"
	rss_sample end
	probe_end rss
	unserve
	for ph in warmup half1 half2; do
		extra rss "requests_$ph" "$(wrk_total "$OUT/wrk/rss.$ph.txt")"
		extra rss "non2xx_$ph" "$(wrk_non2xx "$OUT/wrk/rss.$ph.txt")"
		extra rss "socket_errors_$ph" "$(wrk_sockerr "$OUT/wrk/rss.$ph.txt")"
		extra rss "req_s_$ph" "$(wrk_rps "$OUT/wrk/rss.$ph.txt")"
		extra rss "note_$ph" "$(wrk_note "$OUT/wrk/rss.$ph.txt")"
	done
	say "rss: $(awk -F'\t' '$2 == "end" { printf "pid %s %d KiB  ", $1, $3 }' "$RSS_TSV")"
fi

# ---------------------------------------------------------------- report
CHECKS_STR=$(printf '%s\n' "${CHECKS[@]}")
export RESULTS EXTRAS RSS_TSV RSS_REST CHECKS_STR DURATION WORKERS THREADS CONNS WARMUP NRESERVE OUT
export IF_DURATION IF_WARMUP IF_LATENCY_MS
export BENCH_ONLY=${BENCH_ONLY:-} ORDER_STR="${ORDER[*]}"
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$({ git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null || true; } | wc -l)
FLUSH=$(sql -N -e "SELECT @@innodb_flush_log_at_trx_commit")
export GIT_REV GIT_DIRTY FLUSH
python3 "$BENCH/report.py"
say "results: $OUT/results.md, $OUT/results.json (raw wrk output in $OUT/wrk/)"
