#!/usr/bin/env bash
# build.sh BUILDDIR [configure options...] - autoreconf when needed, configure
# out of tree into BUILDDIR (once, or again when the options change), make.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
BUILD=$1; shift
cd "$ROOT"
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
	autoreconf -fi >/dev/null
fi
mkdir -p "$BUILD"
cd "$BUILD"
want="$*"
if [ ! -f Makefile ] || [ "$(cat .qc-configure-args 2>/dev/null)" != "$want" ]; then
	"$ROOT/configure" "$@" >configure.log || { tail -n 20 configure.log; exit 1; }
	printf '%s' "$want" >.qc-configure-args
fi
make -j"$(nproc)" >make.log 2>&1 || { tail -n 40 make.log; exit 1; }
