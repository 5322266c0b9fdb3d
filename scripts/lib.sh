# lib.sh — helpers shared by scripts/lighttpd.sh, scripts/apache.sh and
# scripts/mariadb.sh; sourced, never run. Defines functions only (no options
# set, nothing run): the sourcing script keeps its own `set -euo pipefail`.
# The sourcing script sets log_tag (the prefix of its messages) before sourcing
# and defines server_pid (prints the running server's pid, fails otherwise).
# scripts/run.sh, tests/integration/run.sh and bench/run.sh source it too,
# for base_config.
# shellcheck shell=bash

# Prints the configuration lines every private stack shares: the database of
# the MariaDB in VARDIR (scripts/mariadb.sh) and ROOT's migrations and prompts.
base_config() {   # VARDIR ROOT
  cat <<CONF
db_socket = $1/mariadb/mysqld.sock
db_name = quotacache
db_user = quotacache
db_password_file = $1/secrets/db_password
migrate_user = quotacache_admin
migrate_password_file = $1/secrets/db_admin_password
sql_dir = $2/sql
prompts_dir = $2/conf/prompts
CONF
}

# Creates password file $1 (0600, in a 0700 directory) unless it has one.
ensure_password() {   # FILE
  install -d -m 0700 "$(dirname "$1")"
  if [[ ! -s $1 ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$1")
    log "generated $1"
  fi
  chmod 0600 "$1"
}

# Prints the SQL that makes the database and its two accounts for client host
# $1 (SPEC §11, least privilege): 'quotacache' (the workers) may read and write
# rows and run the procedures, nothing else; 'quotacache_admin' (migrations)
# owns the schema.  Passwords $2 and $3; feed it to mariadb through stdin so
# they never show in `ps`.
db_accounts_sql() {   # HOST WORKER_PW ADMIN_PW
  cat <<SQL
CREATE DATABASE IF NOT EXISTS quotacache CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'quotacache'@'$1' IDENTIFIED BY '$2';
ALTER USER 'quotacache'@'$1' IDENTIFIED BY '$2';
REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'quotacache'@'$1';
GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE ON \`quotacache\`.* TO 'quotacache'@'$1';
GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE ON \`quotacache\\_%\`.* TO 'quotacache'@'$1';
CREATE USER IF NOT EXISTS 'quotacache_admin'@'$1' IDENTIFIED BY '$3';
ALTER USER 'quotacache_admin'@'$1' IDENTIFIED BY '$3';
GRANT ALL PRIVILEGES ON \`quotacache\`.* TO 'quotacache_admin'@'$1';
GRANT ALL PRIVILEGES ON \`quotacache\\_%\`.* TO 'quotacache_admin'@'$1';
SQL
}

# Prints "$log_tag: ARGS" to stderr.
log() { echo "${log_tag:?}: $*" >&2; }

# Logs ARGS and exits 1.
die() { log "$*"; exit 1; }

# True while process $1 exists and is not a zombie (PID 1 may reap late).
alive() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [[ ${s:0:1} != Z ]]
}

# Prints the pid in pid file $1 if that process is alive and its comm is one of $2...; fails otherwise.
pidfile_pid() {
  local pid comm name
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  for name in "${@:2}"; do
    [[ $comm == "$name" ]] && { echo "$pid"; return 0; }
  done
  return 1
}

# SIGTERMs the server server_pid finds and waits up to 30 s (dies if it stays); logs "stopped" or "not running".
stop_server() {
  local pid i=0
  if pid=$(server_pid); then
    kill -TERM "$pid"
    while alive "$pid" && ((i++ < 300)); do sleep 0.1; done
    ! alive "$pid" || die "pid $pid still running after 30 s"
    log "stopped (pid $pid)"
  else
    log "not running"
  fi
}

# Prints a free TCP port on 127.0.0.1 (the kernel's choice).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# True if something accepts connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Runs $2... every 0.1 s until it succeeds, at most $1 times; fails if it never does.
wait_until() {
  local i
  for ((i = 0; i < $1; i++)); do
    "${@:2}" && return 0
    sleep 0.1
  done
  return 1
}

# Dies unless $1 can go between double quotes in a server config (no quote, backslash or control character).
check_str() { [[ $1 != *[\"\\[:cntrl:]]* ]] || die "unsupported character in: $1"; }

# Dies unless $1 is NAME=VALUE fit for a config (check_str).
check_env() {
  [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "EXTRA_ENV must be NAME=VALUE: $1"
  check_str "$1"
}

# Prints template $1 with @NAME@ replaced by VALUE for each NAME=VALUE in $2..., in that order.
render_template() {
  local out kv
  out=$(<"$1")$'\n'
  for kv in "${@:2}"; do out=${out//"@${kv%%=*}@"/"${kv#*=}"}; done
  printf '%s' "$out"
}

# Prints $2, else the WORKER_BIN start recorded in $1/worker_bin, as an absolute path (nothing if neither).
saved_worker() {
  local w=${2:-$(cat "$1/worker_bin" 2>/dev/null || true)}
  [[ -z $w ]] || realpath -m "$w"
}

# Prints pids of live processes whose fd 0 is a unix socket bound at a path starting with $1 (and whose exe is $2 if given).
worker_pids() {
  local inodes pid fd0 exe
  inodes=" $(awk -v p="$1" 'index($8, p) == 1 { printf "%s ", $7 }' /proc/net/unix) "
  [[ $inodes == *[0-9]* ]] || return 0
  while read -r pid fd0; do
    [[ $fd0 =~ ^socket:\[([0-9]+)\]$ && $inodes == *" ${BASH_REMATCH[1]} "* ]] || continue
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    alive "$pid" || continue
    if [[ -z $2 || ${exe% (deleted)} == "$2" ]]; then echo "$pid"; fi
  done < <(find /proc/[0-9]*/fd/0 -maxdepth 0 -printf '%p %l\n' 2>/dev/null |
    sed -n 's|^/proc/\([0-9]*\)/fd/0 |\1 |p')
}

# Polls up to $1 tenths of a second for workers ($2 $3 as for worker_pids) to exit; left keeps the rest.
workers_gone() {
  local i=0
  while left=$(worker_pids "$2" "$3") && [[ -n $left ]]; do
    ((i++ < $1)) || return 1
    sleep 0.1
  done
}

# Waits 10 s for workers $1 $2 to exit, SIGTERMs the rest ($3 tenths), SIGKILLs (with $4 tenths); dies if any stay, fails if any were signalled.
stop_workers() {
  workers_gone 100 "$1" "$2" && return 0
  log "terminating leftover workers: ${left//$'\n'/ }"
  # shellcheck disable=SC2086 # one pid per word
  kill -TERM $left 2>/dev/null || true
  if ! workers_gone "$3" "$1" "$2"; then
    [[ -n ${4:-} ]] || die "workers still running: ${left//$'\n'/ }"
    log "workers still running after SIGTERM + $(($3 / 10)) s, killing: ${left//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    workers_gone "$4" "$1" "$2" || die "workers still running: ${left//$'\n'/ }"
  fi
  return 1
}

# If the server runs: drops the rendered $1.new (warning if it differs from $1), logs "already running" (port $2); fails otherwise.
already_running() {
  local pid
  pid=$(server_pid) || return 1
  cmp -s "$1" "$1.new" || log "warning: running with an older config; stop to apply"
  rm -f "$1.new"
  log "already running (pid $pid, port $2)"
}
