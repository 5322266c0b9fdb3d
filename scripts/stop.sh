#!/usr/bin/env bash
# stop.sh - stop what scripts/run.sh started (lighttpd and its workers, then
# MariaDB).  The data in var/ stays.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
bash "$ROOT/scripts/lighttpd.sh" stop "$ROOT/var"
bash "$ROOT/scripts/mock.sh" stop "$ROOT/var"
bash "$ROOT/scripts/mariadb.sh" stop "$ROOT/var"
