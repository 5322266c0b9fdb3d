/*
 * ctl.c - quotacachectl, the admin command line.  It shares the modules of
 * the worker and talks to the same database; it never runs in a request.
 *
 *   quotacachectl [-c FILE] migrate | --version
 * and the commands by concern: users, keys and the audit log
 * (ctl_users.c), quota (ctl_quota.c), cache (ctl_cache.c), experiments
 * (ctl_experiment.c).  This file: options, the connection, dispatch.
 * The configuration: -c FILE, else QC_CONFIG, else QC_DEFAULT_CONFIG when
 * configure was given --with-config-file and that file exists.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mysql.h>

#include "ctl.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "users.h"

const char *ctl_opt(int argc, char **argv, const char *name)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return i + 1 < argc ? argv[i + 1] : "";
	return NULL;
}

int ctl_int_opt(int argc, char **argv, const char *name, long long min, long long max,
		long long def, long long *v)
{
	const char *s = ctl_opt(argc, argv, name);
	char *end;

	*v = def;
	if (!s)
		return 0;
	errno = 0;
	*v = strtoll(s, &end, 10);
	if (!*s || *end || errno || *v < min || *v > max) {
		fprintf(stderr, "quotacachectl: %s takes a whole number from %lld to %lld, not '%s'\n",
			name, min, max, s);
		return -1;
	}
	return 1;
}

int ctl_fail(enum qc_err rc, struct db *db, const char *what)
{
	if (rc == QC_EDB || rc == QC_EDBDOWN)
		fprintf(stderr, "quotacachectl: %s: %s (%s)\n", what, qc_strerror(rc), db_error(db));
	else
		fprintf(stderr, "quotacachectl: %s: %s\n", what, qc_strerror(rc));
	return 1;
}

/* The user named by --id or --email; 0 with a message if neither resolves. */
long long ctl_user_arg(struct db *db, int argc, char **argv)
{
	const char *email = ctl_opt(argc, argv, "--email");
	long long uid = 0;
	int got = ctl_int_opt(argc, argv, "--id", 1, 1LL << 62, 0, &uid);

	if (got < 0)
		return 0;
	if (!got && email && users_find(db, email, &uid) != QC_OK)
		uid = 0;
	if (uid <= 0)
		fprintf(stderr, "quotacachectl: name an existing user with --id N or --email E\n");
	return uid;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: quotacachectl [-c CONFIG] COMMAND | --version\n"
		"  migrate                                   apply pending schema migrations\n");
	ctl_usage_users();
	ctl_usage_quota();
	ctl_usage_cache();
	ctl_usage_experiment();
	return 2;
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct db *db = NULL;
	char err[512];
	const char *cfgpath = NULL;
	int rc = 2, i = 1;

	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("quotacachectl %s\n", QC_VERSION);
		return 0;
	}
	if (argc > 2 && strcmp(argv[1], "-c") == 0) {
		cfgpath = argv[2];
		i = 3;
	}
	if (i >= argc)
		return usage();
#ifdef QC_DEFAULT_CONFIG
	if (!cfgpath && !getenv("QC_CONFIG") && access(QC_DEFAULT_CONFIG, F_OK) == 0)
		cfgpath = QC_DEFAULT_CONFIG;
#endif
	if (config_load(&cfg, cfgpath, err, sizeof err) < 0) {
		fprintf(stderr, "quotacachectl: %s\n", err);
		return 1;
	}
	log_set_level(LOG_WARN);
	if (mysql_library_init(0, NULL, NULL) || !(db = db_new(&cfg))) {
		fprintf(stderr, "quotacachectl: cannot initialise the database library\n");
		config_release(&cfg);
		return 1;
	}
	if (db_connect(db) != QC_OK) {
		fprintf(stderr, "quotacachectl: cannot connect to the database: %s\n", db_error(db));
		rc = 1;
		goto out;
	}
	if (strcmp(argv[i], "migrate") == 0) {
		int n = 0;
		long long v = 0;
		struct db *mdb;
		enum qc_err mrc;
		if (cfg.migrate_password_file && *cfg.migrate_password_file) {
			free(cfg.migrate_password);
			cfg.migrate_password = NULL;
			if (config_read_secret(cfg.migrate_password_file, &cfg.migrate_password, err,
					       sizeof err) < 0) {
				fprintf(stderr, "quotacachectl: migrate: %s\n", err);
				rc = 1;
				goto out;
			}
		}
		mdb = db_new_migrator(&cfg);
		mrc = mdb ? db_connect(mdb) : QC_ENOMEM;
		if (mrc != QC_OK || migrate_run(mdb, cfg.sql_dir, &n, err, sizeof err) != QC_OK) {
			fprintf(stderr, "quotacachectl: migrate: %s\n",
				mrc != QC_OK ? (mdb ? db_error(mdb) : "out of memory") : err);
			db_free(mdb);
			rc = 1;
			goto out;
		}
		db_free(mdb);
		migrate_current(db, &v);
		printf("applied %d migration(s); schema version %lld\n", n, v);
		rc = 0;
	} else if (strcmp(argv[i], "user") == 0) {
		rc = ctl_user(db, argc - i - 1, argv + i + 1);
	} else if (strcmp(argv[i], "key") == 0) {
		rc = ctl_key(db, argc - i - 1, argv + i + 1);
	} else if (strcmp(argv[i], "audit") == 0) {
		rc = ctl_audit(db, argc - i - 1, argv + i + 1);
	} else if (strcmp(argv[i], "quota") == 0) {
		rc = ctl_quota(db, argc - i - 1, argv + i + 1);
	} else if (strcmp(argv[i], "cache") == 0) {
		rc = ctl_cache(db, &cfg, argc - i - 1, argv + i + 1);
	} else if (strcmp(argv[i], "experiment") == 0) {
		rc = ctl_experiment(db, argc - i - 1, argv + i + 1);
	} else {
		rc = usage();
	}
out:
	db_free(db);
	config_release(&cfg);
	mysql_library_end();
	return rc;
}
