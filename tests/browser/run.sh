#!/usr/bin/env bash
# run.sh - the dashboard's browser test: headless Debian Chromium driven by
# playwright-core (pinned in package-lock.json; no browser download) against
# the real stack that tests/integration/run.sh started. Installs what is
# missing, then runs dashboard.mjs and admin.mjs, which print TAP lines ("ok N -
# [browser] ..." / "ok N - [admin console] ...") and exit non-zero when a
# check failed.
# Env: QC_URL (lighttpd serving www/ and the API), QC_CTL (quotacachectl,
# with QC_CONFIG exported), QC_BUILD (screenshots go to
# $QC_BUILD/tests/out/screenshots), QC_VAR.
# Standalone: bash scripts/run.sh, then
#   QC_URL=http://127.0.0.1:8080 QC_CTL=$PWD/build/src/quotacachectl \
#   QC_CONFIG=$PWD/var/quotacache.conf QC_BUILD=/tmp/dash QC_VAR=$PWD/var \
#   bash tests/browser/run.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd -P)
export DEBIAN_FRONTEND=noninteractive PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# installers' output becomes TAP comments: it must never look like a check
comment() { sed -u 's/^/# /'; }

apt_install() {   # packages...
	apt-get install -y --no-install-recommends "$@" 2>&1 | comment
	[ "${PIPESTATUS[0]}" -eq 0 ] && return 0
	apt-get update 2>&1 | comment
	apt-get install -y --no-install-recommends "$@" 2>&1 | comment
	return "${PIPESTATUS[0]}"
}

if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'ok installed'; then
	echo "# installing chromium (Debian package)"
	apt_install chromium || { echo "Bail out! chromium could not be installed"; exit 1; }
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "# installing nodejs and npm (Debian packages)"
	apt_install nodejs npm || { echo "Bail out! node could not be installed"; exit 1; }
fi
if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
	echo "# warning: node $(node --version) is older than 20, which playwright-core asks for"
fi

# npm ci when node_modules is missing or older than the lock file
if [ ! -f "$HERE/node_modules/playwright-core/package.json" ] ||
	[ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
	echo "# npm ci (playwright-core, no browser download)"
	(cd "$HERE" && timeout 300 npm ci --no-audit --no-fund --loglevel=error 2>&1) | comment
	[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "Bail out! npm ci failed in tests/browser"; exit 1; }
fi

# each run is bounded too (each wait inside is bounded as well): the
# dashboard, then the admin console (admin.mjs, its own TAP numbering)
timeout -k 10 420 node "$HERE/dashboard.mjs"; rc=$?
timeout -k 10 180 node "$HERE/admin.mjs" || rc=$?
exit "$rc"
