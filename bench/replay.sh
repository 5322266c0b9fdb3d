#!/usr/bin/env bash
# bench/replay.sh - the workload replay of issue 14 item 1 (SPEC §13), as root:
#
#     bash bench/replay.sh [--seed N] [--users N] [--hours H] [--threads N] [--only NAME,...]
#
# Builds quotacache -O2 -g with the test clock (--enable-test-clock) into
# bench/out/build-clock, starts a private MariaDB, the mock upstream and
# lighttpd with 4 workers under bench/out/replay (allow_test_clock = 1), writes
# a seeded synthetic trace (bench/trace.py: Zipf-distributed prompts, task
# sequences per user, the plan mix) to bench/out/replay/trace.jsonl, creates
# its users (each with a no-limit override: quotas never refuse here), then,
# for each CONFIGURATION below: stops lighttpd (its workers flush what they
# hold), empties the cache, the ledger and the counters, runs the
# configuration's SQL as root, starts lighttpd again (fresh plan caches, the
# configuration's own settings),
# resets the mock and replays the trace with bench/replay.py (every prompt
# answered by the mock after 300 ms; the simulated clock through
# X-QC-Test-Now).  The database's event scheduler is off: its EVENTs expire
# reservations and cache entries by the real clock, which the replay does not
# follow.  Writes bench/out/replay.md (one row per configuration) and prints
# it; each run's JSON is in bench/out/replay-NAME.json.  Every server is
# stopped on exit, failure, Ctrl-C or SIGTERM.
set -euo pipefail

# CONFIGURATIONS: "name|SQL run as root in the quotacache database before the
# replay|settings added to the workers' configuration (';' between them)|
# bench/replay.py options".  Every SQL starts from the defaults
# (PLAN_DEFAULTS).  Add a line per feature.  Warming writes entries off the
# request path, so its replays pause everything for each bytes sample
# (--full-drain); the refresh-ahead sweep runs every simulated minute.
PLAN_DEFAULTS="UPDATE plans SET ttl_adaptive = 0, cache_policy = 'always', cache_full_policy = 'refuse',"
PLAN_DEFAULTS+=" warm_tokens_per_day = 0, warm_refresh_hits = 3, warm_next_pct = NULL"
WARM="warm_tokens_per_day = 300000"
ALL="ttl_adaptive = 1, ttl_cold_pct = 75, ttl_max_pct = 400, cache_policy = 'cost_aware', $WARM,"
ALL+=" warm_refresh_hits = 2, warm_next_pct = 50"
CONFIGS=(
	"fixed|$PLAN_DEFAULTS||"
	"adaptive_ttl|$PLAN_DEFAULTS; UPDATE plans SET ttl_adaptive = 1, ttl_cold_pct = 50, ttl_max_pct = 400||"
	"adaptive_ttl_cold75|$PLAN_DEFAULTS; UPDATE plans SET ttl_adaptive = 1, ttl_cold_pct = 75, ttl_max_pct = 400||"
	"cost_aware|$PLAN_DEFAULTS; UPDATE plans SET cache_policy = 'cost_aware'||"
	"cost_aware_price20|$PLAN_DEFAULTS; UPDATE plans SET cache_policy = 'cost_aware'|cache_storage_price = 20|"
	"cost_aware_price100|$PLAN_DEFAULTS; UPDATE plans SET cache_policy = 'cost_aware'|cache_storage_price = 100|"
	"warming_refresh|$PLAN_DEFAULTS; UPDATE plans SET $WARM, warm_refresh_hits = 2||--sweep-min 1 --full-drain"
	"warming_next|$PLAN_DEFAULTS; UPDATE plans SET $WARM, warm_next_pct = 50||--hints --full-drain"
	"all|$PLAN_DEFAULTS; UPDATE plans SET $ALL||--hints --sweep-min 1 --full-drain"
)

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
BENCH=$ROOT/bench
OUT=$BENCH/out
VAR=$OUT/replay
BUILD=$OUT/build-clock
SEED=1 USERS=200 HOURS=6 THREADS=32 ONLY="" WORKERS=4 LATENCY_MS=300
usage() { echo "usage: bash bench/replay.sh [--seed N] [--users N] [--hours H] [--threads N] [--only NAME,...]" >&2; exit 2; }
while (($#)); do
	(($# >= 2)) || usage
	case $1 in
	--seed) SEED=$2 ;;
	--users) USERS=$2 ;;
	--hours) HOURS=$2 ;;
	--threads) THREADS=$2 ;;
	--only) ONLY=$2 ;;
	*) usage ;;
	esac
	shift 2
done
[[ $SEED =~ ^[0-9]+$ && $USERS =~ ^[1-9][0-9]*$ && $THREADS =~ ^[1-9][0-9]*$ &&
	$HOURS =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] || usage
SELECTED=()
for c in "${CONFIGS[@]}"; do
	if [[ -z $ONLY || ",$ONLY," == *",${c%%|*},"* ]]; then SELECTED+=("$c"); fi
done
((${#SELECTED[@]})) || { echo "bench: no configuration named ${ONLY//,/ or }" >&2; exit 2; }
((EUID == 0)) || { echo "bench: run as root" >&2; exit 1; }
say() { echo "bench: $*" >&2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

REPLAY_PID=""
cleanup() {
	local rc=$?
	trap - EXIT
	if [[ -n $REPLAY_PID ]]; then kill "$REPLAY_PID" 2>/dev/null || true; fi
	bash "$ROOT/scripts/lighttpd.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mock.sh" stop "$VAR" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mariadb.sh" stop "$VAR" >/dev/null 2>&1 || true
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$ROOT/scripts/deps.sh"
say "building quotacache -O2 -g with the test clock into $BUILD"
bash "$ROOT/scripts/build.sh" "$BUILD" --enable-test-clock CFLAGS="-O2 -g"
WORKER=$BUILD/src/quotacache-fcgi
CTL=$BUILD/src/quotacachectl

rm -rf "$VAR"
mkdir -p "$VAR"
MYCNF=$VAR/mariadb/my.cnf
bash "$ROOT/scripts/mariadb.sh" start "$VAR" >&2
sql() { mariadb --defaults-file="$MYCNF" -N -B quotacache -e "$1"; }
MOCKPORT=$(free_port)
bash "$ROOT/scripts/mock.sh" start "$VAR" "$MOCKPORT" --latency-ms 0 >&2
CONF=$VAR/quotacache.conf
{ base_config "$VAR" "$ROOT"
  echo "upstream_base_url = http://127.0.0.1:$MOCKPORT/v1"
  echo "upstream_model = mock-model"
  echo "upstream_prices = mock-model:0.00015:0.0006"
  echo "upstream_timeout_ms = 30000"
  echo "allow_test_clock = 1"
  echo "log_level = warn"; } >"$CONF"
export QC_CONFIG=$CONF
"$CTL" migrate >&2
sql "SET GLOBAL event_scheduler = OFF"

TRACE=$VAR/trace.jsonl
python3 "$BENCH/trace.py" --seed "$SEED" --users "$USERS" --hours "$HOURS" >"$TRACE" 2>"$VAR/trace.txt"
EVENTS=$(wc -l <"$TRACE")
say "$(cat "$VAR/trace.txt")"

say "creating $USERS users with no-limit overrides"
KEYS=$VAR/keys.txt
: >"$KEYS"
while read -r i plan; do
	key=$("$CTL" user add --email "replay$i@bench.invalid" --plan "$plan" 2>/dev/null)
	echo "$i $plan $key" >>"$KEYS"
done < <(python3 "$BENCH/trace.py" --list-users --seed "$SEED" --users "$USERS")
while IFS=$'\t' read -r id email _; do
	[[ $email == replay*@bench.invalid ]] || continue
	"$CTL" quota set-override --id "$id" --day unlimited --month unlimited --hour unlimited \
		--reason replay >/dev/null
done < <("$CTL" user list)

ADMIN_KEY=$("$CTL" user add --email replay-admin@bench.invalid --plan enterprise --admin 2>/dev/null)
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
START=$((($(date +%s) / 3600 + 2) * 3600))   # t = 0: the same simulated window for every configuration
RESET_SQL="DELETE FROM ai_cache WHERE user_id <> 0; DELETE FROM usage_events; DELETE FROM cache_stats;
DELETE FROM quota_reservations; DELETE FROM quota_counters; DELETE FROM generate_flights;
UPDATE cache_usage SET bytes = 0, entries = 0;"

NAMES=()
for c in "${SELECTED[@]}"; do
	IFS='|' read -r name csql extra ropts <<<"$c"
	NAMES+=("$name")
	RUNCONF=$VAR/quotacache-$name.conf
	{ cat "$CONF"; tr ';' '\n' <<<"$extra" | sed 's/^ *//'; } >"$RUNCONF"
	# stopped first: the workers flush their batched counters when they stop
	bash "$ROOT/scripts/lighttpd.sh" stop "$VAR" >/dev/null 2>&1 || true
	sql "$RESET_SQL"
	sql "$csql"
	bash "$ROOT/scripts/lighttpd.sh" start "$VAR" "$PORT" "$WORKERS" "$WORKER" "$RUNCONF" "$ROOT/www" >&2
	curl -fsS -X POST "http://127.0.0.1:$MOCKPORT/_reset" >/dev/null
	say "$name: replaying $EVENTS events"
	python3 "$BENCH/replay.py" "$TRACE" --keys "$KEYS" --base "$BASE" --mock "http://127.0.0.1:$MOCKPORT" \
		--mycnf "$MYCNF" --threads "$THREADS" --latency-ms "$LATENCY_MS" --hours "$HOURS" \
		--start "$START" --admin-key "$ADMIN_KEY" $ropts >"$OUT/replay-$name.json" &
	REPLAY_PID=$!
	wait "$REPLAY_PID"
	REPLAY_PID=""
	say "$name: $(cat "$OUT/replay-$name.json")"
done

{
	echo "# Workload replay ($(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$ROOT" rev-parse --short HEAD))"
	echo
	echo "Trace (bench/trace.py): $(sed 's/^trace: //' "$VAR/trace.txt")."
	echo "Replayed by bench/replay.py with $THREADS threads against lighttpd + $WORKERS workers (test clock); the mock"
	echo "answers each miss after $LATENCY_MS ms; mock-model at \$0.00015 / \$0.0006 per 1K tokens in / out. Bytes: live user"
	echo "cache entries every 10 simulated minutes (peak, trapezoid mean); byte-hours = mean x $HOURS h. Quotas: no limits."
	echo
	echo "| configuration | requests | hit ratio | upstream calls | billed \$ | saved \$ | bytes peak | bytes mean | byte-hours | saved \$ per GiB-hour | warming calls | warming \$ | errors | wall s |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for name in "${NAMES[@]}"; do
		python3 - "$name" "$OUT/replay-$name.json" <<'PY'
import json, sys
n, j = sys.argv[1], json.load(open(sys.argv[2]))
gib_h = j["byte_hours"] / 2**30
per = f"{j['saved_usd'] / gib_h:,.0f}" if gib_h > 0 else "-"
errors = sum(j["other_statuses"].values())
print(f"| {n} | {j['requests']:,} | {j['hit_ratio']:.1%} | {j['upstream_calls']:,} | {j['billed_usd']:.4f} | "
      f"{j['saved_usd']:.4f} | {j['bytes_peak']:,} | {j['bytes_mean']:,} | {j['byte_hours']:,} | {per} | "
      f"{j['warming_calls']:,} | {j['warming_usd']:.4f} | {errors}{' ' + json.dumps(j['other_statuses']) if errors else ''} | {j['elapsed_s']} |")
PY
	done
} >"$OUT/replay.md"
cat "$OUT/replay.md"
