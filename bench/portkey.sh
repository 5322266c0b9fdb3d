#!/usr/bin/env bash
# bench/portkey.sh install|start|stop - the Portkey AI gateway (open source,
# npm @portkey-ai/gateway) as the Node comparison of SPEC §8 (portkey_miss in
# bench/run.sh).
#
#   bash bench/portkey.sh install              # into bench/out/portkey if missing
#   bash bench/portkey.sh start VARDIR PORT    # on 127.0.0.1:PORT
#   bash bench/portkey.sh stop VARDIR
#
# install: npm install --prefix bench/out/portkey @portkey-ai/gateway@$VERSION
# (--ignore-scripts: its only script is a patch-package postinstall, and the
# package ships no patches). Nothing of it is committed (bench/out is ignored).
#
# start: one node process (the package's own start script, build/start-server.js,
# a single event loop as shipped) with --port=PORT --headless, NODE_ENV=production
# (no web UI, no /log/stream), a clean environment (env -i: no proxies, no
# cloud credentials, no REDIS_CONNECTION_STRING, no NODE_OPTIONS),
# TRUSTED_CUSTOM_HOSTS=127.0.0.1 (the only custom host it accepts) and
# bench/portkey_loopback.cjs preloaded, which makes its listen() bind
# 127.0.0.1 (the start script passes no hostname: it would listen on all
# interfaces). Then it checks with ss that the process listens on 127.0.0.1
# only. The gateway has no telemetry: it only calls out to the provider a
# request names (here the mock, through x-portkey-custom-host), to
# api.portkey.ai only for Portkey-hosted guardrails and files (not used).
# Log: VARDIR/portkey/portkey.log; pid: VARDIR/portkey/portkey.pid.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
VERSION=1.15.2
PREFIX=$ROOT/bench/out/portkey
PKG=$PREFIX/node_modules/@portkey-ai/gateway
say() { echo "portkey: $*" >&2; }
die() { say "$*"; exit 1; }

installed_version() {
	node -e 'process.stdout.write(require(process.argv[1]).version)' "$PKG/package.json" 2>/dev/null || true
}

install() {
	{ command -v node && command -v npm; } >/dev/null || die "node and npm are needed"
	[[ $(installed_version) == "$VERSION" ]] && return 0
	say "installing @portkey-ai/gateway@$VERSION into $PREFIX"
	mkdir -p "$PREFIX"
	npm install --prefix "$PREFIX" --no-audit --no-fund --ignore-scripts --loglevel=error \
		"@portkey-ai/gateway@$VERSION" >&2
	[[ $(installed_version) == "$VERSION" ]] || die "install failed ($PKG)"
}

# pid_of PIDFILE: the pid in it, if that process is still this gateway
pid_of() {
	local p
	p=$(cat "$1" 2>/dev/null) && [[ $p =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'gateway/build/start-server.js' || return 1
	echo "$p"
}

cmd=${1:?install|start|stop}
case $cmd in
install) install ;;
start)
	VAR=${2:?VARDIR}; PORT=${3:?PORT}
	DIR=$VAR/portkey PIDF=$VAR/portkey/portkey.pid
	install
	mkdir -p "$DIR"
	if pid=$(pid_of "$PIDF") && kill -0 "$pid" 2>/dev/null; then die "already running (pid $pid)"; fi
	env -i PATH="$PATH" HOME="${HOME:-/root}" NODE_ENV=production TRUSTED_CUSTOM_HOSTS=127.0.0.1 \
		node --require "$ROOT/bench/portkey_loopback.cjs" "$PKG/build/start-server.js" \
		--port="$PORT" --headless >>"$DIR/portkey.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$PIDF"
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || die "exited at start; see $DIR/portkey.log"
		if [[ $(curl -sS -m 2 "http://127.0.0.1:$PORT/" 2>/dev/null) == *"AI Gateway"* ]]; then
			# every listening TCP socket of the process is on 127.0.0.1
			socks=$(ss -Htlnp 2>/dev/null | awk -v p="pid=$pid," 'index($0, p) { print $4 }')
			[[ -n $socks ]] || { bash "$0" stop "$VAR"; die "ss shows no listening socket of pid $pid"; }
			if grep -qv '^127\.0\.0\.1:' <<<"$socks"; then
				bash "$0" stop "$VAR"
				die "listens on more than loopback: ${socks//$'\n'/ }"
			fi
			say "gateway on http://127.0.0.1:$PORT (pid $pid; listening: ${socks//$'\n'/ })"
			exit 0
		fi
		sleep 0.1
	done
	bash "$0" stop "$VAR"
	die "did not answer on port $PORT; see $DIR/portkey.log"
	;;
stop)
	VAR=${2:?VARDIR}; PIDF=$VAR/portkey/portkey.pid
	if pid=$(pid_of "$PIDF"); then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$PIDF"
	;;
*) echo "usage: $0 install | start VARDIR PORT | stop VARDIR" >&2; exit 2 ;;
esac
