#!/usr/bin/env bash
# run_all.sh BUILDDIR SRCDIR - run every test suite (unit, then integration
# against a private MariaDB + lighttpd, then the Debian package test) and end
# with "N passed, N failed".
# Skip parts with QC_SKIP_UNIT, QC_SKIP_INTEGRATION, QC_SKIP_TSAN,
# QC_SKIP_CLUSTER, QC_SKIP_PACKAGE (=1); QC_ONLY_CLUSTER / QC_ONLY_PACKAGE=1
# run one part alone.
# Each suite prints TAP lines ("ok N - ..." / "not ok N - ..."); a suite that
# exits non-zero without a failing line counts as one failure.
set -u
BUILD=${1:?builddir}; SRC=${2:?srcdir}
export QC_BUILD=$BUILD QC_SRC=$SRC
OUT=$BUILD/tests/out
mkdir -p "$OUT"
pass=0; fail=0

run_suite() {   # name command...
	local name=$1; shift
	local log=$OUT/$name.log
	echo "== $name"
	"$@" >"$log" 2>&1
	local rc=$?
	local p f
	p=$(grep -c '^ok ' "$log")
	f=$(grep -cE '^(not ok |Bail out!)' "$log")
	# each failure with the first lines of its diagnostics, so a CI
	# summary alone says why
	awk '/^(not ok|Bail out)/ { print "   " $0; d = 8; next }
	     d > 0 && /^#/ { print "   " substr($0, 1, 300); d--; next }
	     { d = 0 }' "$log"
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "   $name exited $rc without a failing check; last lines:"
		tail -n 15 "$log" | sed 's/^/   | /'
		f=1
	fi
	echo "   $p passed, $f failed ($log)"
	pass=$((pass + p)); fail=$((fail + f))
}

[ "${QC_ONLY_CLUSTER:-0}" = 1 ] && export QC_SKIP_UNIT=1 QC_SKIP_INTEGRATION_SUITES=1 QC_SKIP_TSAN=1 QC_SKIP_PACKAGE=1
[ "${QC_ONLY_PACKAGE:-0}" = 1 ] && export QC_SKIP_UNIT=1 QC_SKIP_INTEGRATION=1
for t in "$BUILD"/tests/unit/test_*; do
	[ "${QC_SKIP_UNIT:-0}" = 1 ] && break
	[ -x "$t" ] && [ -f "$t" ] || continue
	case "$t" in *.c|*.h|*.o|*.log|*.trs) continue ;; esac
	run_suite "unit-$(basename "$t")" "$t"
done
# the Prometheus alerting rules in conf/: promtool check and unit tests
[ "${QC_SKIP_UNIT:-0}" = 1 ] || run_suite alert-rules bash "$SRC/tests/alerts/run.sh" "$SRC"

if [ "${QC_SKIP_INTEGRATION:-0}" != 1 ]; then
	[ "${QC_SKIP_INTEGRATION_SUITES:-0}" = 1 ] ||
		run_suite integration bash "$SRC/tests/integration/run.sh"
	# the concurrency tests again, against a ThreadSanitizer build of the worker
	if [ "${QC_SKIP_TSAN:-0}" != 1 ]; then
		run_suite tsan bash "$SRC/tests/integration/tsan_pass.sh" "$BUILD" "$SRC"
	fi
	# two web nodes on a 3-node Galera cluster (SPEC §12)
	if [ "${QC_SKIP_CLUSTER:-0}" != 1 ]; then
		run_suite cluster bash "$SRC/tests/cluster/run.sh"
	fi
fi

# the .deb: built from `make distdir`, installed on this machine, served by
# lighttpd through its shipped snippet, upgraded, purged (tests/package/run.sh)
if [ "${QC_SKIP_PACKAGE:-0}" != 1 ]; then
	run_suite package bash "$SRC/tests/package/run.sh"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
