#!/usr/bin/env bash
# tsan_pass.sh BUILD SRC - the concurrency tests against a worker built with
# ThreadSanitizer (configure --enable-tsan, in BUILD/tsan): its own MariaDB,
# mock and lighttpd through tests/integration/run.sh, only the suites that
# drive many threads at once.  Any TSan report fails the pass ("sanitizers
# stayed silent").  Prints TAP lines; tests/run_all.sh counts them.
set -u
BUILD=${1:?build dir}; SRC=${2:?source dir}
TB=$BUILD/tsan
if ! bash "$SRC/scripts/build.sh" "$TB" --enable-tsan --enable-werror >"$BUILD/tests/out/tsan-build.log" 2>&1; then
	echo "not ok - the ThreadSanitizer build succeeds (see $BUILD/tests/out/tsan-build.log)"
	exit 1
fi
echo "ok - the worker builds with ThreadSanitizer (-fsanitize=thread)"
# sanitizer runtime: ASLR-heavy kernels need the fixed mapping TSan expects
export QC_TESTS="test_inflight.py test_generate.py test_openai.py test_foundation.py test_alerts.py"
QC_BUILD=$TB QC_SRC=$SRC QC_SKIP_BROWSER=1 QC_SKIP_APACHE=1 QC_SKIP_APACHE_PROXY=1 QC_SKIP_OUTAGE=1 \
	QC_SERVER=lighttpd-tsan exec bash "$SRC/tests/integration/run.sh"
