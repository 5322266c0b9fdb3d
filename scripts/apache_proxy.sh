#!/usr/bin/env bash
# apache_proxy.sh — start or stop a pool of WORKERS quotacache-fcgi processes on one
# unix socket (spawn-fcgi) and a private Apache 2.4 (mpm_event) on 127.0.0.1:PORT
# whose mod_proxy_fcgi sends /api/, /v1/ and /metrics to that socket
# (conf/apache-proxy.conf.in, rendered into VARDIR/apache-proxy/apache.conf).
# Usage: scripts/apache_proxy.sh start VARDIR PORT WORKERS WORKER_BIN CONFIG_FILE WWWDIR [NAME=VALUE...]
#        scripts/apache_proxy.sh stop  VARDIR [PORT WORKERS WORKER_BIN ...]
# The workers get a clean environment: PATH, QC_CONFIG=CONFIG_FILE, the NAME=VALUE
# pairs, and ASAN_, UBSAN_, LSAN_ and TSAN_OPTIONS when set here. Their stderr
# (log lines, sanitizer reports without log_path) goes to VARDIR/apache-proxy/worker.log.
# The Apache parent runs as root, its children as QC_APACHE_USER; the workers run as
# QC_WORKER_USER (default: QC_APACHE_USER; "root" keeps root, as under lighttpd), who
# must be able to read CONFIG_FILE and the secret files it names (0640 root:GROUP; the
# worker refuses world-readable ones).
# Stop: SIGTERM to Apache (pid file), then to every worker in the workers' pid file;
# waits for them (a clean exit runs LeakSanitizer). Fails if any worker had to be
# found by its socket or killed.
# Env: QC_ACCESS_LOG=1 writes VARDIR/apache-proxy/access.log (default off);
#      QC_APACHE_USER / QC_APACHE_GROUP (www-data / the user's group); QC_WORKER_USER;
#      QC_PROXY_TIMEOUT (seconds Apache waits for each read from a worker; default
#      upstream_timeout_ms from CONFIG_FILE or QC_UPSTREAM_TIMEOUT_MS, in seconds, + 60,
#      at least 90); QC_BACKLOG (the socket's listen backlog, 1024);
#      QC_APACHE_BIN (apache2), QC_APACHE_MODDIR (/usr/lib/apache2/modules).
set -euo pipefail
shopt -s extglob
log_tag=apache-proxy
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
adir=$vardir/apache-proxy
conf=$adir/apache.conf
pidfile=$adir/apache.pid
errlog=$adir/error.log
sock=$adir/qc.sock
wpidfile=$adir/workers.pid
wlog=$adir/worker.log
template=$(dirname "$0")/../conf/apache-proxy.conf.in

# The Apache parent, from its pid file.
server_pid() { pidfile_pid "$pidfile" apache2 httpd; }

# Live pids from the workers' pid file whose program is $worker.
pool_pids() {
  local pid exe
  [[ -s $wpidfile ]] || return 0
  while read -r pid || [[ -n $pid ]]; do
    [[ $pid =~ ^[0-9]+$ ]] || continue
    alive "$pid" || continue
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    [[ -z $worker || ${exe% (deleted)} == "$worker" ]] && echo "$pid"
  done <"$wpidfile"
}

# A path that goes between double quotes in apache.conf, and into a unix: URL.
check_path() { check_str "$1"; [[ $1 != *[[:space:]\|]* ]] || die "blank or '|' in path: $1"; }

# Up means: the port accepts, the parent is found and all WORKERS workers are alive.
# Sets pid and n.
is_up() {
  n=$(pool_pids | wc -l)
  port_open "$port" && pid=$(server_pid) && ((n >= workers))
}

apache_bin() {
  local b
  for b in "${QC_APACHE_BIN:-}" apache2 /usr/sbin/apache2 httpd /usr/sbin/httpd; do
    [[ -n $b ]] && command -v "$b" && return 0
  done
  die "apache2 not found (Debian: apt-get install apache2)"
}

mod_dir() {
  local d
  for d in "${QC_APACHE_MODDIR:-}" /usr/lib/apache2/modules /usr/lib64/httpd/modules /usr/lib/httpd/modules; do
    [[ -n $d && -f $d/mod_proxy_fcgi.so && -f $d/mod_mpm_event.so ]] && { echo "$d"; return 0; }
  done
  die "no module directory with mod_proxy_fcgi.so and mod_mpm_event.so (Debian: apt-get install apache2)"
}

# Runs "test ARGS" as user $1 (group $2).
as_user_test() {
  local u=$1 g=$2
  shift 2
  [[ $(id -u "$u") == 0 ]] && return 0
  if command -v runuser >/dev/null; then runuser -u "$u" -- test "$@"
  elif command -v setpriv >/dev/null; then setpriv --reuid="$u" --regid="$g" --clear-groups test "$@"
  else return 0; fi
}

# Seconds: QC_PROXY_TIMEOUT, else upstream_timeout_ms (environment pair, else the
# config file's last line, else 30000) / 1000 + 60, at least 90.
proxy_timeout() {
  local ms="" kv
  if [[ -n ${QC_PROXY_TIMEOUT:-} ]]; then
    [[ $QC_PROXY_TIMEOUT =~ ^[1-9][0-9]{0,5}$ ]] || die "bad QC_PROXY_TIMEOUT: $QC_PROXY_TIMEOUT"
    echo "$QC_PROXY_TIMEOUT"
    return
  fi
  for kv in "${extra_env[@]}"; do
    [[ $kv == QC_UPSTREAM_TIMEOUT_MS=* ]] && ms=${kv#*=}
  done
  [[ -n $ms ]] || ms=$(sed -n 's/^[[:space:]]*upstream_timeout_ms[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$config" 2>/dev/null | tail -n 1)
  [[ $ms =~ ^[0-9]{1,9}$ ]] || ms=30000
  ms=$(((ms + 999) / 1000 + 60))
  echo $((ms < 90 ? 90 : ms))
}

render() {
  local accesslog="# (off)"
  if [[ ${QC_ACCESS_LOG:-0} == 1 ]]; then
    accesslog="LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b %D\" qc"$'\n'
    accesslog+="CustomLog \"$adir/access.log\" qc"
  fi
  # ACCESSLOG last, so that nothing inside it is taken for a placeholder
  render_template "$template" PORT="$port" SOCKET="$sock" TIMEOUT="$timeout" \
    WWWDIR="$wwwdir" USER="$user" GROUP="$group" MODDIR="$moddir" VARDIR="$vardir" \
    ACCESSLOG="$accesslog"
}

# spawn-fcgi binds $sock (owner $wuser, group $group, 0660: Apache's children
# connect as $user; as root, spawn-fcgi applies -M only together with -U/-G/-u),
# forks $workers children that each exec the worker with the socket as fd 0 and
# writes their pids to $wpidfile. It points the children's stderr at /dev/null, so
# each goes through sh, which opens the log and execs the worker (same pid).
start_pool() {
  local v uopt=() envs=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "QC_CONFIG=$config")
  for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS; do
    [[ -n ${!v:-} ]] && envs+=("$v=${!v}")
  done
  envs+=("${extra_env[@]}")
  [[ $(id -u "$wuser") == 0 ]] || uopt=(-u "$wuser" -g "$wgroup")
  touch "$wlog"
  chown "$wuser:$wgroup" "$wlog"
  chmod 0640 "$wlog"
  rm -f "$wpidfile"
  # shellcheck disable=SC2016 # sh expands $0 and $1, not this script
  env -i "${envs[@]}" spawn-fcgi -s "$sock" -G "$group" -M 0660 -b "${QC_BACKLOG:-1024}" \
    -F "$workers" -P "$wpidfile" -d / "${uopt[@]}" \
    -- /bin/sh -c 'exec "$0" 2>>"$1"' "$worker" "$wlog" >"$adir/spawn.log" 2>&1 ||
    { cat "$adir/spawn.log" >&2; tail -n 20 "$wlog" >&2 || true; return 1; }
}

start() {
  local pid i n code bin
  (($# >= 7)) || usage
  port=$3 workers=$4 worker=$5 extra_env=("${@:8}")
  [[ $port =~ ^[1-9][0-9]{0,4}$ && $port -lt 65536 ]] || die "bad PORT: $port"
  [[ $workers =~ ^[1-9][0-9]{0,3}$ ]] || die "bad WORKERS: $workers"
  [[ -f $worker && -x $worker ]] || die "WORKER_BIN is not an executable file: $worker"
  [[ -d $7 ]] || die "WWWDIR is not a directory: $7"
  command -v spawn-fcgi >/dev/null || die "spawn-fcgi not found (Debian: apt-get install spawn-fcgi)"
  worker=$(realpath "$worker") config=$(realpath -m "$6") wwwdir=$(realpath "$7")
  user=${QC_APACHE_USER:-www-data}
  id -u "$user" >/dev/null 2>&1 || die "no such user: $user"
  [[ $(id -u "$user") != 0 ]] || die "Apache refuses to run its children as root: set QC_APACHE_USER"
  group=${QC_APACHE_GROUP:-$(id -gn "$user")}
  wuser=${QC_WORKER_USER:-$user}
  id -u "$wuser" >/dev/null 2>&1 || die "no such user: $wuser"
  wgroup=$(id -gn "$wuser")
  bin=$(apache_bin) moddir=$(mod_dir)
  for i in "$vardir" "$worker" "$config" "$wwwdir" "$moddir"; do check_path "$i"; done
  for i in "${extra_env[@]}"; do check_env "$i"; done
  ((${#sock} <= 107)) || die "path too long for a unix socket: $sock"
  timeout=$(proxy_timeout)
  as_user_test "$wuser" "$wgroup" -x "$worker" || die "$wuser cannot execute $worker (check every directory on the path)"
  as_user_test "$wuser" "$wgroup" -r "$config" || die "$wuser cannot read $config (chgrp $wgroup + chmod 0640, and traversable directories)"
  as_user_test "$user" "$group" -r "$wwwdir/index.html" || log "warning: $user cannot read $wwwdir/index.html"
  mkdir -p "$adir/run"
  chmod 0755 "$adir"   # Apache's children reach the socket through it
  (umask 077; render >"$conf.new")
  ! already_running "$conf" "$port" || return 0
  n=$(pool_pids | wc -l)
  ((n == 0)) || die "workers of an earlier start still run (pids $(pool_pids | tr '\n' ' ')): stop first"
  ! port_open "$port" || die "127.0.0.1:$port is already in use"
  mv -f "$conf.new" "$conf"
  "$bin" -t -f "$conf" >"$adir/check.log" 2>&1 || { cat "$adir/check.log" >&2; die "config check failed: $conf"; }
  echo "$worker" >"$adir/worker_bin"
  start_pool || { stop "$@" || true; die "the worker pool did not start"; }
  rm -f "$pidfile"
  # Apache daemonizes itself (own session); -k start returns once the parent forked.
  "$bin" -f "$conf" -k start </dev/null >>"$adir/start.log" 2>&1 ||
    { tail -n 30 "$adir/start.log" "$errlog" >&2 || true; stop "$@" || true; die "apache2 failed to start"; }
  # Up means: the port accepts, all workers live, and a worker answers
  # /api/v1/health through Apache: 200, or 503 while the database is down (both
  # JSON); anything else is Apache's own.
  if wait_until 150 is_up; then
    code=$(curl -s -o /dev/null -w "%{http_code} %{content_type}" --max-time 20 "http://127.0.0.1:$port/api/v1/health" || true)
    if [[ $code == @(200|503)" application/"*json* ]]; then
      log "started (pid $pid, http://127.0.0.1:$port/, $n workers as $wuser on $sock, proxy timeout ${timeout}s, health $code)"
      return 0
    fi
  fi
  tail -n 30 "$errlog" "$wlog" >&2 || true
  log "not up (127.0.0.1:$port, ${n:-0} of $workers workers alive, /api/v1/health answered ${code:-nothing}); stopping"
  stop "$@" || true
  exit 1
}

stop() {
  local rc=0 pids
  worker=$(saved_worker "$adir" "${5:-}")
  # Apache first: no new requests reach the pool.
  stop_server
  pids=$(pool_pids)
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $pids 2>/dev/null || true
    log "sent SIGTERM to the workers (${pids//$'\n'/ })"
  fi
  # Waits 10 s for every worker on the socket (the pid file's and any other) to
  # exit (shutdown_grace_ms, default 10 s, lets calls in flight finish); signals
  # the ones left again, SIGKILL after 10 s more.
  stop_workers "$sock" "$worker" 100 20 || rc=1
  rm -f "$pidfile" "$wpidfile" "$sock"
  return "$rc"
}

case $cmd in
  start) start "$@" ;;
  stop) stop "$@" ;;
  *) usage ;;
esac
