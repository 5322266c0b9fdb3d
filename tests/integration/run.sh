#!/usr/bin/env bash
# run.sh - the integration suite: start a private MariaDB and lighttpd (with
# the worker built under ASan+UBSan when configured so) on a free loopback
# port, run every test_*.py and the database-backed C tests against them,
# stop everything (even on failure) and fail on any sanitizer report.
# Prints TAP lines; tests/run_all.sh counts them.
set -u
BUILD=${QC_BUILD:?}; SRC=${QC_SRC:?}
VAR=$BUILD/tests/var
WORKERS=${QC_TEST_WORKERS:-4}
export QC_VAR=$VAR
# shellcheck source=scripts/lib.sh
. "$SRC/scripts/lib.sh"

stop_all() {
	bash "$SRC/scripts/lighttpd.sh" stop "$VAR" >/dev/null 2>&1
	bash "$SRC/scripts/mock.sh" stop "$VAR" >/dev/null 2>&1
	bash "$SRC/scripts/mariadb.sh" stop "$VAR" >/dev/null 2>&1
}

# a previous run that was killed may have left servers behind
[ -d "$VAR" ] && stop_all
rm -rf "$VAR"
mkdir -p "$VAR/san"
trap 'stop_all' EXIT

bash "$SRC/scripts/mariadb.sh" start "$VAR" || { echo "Bail out! mariadb did not start"; exit 1; }

# the mock upstream, with a key the gateway must send and never reveal
MOCK_PORT=$(free_port)
UPKEY="sk-test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077; printf '%s\n' "$UPKEY" >"$VAR/secrets/upstream_key")
export QC_MOCK_URL=http://127.0.0.1:$MOCK_PORT QC_UPSTREAM_SECRET=$UPKEY
bash "$SRC/scripts/mock.sh" start "$VAR" "$MOCK_PORT" --expect-key "$UPKEY" \
	|| { echo "Bail out! mock upstream did not start"; exit 1; }

# the level-crossing webhook posts to a receiver that test_alerts.py runs on
# this port (nothing listens there otherwise: posts fail and are retried)
ALERT_PORT=$(free_port)
export QC_ALERT_PORT=$ALERT_PORT
# ... signed with this secret (X-Quotacache-Signature), which test_alerts.py checks
QC_ALERT_SECRET="whsec-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077; printf '%s\n' "$QC_ALERT_SECRET" >"$VAR/secrets/alert_webhook_secret")
export QC_ALERT_SECRET
CONF=$VAR/quotacache.conf
{ base_config "$VAR" "$SRC"; cat <<CONF
auth_cache_seconds = 1
allow_test_clock = 1
cache_user_max_bytes = 4194304
upstream_base_url = http://127.0.0.1:$MOCK_PORT/v1
upstream_key_file = $VAR/secrets/upstream_key
upstream_model = mock-model
upstream_timeout_ms = 2000
upstream_connect_timeout_ms = 500
upstream_retries = 2
upstream_backoff_ms = 50
upstream_prices = mock-model:0.001:0.002,gpt-4o-mini:0.00015:0.0006
reservation_ttl = 60
alert_webhook_url = http://127.0.0.1:$ALERT_PORT/hook
alert_webhook_secret_file = $VAR/secrets/alert_webhook_secret
alert_webhook_timeout_ms = 1000
alert_webhook_attempts = 8
alert_webhook_backoff_ms = 200
log_level = info
CONF
} >"$CONF"
export QC_CONFIG=$CONF QC_AUTH_CACHE_SECONDS=1
# whether this build honours X-QC-Test-Now (configure --enable-test-clock)
if grep -q -- '-DQC_TEST_CLOCK=1' "$BUILD/Makefile" 2>/dev/null; then export QC_TEST_CLOCK_BUILD=1; else export QC_TEST_CLOCK_BUILD=0; fi
export QC_CTL=$BUILD/src/quotacachectl
# sanitizer reports go to files; any file there fails the run
export ASAN_OPTIONS="log_path=$VAR/san/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$VAR/san/ubsan:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="log_path=$VAR/san/lsan"
export TSAN_OPTIONS="log_path=$VAR/san/tsan:halt_on_error=0:second_deadlock_stack=1"

# make install puts every migration, prompt and dashboard file in place
DEST=$VAR/destdir
if make -s -C "$BUILD" install DESTDIR="$DEST" >"$VAR/install.log" 2>&1; then
	share=$(find "$DEST" -type d -path '*/share/quotacache' | head -n 1)
	n_src=$(ls "$SRC"/sql/*.sql | wc -l); n_inst=$(ls "$share"/sql/*.sql 2>/dev/null | wc -l)
	if [ "$n_src" -eq "$n_inst" ] && [ -f "$share/www/index.html" ] && [ -f "$share/www/js/dashboard.js" ] &&
	   [ "$(ls "$share"/prompts | wc -l)" -eq "$(ls "$SRC"/conf/prompts | wc -l)" ] &&
	   [ -x "$(find "$DEST" -name quotacachectl -type f | head -n 1)" ]; then
		echo "ok - make install installs the programs, all $n_src migrations, prompts and the dashboard"
	else
		echo "not ok - make install installs everything (sql $n_inst of $n_src)"
	fi
else
	echo "not ok - make install succeeds (see $VAR/install.log)"
fi

"$QC_CTL" migrate || { echo "Bail out! migrate failed"; exit 1; }
out=$("$QC_CTL" migrate)
case "$out" in
	"applied 0 migration(s)"*) echo "ok - migrate is idempotent (second run applies nothing)" ;;
	*) echo "not ok - migrate is idempotent: $out" ;;
esac

PORT=$(free_port)
export QC_URL=http://127.0.0.1:$PORT
mkdir -p "$VAR/www"
bash "$SRC/scripts/lighttpd.sh" start "$VAR" "$PORT" "$WORKERS" "$BUILD/src/quotacache-fcgi" \
	"$CONF" "$SRC/www" || { echo "Bail out! lighttpd did not start"; exit 1; }

cd "$SRC/tests/integration" || exit 1
# the API suites; QC_SERVER names the web server in every check
run_api_suites() {
	for t in ${QC_TESTS:-test_*.py}; do
		# these stop the database or kill workers: they run last, behind lighttpd
		case "$t" in test_outage.py|test_faults.py) continue ;; esac
		echo "# $QC_SERVER: $t"
		python3 "$t"; rc=$?
		# 3: some checks failed (their lines say so); anything else is a crash
		[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || echo "not ok - [$QC_SERVER] $t exited $rc (see the lines above)"
	done
}
export QC_SERVER=${QC_SERVER:-lighttpd}
run_api_suites
# the browser test of the dashboard (tests/browser/run.sh installs its tools)
if [ -f "$SRC/tests/browser/run.sh" ] && [ "${QC_SKIP_BROWSER:-0}" != 1 ]; then
	echo "# browser"
	bash "$SRC/tests/browser/run.sh" || echo "# browser exited $?"
fi
# the same API suites through Apache + mod_fcgid (same database and mock)
if [ -f "$SRC/tests/integration/apache_pass.sh" ] && [ "${QC_SKIP_APACHE:-0}" != 1 ]; then
	export -f run_api_suites
	export CONF WORKERS
	bash "$SRC/tests/integration/apache_pass.sh" || echo "# apache pass exited $?"
	export QC_SERVER=lighttpd QC_URL=http://127.0.0.1:$PORT
fi
# and through Apache + mod_proxy_fcgi in front of a spawn-fcgi pool on one socket
if [ -f "$SRC/tests/integration/apache_proxy_pass.sh" ] && [ "${QC_SKIP_APACHE_PROXY:-0}" != 1 ]; then
	export -f run_api_suites
	export CONF WORKERS
	bash "$SRC/tests/integration/apache_proxy_pass.sh" || echo "# apache-proxy pass exited $?"
	export QC_SERVER=lighttpd QC_URL=http://127.0.0.1:$PORT
fi
# C tests of the database-backed modules (settable clock), own database
for t in "$BUILD"/tests/db/test_*; do
	[ -x "$t" ] || continue
	echo "# $(basename "$t")"
	"$t" || echo "# $(basename "$t") exited $?"
done
if [ "${QC_SKIP_OUTAGE:-0}" != 1 ]; then
	for t in test_faults.py test_outage.py; do
		[ -f "$t" ] || continue
		echo "# $t"
		python3 "$t"; rc=$?
		[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || echo "not ok - [$QC_SERVER] $t exited $rc (see the lines above)"
	done
fi

# lighttpd stops its workers with SIGTERM: a clean exit runs LeakSanitizer
bash "$SRC/scripts/lighttpd.sh" stop "$VAR" >/dev/null 2>&1
sleep 0.5
# no key may reach a log line: neither ours nor the upstream's
if grep -rqE 'qck_[A-Za-z0-9_-]{32}' "$VAR/lighttpd/"*.log "$VAR/mock/"*.log 2>/dev/null; then
	echo "not ok - no API key appears in any log"
else
	echo "ok - no API key appears in any log"
fi
if grep -rqF "$UPKEY" "$VAR/lighttpd/" "$VAR/mock/mock.log" "$BUILD/tests/out/" 2>/dev/null; then
	echo "not ok - the upstream key appears in no log and no test output"
else
	echo "ok - the upstream key appears in no log and no test output"
fi
reports=$(ls "$VAR/san" 2>/dev/null)
if [ -n "$reports" ]; then
	echo "not ok - sanitizers stayed silent"
	for f in "$VAR"/san/*; do sed 's/^/# /' "$f" | head -n 40; done
else
	echo "ok - sanitizers stayed silent (ASan, UBSan, LSan over all workers and CLI runs)"
fi
