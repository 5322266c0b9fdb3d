#!/usr/bin/env bash
# run.sh - the Debian package end to end, on this machine: export the tree
# with `make distdir`, build the .deb (dpkg-buildpackage -us -uc -b), lintian,
# install it, set up a private MariaDB through quotacache-setup-db, serve it
# with a private lighttpd (as www-data) that includes the shipped snippet,
# check /api/v1/health and a reserve + commit through it (and health through a
# private Apache + mod_fcgid with the shipped Apache snippet); then rebuild with
# one more migration and a new version, upgrade (postinst migrates), check
# that the usage survived, remove, purge, and check the database survived.
# Prints TAP lines; tests/run_all.sh counts them. Needs root, dpkg-dev,
# debhelper and lintian (scripts/deps.sh). Leaves nothing installed or running
# (the system user quotacache goes too, unless it was there before).
# Logs: BUILD/tests/out/package/. Env: QC_BUILD, QC_SRC (set by run_all.sh);
# QC_KEEP_PACKAGE_TMP=1 keeps the temporary directory (sources, builds, .debs).
set -euo pipefail
BUILD=${QC_BUILD:?}; SRC=${QC_SRC:?}
# shellcheck disable=SC2034 # read by scripts/lib.sh
log_tag=package
# shellcheck source=scripts/lib.sh
. "$SRC/scripts/lib.sh"

CONF=/etc/quotacache/quotacache.conf
MARK=/etc/quotacache/.package-test   # says: installed by this test
SOCK=/run/lighttpd/quotacache.sock   # the shipped lighttpd snippet's
WORKER=/usr/bin/quotacache-fcgi
EMAIL=package-test@example.com
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q --no-install-recommends -o DPkg::Lock::Timeout=300)

ok() { echo "ok - [package] $*"; }
notok() { echo "not ok - [package] $*"; }
check() {   # description command...
	local d=$1; shift
	if "$@"; then ok "$d"; else notok "$d"; fi
}
comment() { sed 's/^/# /'; }
bail() { echo "Bail out! [package] $*"; exit 1; }
trap 'echo "Bail out! [package] unexpected failure at line $LINENO: $BASH_COMMAND"' ERR

((EUID == 0)) || bail "needs root (it installs the package on this machine)"
for c in dpkg-buildpackage dh lintian lighttpd mariadbd curl python3; do
	command -v "$c" >/dev/null || bail "$c is missing (bash scripts/deps.sh installs it)"
done
installed() { dpkg-query -W -f='${Status}' quotacache 2>/dev/null | grep -q 'ok \(installed\|config-files\|half\)'; }
if installed; then
	[[ -e $MARK ]] || bail "quotacache is installed on this machine, not by this test; skip with QC_SKIP_PACKAGE=1"
	"${APT[@]}" purge quotacache 2>&1 | comment   # a run that was killed
fi

V=$(sed -n 's/^PACKAGE_VERSION = //p' "$BUILD/Makefile")
[[ -n $V ]] || bail "no PACKAGE_VERSION in $BUILD/Makefile"
ARCH=$(dpkg --print-architecture)
T=$(mktemp -d /tmp/qc-package.XXXXXX)
chmod 755 "$T"   # www-data reaches the MariaDB socket below it
VAR=$T/var
had_user=0; getent passwd quotacache >/dev/null && had_user=1
had_fastcgi=0; [[ -e /etc/lighttpd/conf-enabled/10-fastcgi.conf ]] && had_fastcgi=1
enabled_mod=0
had_rundir=0; [[ -d /run/lighttpd ]] && had_rundir=1

# lighttpd's pid, from its pid file
lighty_pid() { pidfile_pid "$T/lighttpd.pid" lighttpd; }
stop_lighttpd() {
	local pid
	if pid=$(lighty_pid); then
		kill -TERM "$pid"
		wait_until 100 eval '! alive '"$pid" || kill -KILL "$pid" 2>/dev/null || true
	fi
	stop_workers "$SOCK" "$WORKER" 50 20 >/dev/null 2>&1 || true
	rm -f "$T/lighttpd.pid"
}
# the private Apache of the snippet check, and its mod_fcgid workers
apache_pid() { pidfile_pid "$T/apache/apache.pid" apache2; }
stop_apache() {
	local pid
	if pid=$(apache_pid); then
		kill -TERM "$pid"
		wait_until 150 eval '! alive '"$pid" || kill -KILL "$pid" 2>/dev/null || true
	fi
	stop_workers "$T/apache/fcgid/" "$WORKER" 50 20 >/dev/null 2>&1 || true
}
cleanup() {
	trap - ERR
	stop_lighttpd 2>/dev/null || true
	stop_apache 2>/dev/null || true
	if ((enabled_mod)); then
		lighty-disable-mod quotacache >/dev/null 2>&1 || true
		((had_fastcgi)) || lighty-disable-mod fastcgi >/dev/null 2>&1 || true
	fi
	if installed; then "${APT[@]}" purge quotacache >/dev/null 2>&1 || true; fi
	if ((!had_user)); then
		deluser --system quotacache >/dev/null 2>&1 || true
		delgroup --system quotacache >/dev/null 2>&1 || true
	fi
	bash "$SRC/scripts/mariadb.sh" stop "$VAR" >/dev/null 2>&1 || true
	((had_rundir)) || rmdir /run/lighttpd 2>/dev/null || true
	# the logs outlive the temporary directory
	{ mkdir -p "$BUILD/tests/out/package" && cp "$T"/*.log "$BUILD/tests/out/package/"; } 2>/dev/null || true
	if [[ ${QC_KEEP_PACKAGE_TMP:-0} == 1 ]]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

# JSON field $2 (a Python expression on j) of file $1
jq_() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null || echo "?"; }
# HTTP GET/POST: prints the status, the body goes to $T/body
http() {   # METHOD PATH [KEY [JSON]]
	local a=(-s -o "$T/body" -w '%{http_code}' --max-time 20 -X "$1" "http://127.0.0.1:$PORT$2")
	[[ -n ${3:-} ]] && a+=(-H "Authorization: Bearer $3")
	[[ -n ${4:-} ]] && a+=(-H 'Content-Type: application/json' --data "$4")
	curl "${a[@]}" || true
}

# --- the source: `make distdir`, the release tree ----------------------------
D=$T/quotacache-$V
if make -s -C "$BUILD" distdir distdir="$D" >"$T/distdir.log" 2>&1 && [[ -f $D/debian/rules ]]; then
	ok "make distdir exports the release tree, debian/ included"
else
	comment <"$T/distdir.log" | tail -n 20
	bail "make distdir failed"
fi
DV=$(dpkg-parsechangelog -l "$D/debian/changelog" -S Version)
check "debian/changelog's upstream version is configure.ac's ($V, package $DV)" [ "${DV%-*}" = "$V" ]
cp -a "$D" "$T/next"   # the upgrade is built from a pristine copy

# dpkg-buildpackage in DIR; DEB_BUILD_OPTIONS $2; log $3
build_deb() {
	# not the outer make's flags (-s, its jobserver): the package build is its own
	(cd "$1" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL DEB_BUILD_OPTIONS="parallel=$(nproc) $2" \
		dpkg-buildpackage -us -uc -b) >"$3" 2>&1
}
if build_deb "$D" "" "$T/build1.log" && [[ -f $T/quotacache_${DV}_$ARCH.deb ]]; then
	ok "dpkg-buildpackage -us -uc -b builds quotacache_${DV}_$ARCH.deb (with the unit tests)"
else
	tail -n 30 "$T/build1.log" | comment
	bail "the package did not build (log: $BUILD/tests/out/package/build1.log)"
fi
DEB1=$T/quotacache_${DV}_$ARCH.deb
lintian --fail-on error,warning "$T/quotacache_${DV}_$ARCH.changes" >"$T/lintian.log" 2>&1 && lrc=0 || lrc=$?
comment <"$T/lintian.log"
check "lintian: no errors or warnings" [ "$lrc" -eq 0 ]

dpkg-deb -c "$DEB1" | awk '{print $6}' | sed 's|^\./|/|' >"$T/contents"
missing=""
for f in /usr/bin/quotacache-fcgi /usr/bin/quotacachectl /usr/sbin/quotacache-setup-db \
	/etc/quotacache/quotacache.conf /etc/lighttpd/conf-available/50-quotacache.conf \
	/etc/apache2/conf-available/quotacache.conf /usr/share/quotacache/www/index.html \
	/usr/share/quotacache/www/js/dashboard.js /usr/share/quotacache/prompts/ \
	/lib/systemd/system/quotacache-housekeeping.service /lib/systemd/system/quotacache-housekeeping.timer \
	/etc/cron.d/quotacache /etc/logrotate.d/quotacache /usr/share/man/man1/quotacachectl.1.gz; do
	grep -qxF "$f" "$T/contents" || missing+=" $f"
done
nsql=$(ls "$D"/sql/*.sql | wc -l)
check "the package holds the programs, conffile, snippets, dashboard, units${missing:+ (missing:$missing)}" [ -z "$missing" ]
check "the package holds all $nsql migrations" [ "$(grep -c '^/usr/share/quotacache/sql/.*\.sql$' "$T/contents")" -eq "$nsql" ]

# --- install ------------------------------------------------------------------
if ! bash "$SRC/scripts/mariadb.sh" start "$VAR" >"$T/mariadb.log" 2>&1; then
	comment <"$T/mariadb.log"
	bail "the private MariaDB did not start"
fi
if "${APT[@]}" install "$DEB1" >"$T/install1.log" 2>&1; then
	ok "apt-get install ./quotacache_${DV}_$ARCH.deb"
else
	comment <"$T/install1.log" | tail -n 30
	bail "install failed"
fi
touch "$MARK"
{ grep '^quotacache:' "$T/install1.log" || true; } | comment
check "postinst says there is no database yet, and what to run" grep -q 'quotacache-setup-db' "$T/install1.log"
check "system user quotacache (nologin), www-data in its group" \
	bash -c '[ "$(getent passwd quotacache | cut -d: -f7)" = /usr/sbin/nologin ] &&
		[ "$(id -u quotacache)" -lt 1000 ] && id -nG www-data | tr " " "\n" | grep -qx quotacache'
check "$CONF: conffile, 0640 root:quotacache, in a 0750 directory" bash -c \
	'dpkg-query -W -f="\${Conffiles}" quotacache | grep -q " $0 " &&
	 [ "$(stat -c "%a %U %G" "$0")" = "640 root quotacache" ] &&
	 [ "$(stat -c "%a %U %G" /etc/quotacache)" = "750 root quotacache" ]' "$CONF"
check "no web server was reconfigured (nothing quotacache in conf-enabled)" bash -c \
	'! ls /etc/lighttpd/conf-enabled/ /etc/apache2/conf-enabled/ 2>/dev/null | grep -q quotacache'
check "quotacachectl --version says $V" [ "$(quotacachectl --version)" = "quotacachectl $V" ]

# --- set up: the operator's steps (README) -------------------------------------
sed -i "s|^db_socket = .*|db_socket = $VAR/mariadb/mysqld.sock|" "$CONF"
if quotacache-setup-db >"$T/setup.log" 2>&1; then ok "quotacache-setup-db"; else notok "quotacache-setup-db"; fi
comment <"$T/setup.log"
check "quotacache-setup-db applied all $nsql migrations" grep -q "^applied $nsql migration(s)" "$T/setup.log"
check "secrets: db_password 0640 root:quotacache, db_admin_password 0600 root" bash -c \
	'[ "$(stat -c "%a %U %G" /etc/quotacache/db_password)" = "640 root quotacache" ] &&
	 [ "$(stat -c "%a %U %G" /etc/quotacache/db_admin_password)" = "600 root root" ]'
# the housekeeping unit's commands, as its user (no systemd here)
hk_ok=1
while read -r cmd; do
	# shellcheck disable=SC2086 # the unit's command line, split as systemd does
	runuser -u quotacache -- env QC_CONFIG="$CONF" $cmd >>"$T/housekeeping.log" 2>&1 || hk_ok=0
done < <(sed -n 's/^ExecStart=//p' /lib/systemd/system/quotacache-housekeeping.service)
comment <"$T/housekeeping.log"
check "the housekeeping unit's commands run as user quotacache" [ "$hk_ok" -eq 1 ]

enabled_mod=1
lighty-enable-mod quotacache 2>&1 | comment || true
check "lighty-enable-mod quotacache enables it and fastcgi" \
	test -e /etc/lighttpd/conf-enabled/50-quotacache.conf -a -e /etc/lighttpd/conf-enabled/10-fastcgi.conf
lighty-disable-mod quotacache >/dev/null 2>&1 || true
((had_fastcgi)) || lighty-disable-mod fastcgi >/dev/null 2>&1 || true
enabled_mod=0
had_rundir=0; [[ -d /run/lighttpd ]] && had_rundir=1

# a private lighttpd that runs as www-data, like Debian's, with the shipped snippet
PORT=$(free_port)
mkdir -p "$T/docroot"
# lighttpd opens its error log after dropping to www-data
install -d -o www-data -g www-data -m 0750 /run/lighttpd "$T/lighttpd"
cat >"$T/lighttpd.conf" <<CONF
server.modules = ( "mod_indexfile", "mod_access", "mod_alias", "mod_staticfile" )
server.document-root = "$T/docroot"
server.bind = "127.0.0.1"
server.port = $PORT
server.username = "www-data"
server.groupname = "www-data"
server.pid-file = "$T/lighttpd.pid"
server.errorlog = "$T/lighttpd/error.log"
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html", ".css" => "text/css", ".js" => "text/javascript" )
include "/etc/lighttpd/conf-available/10-fastcgi.conf"
include "/etc/lighttpd/conf-available/50-quotacache.conf"
CONF
start_lighttpd() {
	lighttpd -tt -f "$T/lighttpd.conf" >"$T/lighttpd-check.log" 2>&1 || { comment <"$T/lighttpd-check.log"; return 1; }
	lighttpd -f "$T/lighttpd.conf" </dev/null || return 1
	wait_until 150 eval '[ "$(http GET /api/v1/health)" = 200 ]'
}
if start_lighttpd; then
	ok "lighttpd (as www-data) serves /api/v1/health through the shipped snippet"
else
	{ tail -n 20 "$T/lighttpd/error.log" /var/log/quotacache/worker.log 2>/dev/null || true; } | comment
	bail "lighttpd with the shipped snippet did not answer /api/v1/health"
fi
maxv=$(ls "$D"/sql/*.sql | sed 's|.*/0*\([0-9]*\)_.*|\1|' | sort -n | tail -n 1)
http GET /api/v1/health >/dev/null
check "health: version $V, database reachable, schema $maxv" \
	[ "$(jq_ "$T/body" '(j["version"], j["database"], j["schema_version"])')" = "('$V', True, $maxv)" ]
users=$(ps -o user= -p "$(worker_pids "$SOCK" "$WORKER" | paste -sd, -)" 2>/dev/null | sort -u | paste -sd, -)
check "the workers run as www-data (${users:-none})" [ "$users" = www-data ]
check "the worker logs to /var/log/quotacache/worker.log" grep -q "worker started (version $V)" /var/log/quotacache/worker.log
code=$(http GET /quotacache/)
check "the dashboard is served at /quotacache/ ($code)" grep -q '<footer' "$T/body"

KEY=$(env -u QC_CONFIG quotacachectl user add --email "$EMAIL" --plan pro_monthly 2>>"$T/ctl.log") || KEY=""
check "quotacachectl reads /etc/quotacache/quotacache.conf by itself (user add)" [ -n "$KEY" ]
code=$(http POST /api/v1/quota/reserve "$KEY" '{"task_type":"cover_letter"}')
rid=$(jq_ "$T/body" 'j["reservation_id"]')
check "reserve through the package's lighttpd snippet: 201" [ "$code" = 201 ]
code=$(http POST /api/v1/quota/commit "$KEY" "{\"reservation_id\":\"$rid\",\"actual_tokens\":1234}")
check "commit 1234 tokens: 200" [ "$code" = 200 ]
http GET /api/v1/quota/status "$KEY" >/dev/null
check "quota status: 1234 tokens used today" [ "$(jq_ "$T/body" 'j["daily"]["used"]')" = 1234 ]

# the Apache snippet: a private Apache (mpm_event, mod_fcgid, as www-data) includes it
APORT=$(free_port)
mkdir -p "$T/apache"
cat >"$T/apache.conf" <<CONF
ServerRoot "$T/apache"
PidFile "$T/apache/apache.pid"
DefaultRuntimeDir "$T/apache"
ErrorLog "$T/apache/error.log"
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule fcgid_module /usr/lib/apache2/modules/mod_fcgid.so
User www-data
Group www-data
Listen 127.0.0.1:$APORT
ServerName 127.0.0.1
DocumentRoot "$T/docroot"
TypesConfig /dev/null
FcgidIPCDir "$T/apache/fcgid"
FcgidProcessTableFile "$T/apache/fcgid_shm"
Include /etc/apache2/conf-available/quotacache.conf
CONF
if apache2 -t -f "$T/apache.conf" >"$T/apache-check.log" 2>&1 &&
	apache2 -f "$T/apache.conf" -k start >"$T/apache-start.log" 2>&1 &&
	wait_until 150 eval '[ "$(PORT=$APORT http GET /api/v1/health)" = 200 ]'; then
	check "Apache + mod_fcgid with the shipped snippet: health says $V" [ "$(jq_ "$T/body" 'j["version"]')" = "$V" ]
	code=$(PORT=$APORT http GET /api/v1/quota/status "$KEY")
	check "through Apache: the same user's 1234 tokens ($code)" [ "$(jq_ "$T/body" 'j["daily"]["used"]')" = 1234 ]
else
	{ cat "$T/apache-check.log" "$T/apache-start.log"; tail -n 20 "$T/apache/error.log" 2>/dev/null || true; } | comment
	notok "Apache + mod_fcgid with the shipped snippet answers /api/v1/health"
fi
stop_apache

# --- upgrade: a rebuilt package with one more migration and a new version ------
N=$T/next
V2=$V+pkgtest1
next=$(printf '%03d' $((10#$maxv + 1)))
cat >"$N/sql/${next}_package_test.sql" <<'SQL'
-- added by tests/package/run.sh to the upgrade it builds: one more migration
CREATE TABLE IF NOT EXISTS package_test_upgrade (id INT PRIMARY KEY) ENGINE=InnoDB;
SQL
echo "dist_sql_DATA += sql/${next}_package_test.sql" >>"$N/Makefile.am"
sed -i "s/^AC_INIT(\[quotacache\], \[[^]]*\]/AC_INIT([quotacache], [$V2]/" "$N/configure.ac"
{ printf 'quotacache (%s-1) unstable; urgency=medium\n\n  * Package test: one more migration.\n\n -- %s  %s\n\n' \
	"$V2" "$(dpkg-parsechangelog -l "$D/debian/changelog" -S Maintainer)" "$(date -R)"
  cat "$D/debian/changelog"; } >"$N/debian/changelog"
if build_deb "$N" nocheck "$T/build2.log" && [[ -f $T/quotacache_${V2}-1_$ARCH.deb ]]; then
	ok "the upgrade ($V2-1, migration $next) builds"
else
	tail -n 30 "$T/build2.log" | comment
	bail "the upgrade did not build"
fi
if "${APT[@]}" install "$T/quotacache_${V2}-1_$ARCH.deb" >"$T/install2.log" 2>&1; then
	ok "apt-get install the upgrade over $DV"
else
	comment <"$T/install2.log" | tail -n 30
	bail "the upgrade did not install"
fi
{ grep '^quotacache:' "$T/install2.log" || true; } | comment
check "postinst ran the new migration" grep -q "applied 1 migration(s); schema version $((10#$next))" "$T/install2.log"
check "the admin's edit of the conffile survived the upgrade" grep -q "^db_socket = $VAR/" "$CONF"
stop_lighttpd
start_lighttpd || bail "lighttpd did not come back after the upgrade"
http GET /api/v1/health >/dev/null
check "after the reload: health says $V2, schema $((10#$next))" \
	[ "$(jq_ "$T/body" '(j["version"], j["schema_version"])')" = "('$V2', $((10#$next)))" ]
check "quotacachectl --version says $V2" [ "$(quotacachectl --version)" = "quotacachectl $V2" ]
http GET /api/v1/quota/status "$KEY" >/dev/null
check "usage survived the upgrade: the same key, 1234 tokens used today" [ "$(jq_ "$T/body" 'j["daily"]["used"]')" = 1234 ]

# postinst with the database down: it says so, and the package still configures
stop_lighttpd
bash "$SRC/scripts/mariadb.sh" stop "$VAR" >>"$T/mariadb.log" 2>&1
if dpkg-reconfigure quotacache >"$T/reconfigure.log" 2>&1; then rc=0; else rc=$?; fi
{ grep -A1 '^quotacache:' "$T/reconfigure.log" || true; } | comment
check "postinst with the database down: exits 0 and says migrations were not run" \
	bash -c '[ "$0" -eq 0 ] && grep -q "database is not reachable, migrations NOT run" "$1"' "$rc" "$T/reconfigure.log"
bash "$SRC/scripts/mariadb.sh" start "$VAR" >>"$T/mariadb.log" 2>&1 || bail "the private MariaDB did not restart"

# --- remove, purge: configuration goes, the database stays ---------------------
"${APT[@]}" remove quotacache >"$T/remove.log" 2>&1 || { comment <"$T/remove.log"; notok "apt-get remove"; }
check "remove keeps the configuration, drops the programs" test -f "$CONF" -a ! -e "$WORKER"
"${APT[@]}" purge quotacache >"$T/purge.log" 2>&1 || { comment <"$T/purge.log"; notok "apt-get purge"; }
{ grep '^quotacache:' "$T/purge.log" || true; } | comment
check "purge removes /etc/quotacache, the snippets, the logs and the statoverrides" bash -c \
	'[ ! -e /etc/quotacache ] && [ ! -e /etc/lighttpd/conf-available/50-quotacache.conf ] &&
	 [ ! -e /etc/apache2/conf-available/quotacache.conf ] && [ ! -e /var/log/quotacache ] &&
	 ! dpkg-statoverride --list | grep -q /etc/quotacache'
sql() { mariadb --defaults-file="$VAR/mariadb/my.cnf" -N -B quotacache -e "$1" 2>/dev/null || echo "?"; }
check "purge keeps the database: the user, its 1234 tokens and the upgrade's table" [ "$(sql \
	"SELECT CONCAT(COUNT(DISTINCT u.id), ' ', SUM(c.used)) FROM users u JOIN quota_counters c
	 ON c.user_id = u.id AND c.window_kind = 'day' WHERE u.email = '$EMAIL'") $(sql \
	'SELECT COUNT(*) FROM package_test_upgrade')" = "1 1234 0" ]
