#!/usr/bin/env bash
# pkg.sh [OUTDIR] - build the Debian package from the release tarball, the way
# a distribution would: install the build tools (scripts/deps.sh), configure and
# build into build-pkg/, `make dist` (quotacache-VERSION.tar.gz), unpack that in
# a temporary directory, `dpkg-buildpackage -us -uc -b` there, lintian it, and
# copy the tarball, the .deb and the .changes/.buildinfo to OUTDIR (default
# dist/). Nothing is built inside the source tree's debian/. Prints the .deb's path.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
OUT=${1:-$ROOT/dist}
say() { echo "pkg: $*" >&2; }

bash "$ROOT/scripts/deps.sh"
bash "$ROOT/scripts/build.sh" "$ROOT/build-pkg"
V=$(sed -n 's/^PACKAGE_VERSION = //p' "$ROOT/build-pkg/Makefile")
make -s -C "$ROOT/build-pkg" dist >"$ROOT/build-pkg/dist.log" 2>&1 ||
	{ tail -n 20 "$ROOT/build-pkg/dist.log" >&2; exit 1; }
tarball=$ROOT/build-pkg/quotacache-$V.tar.gz
say "made $tarball"

T=$(mktemp -d /tmp/qc-pkg.XXXXXX)
trap 'rm -rf "$T"' EXIT
tar -xzf "$tarball" -C "$T"
say "dpkg-buildpackage in $T/quotacache-$V (log: $OUT/build.log)"
mkdir -p "$OUT"
(cd "$T/quotacache-$V" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -us -uc -b) >"$OUT/build.log" 2>&1 ||
	{ tail -n 30 "$OUT/build.log" >&2; say "the build failed"; exit 1; }
changes=$(ls "$T"/quotacache_*.changes)
if lintian --fail-on error,warning "$changes" >"$OUT/lintian.log" 2>&1; then
	say "lintian: clean (overrides: debian/quotacache.lintian-overrides)"
else
	cat "$OUT/lintian.log" >&2
	say "lintian found errors or warnings"
	exit 1
fi
cp "$tarball" "$T"/*.deb "$changes" "$T"/*.buildinfo "$OUT"/
DV=$(dpkg-parsechangelog -l "$T/quotacache-$V/debian/changelog" -S Version)
echo "$OUT/quotacache_${DV}_$(dpkg --print-architecture).deb"
