#!/usr/bin/env bash
# apache_proxy_pass.sh - the API suites again, through Apache 2.4 + mod_proxy_fcgi
# in front of a spawn-fcgi pool of WORKERS workers on one unix socket
# (scripts/apache_proxy.sh), against the database and mock upstream that
# tests/integration/run.sh started. Called by run.sh like apache_pass.sh, with
# QC_BUILD QC_SRC QC_VAR CONF WORKERS QC_CONFIG QC_CTL, the sanitizer options,
# QC_MOCK_URL QC_UPSTREAM_SECRET QC_AUTH_CACHE_SECONDS and the function
# run_api_suites exported. Prints TAP lines; run_all.sh counts them.
#
# The workers run as www-data (QC_WORKER_USER): like the mod_fcgid pass they get
# group-readable copies of the two secret files (0640 root:www-data in a 0750
# root:www-data directory; the worker refuses world-readable ones) and a
# sanitizer log directory they can write to.
set -u
BUILD=${QC_BUILD:?}; SRC=${QC_SRC:?}; VAR=${QC_VAR:?}; CONF=${CONF:?}
NWORKERS=${QC_APACHE_PROXY_WORKERS:-${WORKERS:-4}}
export QC_APACHE_USER=${QC_APACHE_USER:-www-data}
export QC_WORKER_USER=${QC_WORKER_USER:-$QC_APACHE_USER}
WWW_GROUP=$(id -gn "$QC_APACHE_USER")
APX=$SRC/scripts/apache_proxy.sh
ADIR=$VAR/apache-proxy
TAG="[apache-proxy]"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
conf_value() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$CONF" | tail -n 1; }
# live pids in the pool's pid file
pool_alive() {
	local pid n=0
	while read -r pid || [ -n "$pid" ]; do
		[ -n "$pid" ] && [ -d "/proc/$pid" ] && ! grep -q '^[^)]*) Z' "/proc/$pid/stat" 2>/dev/null && n=$((n + 1))
	done <"$ADIR/workers.pid"
	echo "$n"
}

t0=$(date +%s)
started=0
stop_apache_proxy() {
	if [ "$started" != 1 ]; then
		bash "$APX" stop "$VAR" >/dev/null 2>&1
		return
	fi
	started=0
	# a worker that crashed during the suites is simply gone (nobody respawns it)
	local n pids p missing=""
	pids=$(cat "$ADIR/workers.pid" 2>/dev/null)
	n=$(pool_alive 2>/dev/null || echo 0)
	if [ "$n" -eq "$NWORKERS" ]; then
		echo "ok - $TAG all $NWORKERS workers still alive after the suites"
	else
		echo "not ok - $TAG all $NWORKERS workers still alive after the suites ($n alive)"
		tail -n 20 "$ADIR/worker.log" 2>/dev/null | sed 's/^/# /'
	fi
	if bash "$APX" stop "$VAR" 2>"$VAR/apache-proxy-stop.log"; then
		echo "ok - $TAG stopped cleanly (workers exited on SIGTERM)"
	else
		echo "not ok - $TAG stopped cleanly"
		sed 's/^/# /' "$VAR/apache-proxy-stop.log"
	fi
	# the workers' stderr reaches worker.log (log lines carry the pid)
	for p in $pids; do
		grep -qF "[$p]" "$ADIR/worker.log" 2>/dev/null || missing="$missing $p"
	done
	if [ -n "$pids" ] && [ -z "$missing" ]; then
		echo "ok - $TAG every worker's log lines are in worker.log"
	else
		echo "not ok - $TAG every worker's log lines are in worker.log (none from:${missing:- any})"
	fi
	# mod_proxy_fcgi could not reach the pool (AH02454 connect, AH00959 backend
	# disabled, AH01079), could not write a request (AH01073), or the pool broke
	# off or garbled an answer (AH01067-01075); or an Apache child died
	local bad='AH0245[34]|AH0095[79]|AH01079|AH0107[0-5]|AH0106[789]|exit signal|Segmentation'
	if grep -qE "$bad" "$ADIR/error.log" 2>/dev/null; then
		echo "not ok - $TAG no backend connection failure or broken answer in Apache's error log"
		grep -E "$bad" "$ADIR/error.log" | head -n 5 | sed 's/^/# /'
	else
		echo "ok - $TAG no backend connection failure or broken answer in Apache's error log"
	fi
	# no key may reach a log line: neither ours nor the upstream's
	if grep -qE 'qck_[A-Za-z0-9_-]{32}' "$ADIR/"*.log 2>/dev/null \
		|| { [ -n "${QC_UPSTREAM_SECRET:-}" ] && grep -rqF "$QC_UPSTREAM_SECRET" "$ADIR/" 2>/dev/null; }; then
		echo "not ok - $TAG no API key or upstream key in Apache's or the workers' logs"
	else
		echo "ok - $TAG no API key or upstream key in Apache's or the workers' logs"
	fi
	echo "# apache-proxy pass took $(($(date +%s) - t0)) s"
}
trap 'stop_apache_proxy' EXIT
trap 'exit 1' INT TERM
# a previous run that was killed may have left it running
bash "$APX" stop "$VAR" >/dev/null 2>&1

# secrets for the www-data workers, sanitizer reports, and a database of its own
. "$SRC/tests/integration/www_pass.sh"
www_pass_prepare "$TAG" quotacache_apache_proxy

APORT=$(free_port)
if bash "$APX" start "$VAR" "$APORT" "$NWORKERS" "$BUILD/src/quotacache-fcgi" "$CONF" "$SRC/www" \
	"${ENV_ARGS[@]}" 2>"$VAR/apache-proxy-start.log"; then
	started=1
	echo "ok - $TAG started with mod_proxy_fcgi ($NWORKERS workers as $QC_WORKER_USER on one socket, port $APORT)"
else
	echo "not ok - $TAG started with mod_proxy_fcgi"
	sed 's/^/# /' "$VAR/apache-proxy-start.log"
	exit 1
fi
export QC_SERVER=apache-proxy QC_URL=http://127.0.0.1:$APORT

# what this configuration adds over the API suites: the socket and the pool's
# environment, the dashboard at /, /v1/ routed to the worker, nothing else is
# spawn-fcgi gives the socket to the workers' user (-u), the group to Apache's (-G)
if [ "$(stat -c '%U:%G %a' "$ADIR/qc.sock" 2>/dev/null)" = "$QC_WORKER_USER:$WWW_GROUP 660" ]; then
	echo "ok - $TAG the pool's socket is $QC_WORKER_USER:$WWW_GROUP 0660"
else
	echo "not ok - $TAG the pool's socket is $QC_WORKER_USER:$WWW_GROUP 0660 ($(stat -c '%U:%G %a' "$ADIR/qc.sock" 2>&1))"
fi
pid=$(head -n 1 "$ADIR/workers.pid" 2>/dev/null)
wenv=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null)
if [ "$(stat -c %U "/proc/$pid" 2>/dev/null)" = "$QC_WORKER_USER" ] \
	&& grep -qxF "QC_CONFIG=$(realpath "$CONF")" <<<"$wenv" \
	&& { [ -z "${ASAN_OPTIONS:-}" ] || grep -qxF "ASAN_OPTIONS=$ASAN_OPTIONS" <<<"$wenv"; } \
	&& { [ -z "${LSAN_OPTIONS:-}" ] || grep -qxF "LSAN_OPTIONS=$LSAN_OPTIONS" <<<"$wenv"; } \
	&& ! grep -q '^QC_URL=' <<<"$wenv"; then
	echo "ok - $TAG workers run as $QC_WORKER_USER with QC_CONFIG and the sanitizer options, nothing else inherited"
else
	echo "not ok - $TAG workers run as $QC_WORKER_USER with QC_CONFIG and the sanitizer options, nothing else inherited"
	echo "$wenv" | sed 's/^/# /'
fi
code=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$QC_URL/")
if [ "$code" = "200 text/html; charset=utf-8" ]; then
	echo "ok - $TAG the dashboard is served at /"
else
	echo "not ok - $TAG the dashboard is served at / ($code)"
fi
# the worker answers /v1/... (problem+json, whatever the status); Apache never does
code=$(curl -s -o /dev/null -w '%{content_type}' "$QC_URL/v1/models")
case "$code" in
	application/problem+json*|application/json*) echo "ok - $TAG /v1/ reaches the worker" ;;
	*) echo "not ok - $TAG /v1/ reaches the worker ($code)" ;;
esac
code=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$QC_URL/metricsx")
case "$code" in
	404\ text/html*) echo "ok - $TAG only exactly /metrics reaches the worker (/metricsx: Apache's 404)" ;;
	*) echo "not ok - $TAG only exactly /metrics reaches the worker (/metricsx: $code)" ;;
esac

cd "$SRC/tests/integration" || exit 1
run_api_suites
