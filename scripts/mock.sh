#!/usr/bin/env bash
# mock.sh start|stop VARDIR [PORT [mock options...]] - the mock
# OpenAI-compatible upstream (tests/mock_upstream.py) on 127.0.0.1:PORT,
# logging to VARDIR/mock/mock.log, pid in VARDIR/mock/mock.pid.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cmd=${1:?start|stop}; VAR=${2:?VARDIR}
DIR=$VAR/mock
PIDF=$DIR/mock.pid
case $cmd in
start)
	PORT=${3:?PORT}; shift 3
	mkdir -p "$DIR"
	if [ -s "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; then
		echo "mock: already running (pid $(cat "$PIDF"))" >&2
		exit 0
	fi
	python3 "$ROOT/tests/mock_upstream.py" --port "$PORT" --pidfile "$PIDF" "$@" \
		>>"$DIR/mock.log" 2>&1 </dev/null &
	for _ in $(seq 1 50); do
		if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/_calls" 2>/dev/null; then
			echo "mock: upstream on http://127.0.0.1:$PORT/v1" >&2
			exit 0
		fi
		sleep 0.1
	done
	echo "mock: did not start; see $DIR/mock.log" >&2
	exit 1
	;;
stop)
	if [ -s "$PIDF" ]; then
		pid=$(cat "$PIDF")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		rm -f "$PIDF"
	fi
	;;
*) echo "usage: $0 start|stop VARDIR [PORT ...]" >&2; exit 2 ;;
esac
