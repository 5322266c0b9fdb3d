#!/usr/bin/env bash
# lighttpd.sh — render conf/lighttpd.conf.in into VARDIR/lighttpd/lighttpd.conf and
# start or stop a private lighttpd on 127.0.0.1:PORT whose mod_fastcgi spawns
# WORKERS copies of WORKER_BIN. Runs as root (see the template's header).
# Usage: scripts/lighttpd.sh start VARDIR PORT WORKERS WORKER_BIN CONFIG_FILE WWWDIR [NAME=VALUE...]
#        scripts/lighttpd.sh stop  VARDIR [PORT WORKERS WORKER_BIN ...]
# Env: QC_ACCESS_LOG=1 writes VARDIR/lighttpd/access.log (default off).
set -euo pipefail

usage() {
  echo "usage: $0 start VARDIR PORT WORKERS WORKER_BIN CONFIG_FILE WWWDIR [NAME=VALUE...]" >&2
  echo "       $0 stop VARDIR [PORT WORKERS WORKER_BIN ...]" >&2
  exit 2
}
log() { echo "lighttpd: $*" >&2; }
die() { log "$*"; exit 1; }
(($# >= 2)) || usage
cmd=$1
[[ $cmd == start ]] && mkdir -p "$2"
vardir=$(cd "$2" 2>/dev/null && pwd -P) || vardir=$2
ldir=$vardir/lighttpd
conf=$ldir/lighttpd.conf
pidfile=$ldir/lighttpd.pid
errlog=$ldir/error.log
sock=$ldir/qc.sock
template=$(dirname "$0")/../conf/lighttpd.conf.in

# True while process $1 exists and is not a zombie (PID 1 may reap late).
alive() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [[ ${s:0:1} != Z ]]
}

server_pid() {
  local pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == lighttpd ]] || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# A string that goes between double quotes in lighttpd.conf.
check_str() { [[ $1 != *[\"\\[:cntrl:]]* ]] || die "unsupported character in: $1"; }

# Prints pids of FastCGI workers: fd 0 is a socket bound at $sock-N and, when
# $worker is known, the executable is $worker. Works after lighttpd is gone.
worker_pids() {
  local inodes pid fd0 exe
  inodes=" $(awk -v p="$sock" 'index($8, p) == 1 { printf "%s ", $7 }' /proc/net/unix) "
  [[ $inodes == *[0-9]* ]] || return 0
  while read -r pid fd0; do
    [[ $fd0 =~ ^socket:\[([0-9]+)\]$ && $inodes == *" ${BASH_REMATCH[1]} "* ]] || continue
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
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

render() {
  local out envs="" kv accesslog="# (off)"
  out=$(<"$template")$'\n'
  for kv in "${extra_env[@]}"; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "EXTRA_ENV must be NAME=VALUE: $kv"
    check_str "$kv"
    envs+="        \"${kv%%=*}\" => \"${kv#*=}\","$'\n'
  done
  if [[ ${QC_ACCESS_LOG:-0} == 1 ]]; then
    accesslog="server.modules += ( \"mod_accesslog\" )"$'\n'
    accesslog+="accesslog.filename = \"@VARDIR@/lighttpd/access.log\""
  fi
  out=${out//@ACCESSLOG@/"$accesslog"}
  out=${out//@ENV@/"${envs%$'\n'}"}
  out=${out//@PORT@/"$port"}
  out=${out//@WORKERS@/"$workers"}
  out=${out//@WORKER@/"$worker"}
  out=${out//@CONFIG@/"$config"}
  out=${out//@WWWDIR@/"$wwwdir"}
  out=${out//@VARDIR@/"$vardir"}
  printf '%s' "$out"
}

start() {
  local pid i n
  (($# >= 7)) || usage
  port=$3 workers=$4 worker=$5 extra_env=("${@:8}")
  [[ $port =~ ^[1-9][0-9]{0,4}$ && $port -lt 65536 ]] || die "bad PORT: $port"
  [[ $workers =~ ^[1-9][0-9]{0,3}$ ]] || die "bad WORKERS: $workers"
  [[ -f $worker && -x $worker ]] || die "WORKER_BIN is not an executable file: $worker"
  [[ -d $7 ]] || die "WWWDIR is not a directory: $7"
  worker=$(realpath "$worker") config=$(realpath -m "$6") wwwdir=$(realpath "$7")
  for i in "$vardir" "$worker" "$config" "$wwwdir"; do check_str "$i"; done
  ((${#sock} + 5 <= 107)) || die "socket path too long for a unix socket: $sock-N"
  mkdir -p "$ldir/tmp"
  (umask 077; render >"$conf.new")
  if pid=$(server_pid); then
    cmp -s "$conf" "$conf.new" || log "warning: running with an older config; stop to apply"
    rm -f "$conf.new"
    log "already running (pid $pid, port $port)"
    return 0
  fi
  ! port_open || die "127.0.0.1:$port is already in use"
  mv -f "$conf.new" "$conf"
  lighttpd -tt -f "$conf" >"$ldir/check.log" 2>&1 || { cat "$ldir/check.log" >&2; die "config check failed: $conf"; }
  echo "$worker" >"$ldir/worker_bin"
  rm -f "$pidfile" "$sock"-*
  lighttpd -f "$conf" </dev/null || { tail -n 30 "$errlog" >&2 || true; die "lighttpd failed to start"; }
  # Up means: the port accepts and all WORKERS workers are alive (a worker that
  # dies at startup is only logged by lighttpd, which keeps serving).
  for ((i = 0; i < 150; i++)); do
    n=$(worker_pids | wc -l)
    if port_open && pid=$(server_pid) && ((n >= workers)); then
      log "started (pid $pid, http://127.0.0.1:$port/, $n workers)"
      return 0
    fi
    sleep 0.1
  done
  tail -n 30 "$errlog" "$ldir/worker.log" >&2 || true
  log "not up after 15 s (127.0.0.1:$port, $n of $workers workers alive); stopping"
  stop "$@" || true
  exit 1
}

stop() {
  local pid i=0
  worker=${5:-$(cat "$ldir/worker_bin" 2>/dev/null || true)}
  [[ -z $worker ]] || worker=$(realpath -m "$worker")
  if pid=$(server_pid); then
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
    workers_gone 50 || die "workers still running: ${left//$'\n'/ }"
  fi
  rm -f "$pidfile" "$sock"-*
}

case $cmd in
  start) start "$@" ;;
  stop) stop "$@" ;;
  *) usage ;;
esac
