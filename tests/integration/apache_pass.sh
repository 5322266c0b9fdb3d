#!/usr/bin/env bash
# apache_pass.sh - the API suites again, through Apache 2.4 + mod_fcgid, against
# the database and mock upstream that tests/integration/run.sh started. Called
# by run.sh with QC_BUILD QC_SRC QC_VAR CONF WORKERS QC_CONFIG QC_CTL, the
# sanitizer options, QC_MOCK_URL QC_UPSTREAM_SECRET QC_AUTH_CACHE_SECONDS and the
# function run_api_suites exported. Prints TAP lines; run_all.sh counts them.
#
# Apache's workers run as www-data (the lighttpd pass runs its workers as root):
# they get group-readable copies of the two secret files (0640 root:www-data in
# a 0750 root:www-data directory; the worker refuses world-readable ones) and a
# sanitizer log directory they can write to.
set -u
BUILD=${QC_BUILD:?}; SRC=${QC_SRC:?}; VAR=${QC_VAR:?}; CONF=${CONF:?}
MAXPROCS=${QC_APACHE_MAXPROCS:-8}
WWW_USER=${QC_APACHE_USER:-www-data}
WWW_GROUP=$(id -gn "$WWW_USER")
APACHE=$SRC/scripts/apache.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
conf_value() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$CONF" | tail -n 1; }

t0=$(date +%s)
started=0
stop_apache() {
	if [ "$started" != 1 ]; then
		bash "$APACHE" stop "$VAR" >/dev/null 2>&1
		return
	fi
	started=0
	if bash "$APACHE" stop "$VAR" 2>"$VAR/apache-stop.log"; then
		echo "ok - [apache] stopped cleanly (workers exited on SIGTERM)"
	else
		echo "not ok - [apache] stopped cleanly"
		sed 's/^/# /' "$VAR/apache-stop.log"
	fi
	# mod_fcgid logs a SIGKILL'ed, crashed or signalled worker and mutex failures
	local bad='SIGKILL|stop signal 9|unexpected signal|coredump|can.t (un)?lock process table'
	if grep -qE "$bad" "$VAR/apache/error.log" 2>/dev/null; then
		echo "not ok - [apache] no worker killed or crashed, no mutex failure"
		grep -E "$bad" "$VAR/apache/error.log" | head -n 5 | sed 's/^/# /'
	else
		echo "ok - [apache] no worker killed or crashed, no mutex failure"
	fi
	# the workers' stderr goes to Apache's error log: no key may reach it
	if grep -qE 'qck_[A-Za-z0-9_-]{32}' "$VAR/apache/"*.log 2>/dev/null \
		|| { [ -n "${QC_UPSTREAM_SECRET:-}" ] && grep -rqF "$QC_UPSTREAM_SECRET" "$VAR/apache/" 2>/dev/null; }; then
		echo "not ok - [apache] no API key or upstream key in Apache's logs"
	else
		echo "ok - [apache] no API key or upstream key in Apache's logs"
	fi
	echo "# apache pass took $(($(date +%s) - t0)) s"
}
trap 'stop_apache' EXIT
trap 'exit 1' INT TERM
# a previous run that was killed may have left it running
bash "$APACHE" stop "$VAR" >/dev/null 2>&1

# secrets for the www-data workers, sanitizer reports, and a database of its
# own (test_cli.py adds a fixed e-mail address; the lighttpd pass filled quotacache)
. "$SRC/tests/integration/www_pass.sh"
www_pass_prepare "[apache]" quotacache_apache

APORT=$(free_port)
if bash "$APACHE" start "$VAR" "$APORT" "$MAXPROCS" "$BUILD/src/quotacache-fcgi" "$CONF" "$SRC/www" \
	"${ENV_ARGS[@]}" 2>"$VAR/apache-start.log"; then
	started=1
	echo "ok - [apache] started with mod_fcgid (up to $MAXPROCS workers as $WWW_USER, port $APORT)"
else
	echo "not ok - [apache] started with mod_fcgid"
	sed 's/^/# /' "$VAR/apache-start.log"
	exit 1
fi

export QC_SERVER=apache QC_URL=http://127.0.0.1:$APORT
cd "$SRC/tests/integration" || exit 1
run_api_suites
