#!/usr/bin/env bash
# run.sh SRCDIR - the Prometheus alerting rules shipped in conf/ (SPEC §14):
# promtool (Debian package prometheus, scripts/deps.sh) checks the rules file
# and runs its unit tests (alerts_test.yml).  Prints TAP lines; run_all.sh
# counts them.  tests/integration/test_alerts.py checks the metric names the
# rules use against a live /metrics.
set -u
SRC=${1:-${QC_SRC:?}}
RULES=$SRC/conf/quotacache-alerts.yml
TESTS=$SRC/tests/alerts/alerts_test.yml
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

if ! command -v promtool >/dev/null 2>&1; then
	echo "not ok 1 - promtool is installed (apt-get install prometheus, see scripts/deps.sh)"
	exit 1
fi
echo "ok 1 - promtool is installed ($(promtool --version 2>&1 | head -n 1))"
n=1
check() {   # name command...
	local name=$1; shift
	n=$((n + 1))
	if "$@" >"$OUT" 2>&1; then
		echo "ok $n - $name"
	else
		echo "not ok $n - $name"
		sed 's/^/# /' "$OUT" | head -n 60
	fi
}
check "promtool check rules conf/quotacache-alerts.yml" promtool check rules "$RULES"
# the rules file checked strictly too: no rule may be a duplicate of another
check "promtool check rules --lint=all --lint-fatal conf/quotacache-alerts.yml" \
	promtool check rules --lint=all --lint-fatal "$RULES"
check "promtool test rules tests/alerts/alerts_test.yml (every alert fires and clears as intended)" \
	promtool test rules "$TESTS"
echo "1..$n"
