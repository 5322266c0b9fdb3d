#!/usr/bin/env bash
# deps.sh — install the Debian 12 packages quotacache needs to build, test and
# benchmark. Idempotent: when everything is present it only runs one dpkg-query.
# Usage: scripts/deps.sh   (as root; no arguments, no prompts)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

pkgs=(
  build-essential autoconf automake libtool pkg-config
  libfcgi-dev libfcgi-bin spawn-fcgi
  libmariadb-dev mariadb-server mariadb-client
  libjson-c-dev libcurl4-openssl-dev libssl-dev
  lighttpd apache2 libapache2-mod-fcgid curl python3 wrk
  prometheus  # promtool: the alerting rules in conf/ are checked by the suite
  debhelper fakeroot lintian  # the Debian package and its test (tests/package/)
)

# One dpkg-query for all packages; unknown ones print nothing (and make it exit 1).
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null || true)

missing=()
for p in "${pkgs[@]}"; do
  if ! grep -qxF "$p install ok installed" <<<"$installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "deps: all ${#pkgs[@]} packages present" >&2
  exit 0
fi

if ((EUID != 0)); then
  echo "deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}" >&2
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "deps: done" >&2
