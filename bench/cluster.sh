#!/usr/bin/env bash
# bench/cluster.sh - the cluster subjects of issue 13 (SPEC §12), as root:
#
#     bash bench/cluster.sh [DURATION_SECONDS]      # default 10
#
# Builds quotacache -O2 -g into bench/out/build, then starts, side by side:
#   single   one MariaDB (scripts/mariadb.sh) and one web node (lighttpd, 4 workers)
#   cluster  a 3-node Galera cluster (scripts/galera.sh) and two web nodes
#            (4 workers each): A on node 1 first, B on node 2 first
# and one mock upstream.  Each subject runs on one side at a time (the other
# idles), the same load in total on both sides:
#   rc_many   reserve + commit pairs over 64 users, wrk -c32 (cluster: two wrk
#             -t1 -c16, users 1-32 through A and 33-64 through B: each user's
#             writes kept on one node)
#   rc_hot    the same with one user (cluster: that user through both nodes,
#             the worst case: its counter rows certified on two nodes)
#   miss      /api/v1/generate misses, mock answering after 1 s, c = 256
#             (cluster: 128 through each web node, one user on each; miss_hot:
#             one user through both)
# The cluster's 1213 conflicts and retried statements come from /metrics
# (cluster-wide counters) read before and after each subject.
# Writes bench/out/cluster.md and prints it.  Everything is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
log_tag=bench
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
OUT=$ROOT/bench/out
BUILD=$OUT/build
SV=$OUT/cluster-single
CV=$OUT/cluster
DURATION=${1:-10}
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "usage: bash bench/cluster.sh [DURATION_SECONDS]" >&2; exit 2; }
((EUID == 0)) || die "run as root"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cleanup() {
	local rc=$?
	trap - EXIT
	for d in "$SV" "$CV/webA" "$CV/webB"; do bash "$ROOT/scripts/lighttpd.sh" stop "$d" >/dev/null 2>&1 || true; done
	bash "$ROOT/scripts/mock.sh" stop "$SV" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/mariadb.sh" stop "$SV" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/galera.sh" stop "$CV" >/dev/null 2>&1 || true
	exit "$rc"
}
trap cleanup EXIT

bash "$ROOT/scripts/deps.sh"
command -v wrk >/dev/null || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -q --no-install-recommends wrk >/dev/null; }
log "building quotacache -O2 -g into $BUILD"
bash "$ROOT/scripts/build.sh" "$BUILD" CFLAGS="-O2 -g"
WORKER=$BUILD/src/quotacache-fcgi
CTL=$BUILD/src/quotacachectl

for d in "$SV" "$CV/webA" "$CV/webB"; do bash "$ROOT/scripts/lighttpd.sh" stop "$d" >/dev/null 2>&1 || true; done
bash "$ROOT/scripts/mariadb.sh" stop "$SV" >/dev/null 2>&1 || true
bash "$ROOT/scripts/galera.sh" stop "$CV" >/dev/null 2>&1 || true
rm -rf "$SV" "$CV"
mkdir -p "$SV" "$CV/webA" "$CV/webB"
bash "$ROOT/scripts/mariadb.sh" start "$SV" >&2
log "starting the Galera cluster"
bash "$ROOT/scripts/galera.sh" start "$CV" >&2
IFS=, read -r E1 E2 E3 <<<"$(bash "$ROOT/scripts/galera.sh" endpoints "$CV")"
MOCKPORT=$(free_port)
bash "$ROOT/scripts/mock.sh" start "$SV" "$MOCKPORT" --latency-ms 1000 >&2

common_conf() {
	cat <<CONF
upstream_base_url = http://127.0.0.1:$MOCKPORT/v1
upstream_model = mock-model
upstream_prices = mock-model:0.00015:0.0006
upstream_timeout_ms = 30000
log_level = warn
CONF
}
{ base_config "$SV" "$ROOT"; common_conf; } >"$SV/quotacache.conf"
for w in A B; do
	hosts="$E1,$E2,$E3"
	[[ $w == B ]] && hosts="$E2,$E3,$E1"
	{ echo "db_hosts = $hosts"
	  base_config "$CV" "$ROOT" | grep -v '^db_socket'
	  common_conf; } >"$CV/web$w/quotacache.conf"
done

# users on both sides: 64 no-limit pro_annual users, one hot one, one for misses
setup_users() {   # CONF DIR
	local i email k
	export QC_CONFIG=$1
	"$CTL" migrate >&2
	: >"$2/keys"
	for ((i = 1; i <= 65; i++)); do
		email=$(printf 'rc-%02d@bench.invalid' "$i")
		k=$("$CTL" user add --email "$email" --plan pro_annual 2>/dev/null)
		"$CTL" quota set-override --id "$("$CTL" user list | awk -F'\t' -v e="$email" '$2 == e { print $1 }')" \
			--day unlimited --month unlimited --hour unlimited --reason bench >/dev/null
		echo "$k" >>"$2/keys"
	done
	sed -n 1,32p "$2/keys" >"$2/keys_a"
	sed -n 33,64p "$2/keys" >"$2/keys_b"
	sed -n 1,64p "$2/keys" >"$2/keys_all"
	sed -n 65p "$2/keys" >"$2/key_hot"
	"$CTL" user add --email miss@bench.invalid --plan enterprise 2>/dev/null >"$2/key_miss"
	"$CTL" user add --email miss2@bench.invalid --plan enterprise 2>/dev/null >"$2/key_miss2"
}
log "creating users"
setup_users "$SV/quotacache.conf" "$SV"
setup_users "$CV/webA/quotacache.conf" "$CV"

PS=$(free_port); PA=$(free_port); PB=$(free_port)
bash "$ROOT/scripts/lighttpd.sh" start "$SV" "$PS" 4 "$WORKER" "$SV/quotacache.conf" "$ROOT/www" >&2
bash "$ROOT/scripts/lighttpd.sh" start "$CV/webA" "$PA" 4 "$WORKER" "$CV/webA/quotacache.conf" "$ROOT/www" >&2
bash "$ROOT/scripts/lighttpd.sh" start "$CV/webB" "$PB" 4 "$WORKER" "$CV/webB/quotacache.conf" "$ROOT/www" >&2

metric() {   # PORT NAME: a cluster-wide counter (sum of its series)
	curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" 'index($1, n) == 1 && $0 !~ /^#/ { s += $NF } END { print s + 0 }'
}
worst_retry() {   # PORT: the most retries one statement needed
	curl -s "http://127.0.0.1:$1/metrics" |
		sed -n 's/^qc_db_retried_statements_total{retries="\([0-9]*\)+\{0,1\}"} \([0-9.]*\)$/\1 \2/p' |
		awk '$2 > 0 && $1 > m { m = $1 } END { print m + 0 }'
}
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_p99() { awk '/^ +99%/ { print $2 }' "$1"; }
wrk_bad() { awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { split($0, a, /[ ,]+/); n += a[5] + a[7] + a[9] + a[11] } END { print n + 0 }' "$1"; }

declare -A ROW=()
run() {   # NAME SIDE(single|cluster) SCRIPT C KEYSPEC_A [KEYSPEC_B] -- one subject
	local name=$1 side=$2 script=$3 c=$4 ka=$5 kb=${6:-} o=$OUT/cluster-$1 c0=0 r0=0 c1 r1 worst=-
	local extra=() KA KB
	read -ra KA <<<"$ka"
	read -ra KB <<<"$kb"
	[[ $script == generate.lua ]] && extra=(--timeout 10s)
	if [[ $side == single ]]; then
		wrk -t2 -c"$c" -d2s "${extra[@]}" -s "$ROOT/bench/$script" "http://127.0.0.1:$PS" -- "${KA[@]}" >/dev/null 2>&1 || true
		BENCH_PHASE=$name wrk -t2 -c"$c" -d"${DURATION}s" --latency "${extra[@]}" -s "$ROOT/bench/$script" \
			"http://127.0.0.1:$PS" -- "${KA[@]}" >"$o.wrk" 2>&1
		ROW[$name]="$(wrk_rps "$o.wrk") $(wrk_p99 "$o.wrk") $(wrk_bad "$o.wrk") - - -"
		return
	fi
	wrk -t1 -c$((c / 2)) -d2s "${extra[@]}" -s "$ROOT/bench/$script" "http://127.0.0.1:$PA" -- "${KA[@]}" >/dev/null 2>&1 &
	wrk -t1 -c$((c / 2)) -d2s "${extra[@]}" -s "$ROOT/bench/$script" "http://127.0.0.1:$PB" -- "${KB[@]}" >/dev/null 2>&1 || true
	wait
	sleep 2   # the warm-up's counters reach /metrics
	c0=$(metric "$PA" qc_db_conflicts_total); r0=$(metric "$PA" qc_db_retried_statements_total)
	BENCH_PHASE=$name-a wrk -t1 -c$((c / 2)) -d"${DURATION}s" --latency "${extra[@]}" -s "$ROOT/bench/$script" \
		"http://127.0.0.1:$PA" -- "${KA[@]}" >"$o-a.wrk" 2>&1 &
	BENCH_PHASE=$name-b wrk -t1 -c$((c / 2)) -d"${DURATION}s" --latency "${extra[@]}" -s "$ROOT/bench/$script" \
		"http://127.0.0.1:$PB" -- "${KB[@]}" >"$o-b.wrk" 2>&1
	wait
	sleep 2
	c1=$(metric "$PA" qc_db_conflicts_total); r1=$(metric "$PA" qc_db_retried_statements_total)
	worst=$(worst_retry "$PA")
	ROW[$name]="$(awk -v a="$(wrk_rps "$o-a.wrk")" -v b="$(wrk_rps "$o-b.wrk")" 'BEGIN { printf "%.1f", a + b }') \
$(printf '%s\n%s\n' "$(wrk_p99 "$o-a.wrk")" "$(wrk_p99 "$o-b.wrk")" | sort -h | tail -n 1) \
$(($(wrk_bad "$o-a.wrk") + $(wrk_bad "$o-b.wrk"))) $(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }') \
$(awk -v a="$r0" -v b="$r1" 'BEGIN { print b - a }') $worst"
}

log "reserve + commit, 64 users"
run rc_many_single single reserve_commit.lua 32 "@$SV/keys_all"
run rc_many_cluster cluster reserve_commit.lua 32 "@$CV/keys_a" "@$CV/keys_b"
log "reserve + commit, one hot user"
run rc_hot_single single reserve_commit.lua 32 "@$SV/key_hot"
run rc_hot_cluster cluster reserve_commit.lua 32 "@$CV/key_hot" "@$CV/key_hot"
log "generate misses, 1 s mock, c = 256"
run miss_single single generate.lua 256 "$(cat "$SV/key_miss") miss"
run miss_cluster cluster generate.lua 256 "$(cat "$CV/key_miss") miss" "$(cat "$CV/key_miss2") miss"
run miss_hot_cluster cluster generate.lua 256 "$(cat "$CV/key_miss") miss" "$(cat "$CV/key_miss") miss"

{
	echo "# Cluster benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$ROOT" rev-parse --short HEAD))"
	echo
	echo "single: one MariaDB + one web node (4 workers); cluster: 3 Galera nodes + two web nodes"
	echo "(4 workers each), the load split evenly over both.  All on the same 2 cores.  ${DURATION} s per subject."
	echo "conflicts: 1213/1205 errors seen and retried by the workers during the subject (cluster-wide);"
	echo "retried: statements that needed a retry; worst: the most retries one statement needed (since start)."
	echo
	echo "| subject | req/s | p99 | errors | 1213 conflicts | statements retried | worst retries |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for n in rc_many_single rc_many_cluster rc_hot_single rc_hot_cluster miss_single miss_cluster miss_hot_cluster; do
		read -r rps p99 bad conf retr worst <<<"${ROW[$n]}"
		echo "| $n | $rps | $p99 | $bad | $conf | $retr | $worst |"
	done
} | tee "$OUT/cluster.md"
