#!/usr/bin/env bash
# lighttpd.sh — render conf/lighttpd.conf.in into VARDIR/lighttpd/lighttpd.conf and
# start or stop a private lighttpd on 127.0.0.1:PORT whose mod_fastcgi spawns
# WORKERS copies of WORKER_BIN. Runs as root (see the template's header).
# Usage: scripts/lighttpd.sh start VARDIR PORT WORKERS WORKER_BIN CONFIG_FILE WWWDIR [NAME=VALUE...]
#        scripts/lighttpd.sh stop  VARDIR [PORT WORKERS WORKER_BIN ...]
# Env: QC_ACCESS_LOG=1 writes VARDIR/lighttpd/access.log (default off).
set -euo pipefail
log_tag=lighttpd
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 start VARDIR PORT WORKERS WORKER_BIN CONFIG_FILE WWWDIR [NAME=VALUE...]" >&2
  echo "       $0 stop VARDIR [PORT WORKERS WORKER_BIN ...]" >&2
  exit 2
}
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

# The running lighttpd, from the pid file.
server_pid() { pidfile_pid "$pidfile" lighttpd; }

# Up means: the port accepts and all WORKERS workers are alive (a worker that
# dies at startup is only logged by lighttpd, which keeps serving). Sets pid and n.
is_up() {
  n=$(worker_pids "$sock" "$worker" | wc -l)
  port_open "$port" && pid=$(server_pid) && ((n >= workers))
}

render() {
  local envs="" kv accesslog="# (off)"
  for kv in "${extra_env[@]}"; do
    check_env "$kv"
    envs+="        \"${kv%%=*}\" => \"${kv#*=}\","$'\n'
  done
  if [[ ${QC_ACCESS_LOG:-0} == 1 ]]; then
    accesslog="server.modules += ( \"mod_accesslog\" )"$'\n'
    accesslog+="accesslog.filename = \"@VARDIR@/lighttpd/access.log\""
  fi
  # ACCESSLOG first: it names @VARDIR@
  render_template "$template" ACCESSLOG="$accesslog" ENV="${envs%$'\n'}" PORT="$port" \
    WORKERS="$workers" WORKER="$worker" CONFIG="$config" WWWDIR="$wwwdir" VARDIR="$vardir"
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
  ! already_running "$conf" "$port" || return 0
  ! port_open "$port" || die "127.0.0.1:$port is already in use"
  mv -f "$conf.new" "$conf"
  lighttpd -tt -f "$conf" >"$ldir/check.log" 2>&1 || { cat "$ldir/check.log" >&2; die "config check failed: $conf"; }
  echo "$worker" >"$ldir/worker_bin"
  rm -f "$pidfile" "$sock"-*
  lighttpd -f "$conf" </dev/null || { tail -n 30 "$errlog" >&2 || true; die "lighttpd failed to start"; }
  if wait_until 150 is_up; then
    log "started (pid $pid, http://127.0.0.1:$port/, $n workers)"
    return 0
  fi
  tail -n 30 "$errlog" "$ldir/worker.log" >&2 || true
  log "not up after 15 s (127.0.0.1:$port, $n of $workers workers alive); stopping"
  stop "$@" || true
  exit 1
}

# The workers are found by their sockets, $sock-N, even after lighttpd is gone.
stop() {
  worker=$(saved_worker "$ldir" "${5:-}")
  stop_server
  stop_workers "$sock" "$worker" 50 || true
  rm -f "$pidfile" "$sock"-*
}

case $cmd in
  start) start "$@" ;;
  stop) stop "$@" ;;
  *) usage ;;
esac
