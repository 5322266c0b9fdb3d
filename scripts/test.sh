#!/usr/bin/env bash
# test.sh - the whole test suite from a fresh Debian machine: install what is
# missing, build with -Werror under AddressSanitizer + UBSan, run `make check`
# (unit tests, then integration tests against a private MariaDB and lighttpd
# started and stopped by the suite).  Exits non-zero on any failure.  The last
# line is "N passed, N failed".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
bash "$ROOT/scripts/deps.sh"
bash "$ROOT/scripts/build.sh" "$ROOT/build-test" --enable-sanitizers --enable-werror --enable-test-clock
cd "$ROOT/build-test"
exec make -s check
