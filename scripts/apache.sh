#!/usr/bin/env bash
# apache.sh — render conf/apache.conf.in into VARDIR/apache/apache.conf and start or
# stop a private Apache 2.4 (mpm_event) on 127.0.0.1:PORT whose mod_fcgid runs up to
# MAXPROCS copies of WORKER_BIN. The parent runs as root; children and workers run as
# QC_APACHE_USER (default www-data), which must be able to read CONFIG_FILE and the
# secret files it names (0640 root:www-data; the worker refuses world-readable ones).
# Usage: scripts/apache.sh start VARDIR PORT MAXPROCS WORKER_BIN CONFIG_FILE WWWDIR [NAME=VALUE...]
#        scripts/apache.sh stop  VARDIR [PORT MAXPROCS WORKER_BIN ...]
# NAME=VALUE pairs become FcgidInitialEnv for the workers (mod_fcgid passes the workers
# no other environment but PATH); ASAN_OPTIONS, UBSAN_OPTIONS and LSAN_OPTIONS
# are copied from this script's environment when set.
# Env: QC_ACCESS_LOG=1 writes VARDIR/apache/access.log (default off);
#      QC_APACHE_USER / QC_APACHE_GROUP (www-data / the user's group);
#      QC_APACHE_BIN (apache2), QC_APACHE_MODDIR (/usr/lib/apache2/modules).
set -euo pipefail
shopt -s extglob
log_tag=apache
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 start VARDIR PORT MAXPROCS WORKER_BIN CONFIG_FILE WWWDIR [NAME=VALUE...]" >&2
  echo "       $0 stop VARDIR [PORT MAXPROCS WORKER_BIN ...]" >&2
  exit 2
}
(($# >= 2)) || usage
cmd=$1
[[ $cmd == start ]] && mkdir -p "$2"
vardir=$(cd "$2" 2>/dev/null && pwd -P) || vardir=$2
adir=$vardir/apache
conf=$adir/apache.conf
pidfile=$adir/apache.pid
errlog=$adir/error.log
ipcdir=$adir/fcgid
template=$(dirname "$0")/../conf/apache.conf.in

# The parent: from the pid file, else (pid file lost) the apache2/httpd process
# whose command line names our config file and whose parent is not one of its own.
server_pid() {
  local pid cmdline
  pidfile_pid "$pidfile" apache2 httpd && return 0
  for pid in $(pgrep -x 'apache2|httpd' || true); do
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [[ " $cmdline " == *" -f $conf "* ]] || continue
    [[ $(cat "/proc/$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)/comm" 2>/dev/null) == @(apache2|httpd) ]] && continue
    alive "$pid" && { echo "$pid"; return 0; }
  done
  return 1
}

# A path that goes between double quotes in apache.conf and that mod_fcgid splits
# into argv: check_str, and no blanks.
check_path() { check_str "$1"; [[ $1 != *[[:space:]]* ]] || die "blank in path: $1"; }

# The port accepts and the parent is found.
is_listening() { port_open "$port" && server_pid >/dev/null; }

apache_bin() {
  local b
  for b in "${QC_APACHE_BIN:-}" apache2 /usr/sbin/apache2 httpd /usr/sbin/httpd; do
    [[ -n $b ]] && command -v "$b" && return 0
  done
  die "apache2 not found (Debian: apt-get install apache2 libapache2-mod-fcgid)"
}

mod_dir() {
  local d
  for d in "${QC_APACHE_MODDIR:-}" /usr/lib/apache2/modules /usr/lib64/httpd/modules /usr/lib/httpd/modules; do
    [[ -n $d && -f $d/mod_fcgid.so && -f $d/mod_mpm_event.so ]] && { echo "$d"; return 0; }
  done
  die "no module directory with mod_fcgid.so and mod_mpm_event.so (Debian: apt-get install libapache2-mod-fcgid)"
}

# Runs "test ARGS" as the unprivileged user.
as_user_test() {
  if command -v runuser >/dev/null; then runuser -u "$user" -- test "$@"
  elif command -v setpriv >/dev/null; then setpriv --reuid="$user" --regid="$group" --clear-groups test "$@"
  else return 0; fi
}

render() {
  local envs="" kv name val accesslog="# (off)" v
  for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
    [[ -n ${!v:-} ]] && extra_env=("$v=${!v}" "${extra_env[@]}")
  done
  for kv in "${extra_env[@]}"; do
    check_env "$kv"
    name=${kv%%=*} val=${kv#*=}
    # mod_fcgid 2.3.9 keeps at most 63 bytes of a name and 255 of a value (silently)
    ((${#name} <= 63 && ${#val} <= 255)) || die "too long for FcgidInitialEnv (name 63, value 255 bytes): $name"
    envs+="FcgidInitialEnv $name \"$val\""$'\n'
  done
  if [[ ${QC_ACCESS_LOG:-0} == 1 ]]; then
    accesslog="LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b %D\" qc"$'\n'
    accesslog+="CustomLog \"$adir/access.log\" qc"
  fi
  # ACCESSLOG and ENV last, so that nothing inside these is taken for a placeholder
  render_template "$template" PORT="$port" MAXPROCS="$maxprocs" WORKER="$worker" \
    CONFIG="$config" WWWDIR="$wwwdir" USER="$user" GROUP="$group" MODDIR="$moddir" \
    VARDIR="$vardir" ACCESSLOG="$accesslog" ENV="${envs%$'\n'}"
}

start() {
  local pid i code bin
  (($# >= 7)) || usage
  port=$3 maxprocs=$4 worker=$5 extra_env=("${@:8}")
  [[ $port =~ ^[1-9][0-9]{0,4}$ && $port -lt 65536 ]] || die "bad PORT: $port"
  [[ $maxprocs =~ ^[1-9][0-9]{0,3}$ ]] || die "bad MAXPROCS: $maxprocs"
  [[ -f $worker && -x $worker ]] || die "WORKER_BIN is not an executable file: $worker"
  [[ -d $7 ]] || die "WWWDIR is not a directory: $7"
  worker=$(realpath "$worker") config=$(realpath -m "$6") wwwdir=$(realpath "$7")
  user=${QC_APACHE_USER:-www-data}
  id -u "$user" >/dev/null 2>&1 || die "no such user: $user"
  [[ $(id -u "$user") != 0 ]] || die "Apache refuses to run its children as root: set QC_APACHE_USER"
  group=${QC_APACHE_GROUP:-$(id -gn "$user")}
  bin=$(apache_bin) moddir=$(mod_dir)
  for i in "$vardir" "$worker" "$config" "$wwwdir" "$moddir"; do check_path "$i"; done
  # mod_fcgid names sockets IPCDIR/PID.N; sun_path holds 107 bytes
  ((${#ipcdir} + 20 <= 107)) || die "path too long for unix sockets: $ipcdir/PID.N"
  as_user_test -x "$worker" || die "$user cannot execute $worker (check every directory on the path)"
  as_user_test -r "$config" || die "$user cannot read $config (chgrp $group + chmod 0640, and traversable directories)"
  as_user_test -r "$wwwdir/index.html" || log "warning: $user cannot read $wwwdir/index.html"
  mkdir -p "$adir/run"
  (umask 077; render >"$conf.new")
  ! already_running "$conf" "$port" || return 0
  ! port_open "$port" || die "127.0.0.1:$port is already in use"
  mv -f "$conf.new" "$conf"
  "$bin" -t -f "$conf" >"$adir/check.log" 2>&1 || { cat "$adir/check.log" >&2; die "config check failed: $conf"; }
  echo "$worker" >"$adir/worker_bin"
  # mod_fcgid gives the socket directory to the children's user only when it
  # creates it itself
  rm -rf "$pidfile" "$ipcdir"
  # Apache daemonizes itself (own session); -k start returns once the parent forked.
  "$bin" -f "$conf" -k start </dev/null >>"$adir/start.log" 2>&1 ||
    { tail -n 30 "$adir/start.log" "$errlog" >&2 || true; die "apache2 failed to start"; }
  # Up means: the port accepts and a worker answers /api/v1/health (mod_fcgid spawns
  # workers on demand: this also proves one can start as $user). 200, or 503 while
  # the database is down, come from the worker; anything else is Apache's own.
  wait_until 150 is_listening || true
  code=$(curl -s -o /dev/null -w "%{http_code} %{content_type}" --max-time 20 "http://127.0.0.1:$port/api/v1/health" || true)
  if [[ $code == @(200|503)" application/"*json* ]] && pid=$(server_pid); then
    log "started (pid $pid, http://127.0.0.1:$port/, up to $maxprocs workers as $user, health $code)"
    return 0
  fi
  tail -n 30 "$errlog" >&2 || true
  log "not up (127.0.0.1:$port, /api/v1/health answered ${code:-nothing}); stopping"
  stop "$@" || true
  exit 1
}

# The workers are found by their sockets under $ipcdir/ (mod_fcgid hands each worker
# its listening socket as fd 0), even after Apache is gone. Fails if any had to be signalled.
stop() {
  local rc=0
  worker=$(saved_worker "$adir" "${5:-}")
  # SIGTERM: the parent stops its children; mod_fcgid's process manager sends
  # every worker SIGTERM (SIGKILL only after 8 s), and a clean exit runs LSan.
  stop_server
  stop_workers "$ipcdir/" "$worker" 100 20 || rc=1
  rm -f "$pidfile" "$ipcdir"/*
  return "$rc"
}

case $cmd in
  start) start "$@" ;;
  stop) stop "$@" ;;
  *) usage ;;
esac
