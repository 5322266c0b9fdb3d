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

usage() {
  echo "usage: $0 start VARDIR PORT MAXPROCS WORKER_BIN CONFIG_FILE WWWDIR [NAME=VALUE...]" >&2
  echo "       $0 stop VARDIR [PORT MAXPROCS WORKER_BIN ...]" >&2
  exit 2
}
log() { echo "apache: $*" >&2; }
die() { log "$*"; exit 1; }
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

# True while process $1 exists and is not a zombie (PID 1 may reap late).
alive() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [[ ${s:0:1} != Z ]]
}

# The parent: from the pid file, else (pid file lost) the apache2/httpd process
# whose command line names our config file and whose parent is not one of its own.
server_pid() {
  local pid cmdline
  if [[ -s $pidfile ]]; then
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" &&
      [[ $(cat "/proc/$pid/comm" 2>/dev/null) == @(apache2|httpd) ]]; then
      echo "$pid"
      return 0
    fi
  fi
  for pid in $(pgrep -x 'apache2|httpd' || true); do
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [[ " $cmdline " == *" -f $conf "* ]] || continue
    [[ $(cat "/proc/$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)/comm" 2>/dev/null) == @(apache2|httpd) ]] && continue
    alive "$pid" && { echo "$pid"; return 0; }
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# A string that goes between double quotes in apache.conf (and, for paths that
# mod_fcgid splits into argv, without blanks).
check_str() { [[ $1 != *[\"\\[:cntrl:]]* ]] || die "unsupported character in: $1"; }
check_path() { check_str "$1"; [[ $1 != *[[:space:]]* ]] || die "blank in path: $1"; }

# Prints pids of FastCGI workers: fd 0 is a socket bound under $ipcdir/ (mod_fcgid
# hands each worker its listening socket as fd 0) and, when $worker is known, the
# executable is $worker. Works after Apache is gone.
worker_pids() {
  local inodes pid fd0 exe
  inodes=" $(awk -v p="$ipcdir/" 'index($8, p) == 1 { printf "%s ", $7 }' /proc/net/unix) "
  [[ $inodes == *[0-9]* ]] || return 0
  while read -r pid fd0; do
    [[ $fd0 =~ ^socket:\[([0-9]+)\]$ && $inodes == *" ${BASH_REMATCH[1]} "* ]] || continue
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    alive "$pid" || continue
    if [[ -z $worker || ${exe% (deleted)} == "$worker" ]]; then echo "$pid"; fi
  done < <(find /proc/[0-9]*/fd/0 -maxdepth 0 -printf '%p %l\n' 2>/dev/null |
    sed -n 's|^/proc/\([0-9]*\)/fd/0 |\1 |p')
}

# Polls up to $1 tenths of a second for all workers to exit; $left keeps the rest.
workers_gone() {
  local i=0
  while left=$(worker_pids) && [[ -n $left ]]; do
    ((i++ < $1)) || return 1
    sleep 0.1
  done
}

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
  local out envs="" kv name val accesslog="# (off)" v
  out=$(<"$template")$'\n'
  out=${out//@PORT@/"$port"}
  out=${out//@MAXPROCS@/"$maxprocs"}
  out=${out//@WORKER@/"$worker"}
  out=${out//@CONFIG@/"$config"}
  out=${out//@WWWDIR@/"$wwwdir"}
  out=${out//@USER@/"$user"}
  out=${out//@GROUP@/"$group"}
  out=${out//@MODDIR@/"$moddir"}
  out=${out//@VARDIR@/"$vardir"}
  for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
    [[ -n ${!v:-} ]] && extra_env=("$v=${!v}" "${extra_env[@]}")
  done
  for kv in "${extra_env[@]}"; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "EXTRA_ENV must be NAME=VALUE: $kv"
    check_str "$kv"
    name=${kv%%=*} val=${kv#*=}
    # mod_fcgid 2.3.9 keeps at most 63 bytes of a name and 255 of a value (silently)
    ((${#name} <= 63 && ${#val} <= 255)) || die "too long for FcgidInitialEnv (name 63, value 255 bytes): $name"
    envs+="FcgidInitialEnv $name \"$val\""$'\n'
  done
  if [[ ${QC_ACCESS_LOG:-0} == 1 ]]; then
    accesslog="LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b %D\" qc"$'\n'
    accesslog+="CustomLog \"$adir/access.log\" qc"
  fi
  # last, so that nothing inside these is taken for a placeholder
  out=${out//@ACCESSLOG@/"$accesslog"}
  out=${out//@ENV@/"${envs%$'\n'}"}
  printf '%s' "$out"
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
  if pid=$(server_pid); then
    cmp -s "$conf" "$conf.new" || log "warning: running with an older config; stop to apply"
    rm -f "$conf.new"
    log "already running (pid $pid, port $port)"
    return 0
  fi
  ! port_open || die "127.0.0.1:$port is already in use"
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
  for ((i = 0; i < 150; i++)); do
    port_open && pid=$(server_pid) && break
    sleep 0.1
  done
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

stop() {
  local pid i=0 rc=0
  worker=${5:-$(cat "$adir/worker_bin" 2>/dev/null || true)}
  [[ -z $worker ]] || worker=$(realpath -m "$worker")
  if pid=$(server_pid); then
    # SIGTERM: the parent stops its children; mod_fcgid's process manager sends
    # every worker SIGTERM (SIGKILL only after 8 s), and a clean exit runs LSan.
    kill -TERM "$pid"
    while alive "$pid" && ((i++ < 300)); do sleep 0.1; done
    ! alive "$pid" || die "pid $pid still running after 30 s"
    log "stopped (pid $pid)"
  else
    log "not running"
  fi
  if ! workers_gone 100; then
    log "terminating leftover workers: ${left//$'\n'/ }"
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $left 2>/dev/null || true
    if ! workers_gone 100; then
      log "workers still running after SIGTERM + 10 s, killing: ${left//$'\n'/ }"
      # shellcheck disable=SC2086
      kill -KILL $left 2>/dev/null || true
      workers_gone 20 || die "workers still running: ${left//$'\n'/ }"
    fi
    rc=1
  fi
  rm -f "$pidfile" "$ipcdir"/*
  return "$rc"
}

case $cmd in
  start) start "$@" ;;
  stop) stop "$@" ;;
  *) usage ;;
esac
