#!/usr/bin/env bash
# run.sh - the cluster suite (SPEC §12, issue 13): a 3-node MariaDB Galera
# cluster on loopback (scripts/galera.sh) and two web nodes, each a lighttpd
# with its own pool of workers whose first database endpoint is its own
# Galera node (web A -> node 1, web B -> node 2; node 3 only takes over), the
# mock upstream, then tests/cluster/test_cluster.py against them.  Everything
# is stopped at the end, even on failure.  Prints TAP lines; run_all.sh
# counts them.  Bounded: the whole run is killed after QC_CLUSTER_TIMEOUT s.
set -u
BUILD=${QC_BUILD:?}; SRC=${QC_SRC:?}
VAR=$BUILD/tests/cluster-var
WORKERS=${QC_TEST_WORKERS:-4}
export QC_VAR=$VAR
# shellcheck source=scripts/lib.sh
. "$SRC/scripts/lib.sh"

stop_all() {
	bash "$SRC/scripts/lighttpd.sh" stop "$VAR/webA" >/dev/null 2>&1
	bash "$SRC/scripts/lighttpd.sh" stop "$VAR/webB" >/dev/null 2>&1
	bash "$SRC/scripts/mock.sh" stop "$VAR" >/dev/null 2>&1
	bash "$SRC/scripts/galera.sh" stop "$VAR" >/dev/null 2>&1
}

[ -d "$VAR" ] && stop_all
rm -rf "$VAR"
mkdir -p "$VAR/san" "$VAR/webA" "$VAR/webB"
trap 'stop_all' EXIT

t0=$(date +%s)
bash "$SRC/scripts/galera.sh" start "$VAR" >"$VAR/galera-start.log" 2>&1 ||
	{ echo "Bail out! the Galera cluster did not start"; tail -n 30 "$VAR/galera-start.log"; exit 1; }
echo "# cluster of three Synced in $(($(date +%s) - t0)) s"
EPS=$(bash "$SRC/scripts/galera.sh" endpoints "$VAR")
IFS=, read -r E1 E2 E3 <<<"$EPS"

MOCK_PORT=$(free_port)
export QC_MOCK_URL=http://127.0.0.1:$MOCK_PORT
bash "$SRC/scripts/mock.sh" start "$VAR" "$MOCK_PORT" || { echo "Bail out! mock upstream did not start"; exit 1; }

conf() {   # DB_HOSTS: a web node's config (its own Galera node first)
	cat <<CONF
db_hosts = $1
db_name = quotacache
db_user = quotacache
db_password_file = $VAR/secrets/db_password
migrate_user = quotacache_admin
migrate_password_file = $VAR/secrets/db_admin_password
db_failback_s = 3
sql_dir = $SRC/sql
prompts_dir = $SRC/conf/prompts
auth_cache_seconds = 1
cache_user_max_bytes = 4194304
upstream_base_url = http://127.0.0.1:$MOCK_PORT/v1
upstream_model = mock-model
upstream_timeout_ms = 5000
upstream_connect_timeout_ms = 500
upstream_prices = mock-model:0.001:0.002
reservation_ttl = 60
log_level = info
CONF
}
conf "$E1,$E2,$E3" >"$VAR/webA/quotacache.conf"
conf "$E2,$E3,$E1" >"$VAR/webB/quotacache.conf"
export QC_CONFIG=$VAR/webA/quotacache.conf QC_CONFIG_B=$VAR/webB/quotacache.conf
export QC_CTL=$BUILD/src/quotacachectl QC_GALERA="$SRC/scripts/galera.sh"
export ASAN_OPTIONS="log_path=$VAR/san/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$VAR/san/ubsan:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="log_path=$VAR/san/lsan"

"$QC_CTL" migrate >"$VAR/migrate.log" 2>&1 || { echo "Bail out! migrate on the cluster failed"; cat "$VAR/migrate.log"; exit 1; }
echo "ok - migrations apply on the Galera cluster ($(head -n 1 "$VAR/migrate.log"))"

PA=$(free_port); PB=$(free_port)
export QC_URL=http://127.0.0.1:$PA QC_URL_B=http://127.0.0.1:$PB
# for the suite's last phase, which restarts both web nodes as two regions
export QC_BUILD=$BUILD QC_SRC=$SRC QC_WORKERS=$WORKERS
for w in A B; do
	p=$PA; [ $w = B ] && p=$PB
	bash "$SRC/scripts/lighttpd.sh" start "$VAR/web$w" "$p" "$WORKERS" "$BUILD/src/quotacache-fcgi" \
		"$VAR/web$w/quotacache.conf" "$SRC/www" >"$VAR/web$w/start.log" 2>&1 ||
		{ echo "Bail out! web node $w did not start"; cat "$VAR/web$w/start.log"; exit 1; }
done

cd "$SRC/tests/cluster" || exit 1
timeout "${QC_CLUSTER_TIMEOUT:-600}" python3 "${QC_CLUSTER_SCRIPT:-test_cluster.py}"
rc=$?
[ $rc -eq 124 ] && echo "not ok - the cluster suite finished within ${QC_CLUSTER_TIMEOUT:-600} s"

# sanitizer reports of the workers fail the run
if ls "$VAR"/san/* >/dev/null 2>&1; then
	echo "not ok - sanitizers silent on both web nodes"
	head -n 40 "$VAR"/san/* | sed 's/^/# /'
else
	echo "ok - sanitizers silent on both web nodes"
fi
echo "# cluster suite took $(($(date +%s) - t0)) s"
exit $rc
