# www_pass.sh - sourced by apache_pass.sh and apache_proxy_pass.sh: what a
# pass whose workers run as www-data needs before its server starts.
# shellcheck shell=bash

# www_pass_prepare TAG DBNAME: copy the secrets the workers read into a
# www-data-readable directory (ENV_ARGS gets their QC_*_FILE overrides), let
# www-data write sanitizer reports, and create and migrate the pass's own
# database (the suites assume a fresh one).  Needs VAR, WWW_GROUP, QC_CTL and
# conf_value.  Exits 1 (with a failing TAP line) on failure.
www_pass_prepare() {
	local tag=$1 setting f name out
	SECDIR=$VAR/www-secrets
	ENV_ARGS=()
	install -d -m 0750 -o root -g "$WWW_GROUP" "$SECDIR"
	for setting in db_password_file upstream_key_file alert_webhook_secret_file; do
		f=$(conf_value "$setting")
		[ -n "$f" ] || continue
		name=$(basename "$f")
		install -m 0640 -o root -g "$WWW_GROUP" "$f" "$SECDIR/$name" \
			|| { echo "not ok - $tag started (cannot copy $f)"; exit 1; }
		ENV_ARGS+=("QC_$(echo "$setting" | tr '[:lower:]' '[:upper:]')=$SECDIR/$name")
	done
	# sanitizer reports of the www-data workers (run.sh fails on any file here)
	mkdir -p "$VAR/san"
	chgrp "$WWW_GROUP" "$VAR/san" && chmod 1770 "$VAR/san"
	export QC_DB_NAME=$2
	ENV_ARGS+=("QC_DB_NAME=$QC_DB_NAME")
	if ! mariadb --defaults-file="$VAR/mariadb/my.cnf" -e "DROP DATABASE IF EXISTS $QC_DB_NAME;
		CREATE DATABASE $QC_DB_NAME CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" \
		|| ! out=$("$QC_CTL" migrate 2>&1); then
		echo "not ok - $tag database $QC_DB_NAME created and migrated"
		echo "${out:-}" | sed 's/^/# /'
		exit 1
	fi
	echo "ok - $tag database $QC_DB_NAME created and migrated"
}
