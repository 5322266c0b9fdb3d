/*
 * ctl.c - quotacachectl, the admin command line.  It shares the modules of
 * the worker and talks to the same database; it never runs in a request.
 *
 *   quotacachectl [-c FILE] migrate
 *   quotacachectl user add --email E --plan P [--admin]
 *   quotacachectl user list | user set-plan (--id N | --email E) --plan P
 *   quotacachectl key add (--id N | --email E) | key revoke KEY-OR-PREFIX
 *   quotacachectl key list [--id N | --email E]
 *   quotacachectl --version
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

static int flag(int argc, char **argv, const char *name)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
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

static void print_rows(const struct db_rows *r, const char *const *head)
{
	for (unsigned c = 0; c < r->ncols; c++)
		printf("%s%s", c ? "\t" : "", head[c]);
	printf("\n");
	for (unsigned i = 0; i < r->nrows; i++) {
		for (unsigned c = 0; c < r->ncols; c++) {
			const char *v = db_cell(r, i, c);
			printf("%s%s", c ? "\t" : "", v ? v : "-");
		}
		printf("\n");
	}
}

static int cmd_user(struct db *db, int argc, char **argv)
{
	char key[AUTH_KEY_LEN + 1];
	struct db_rows *r = NULL;
	enum qc_err rc;

	if (argc >= 1 && strcmp(argv[0], "add") == 0) {
		const char *email = ctl_opt(argc, argv, "--email"), *plan = ctl_opt(argc, argv, "--plan");
		long long id;
		if (!email || !plan) {
			fprintf(stderr, "usage: quotacachectl user add --email E --plan P [--admin]\n");
			return 2;
		}
		rc = users_add(db, email, plan, flag(argc, argv, "--admin"), &id, key);
		if (rc == QC_EINPUT) {
			fprintf(stderr, "quotacachectl: bad email or unknown plan '%s'\n", plan);
			return 1;
		}
		if (rc == QC_ECONFLICT) {
			fprintf(stderr, "quotacachectl: a user with email %s exists\n", email);
			return 1;
		}
		if (rc != QC_OK)
			return ctl_fail(rc, db, "user add");
		fprintf(stderr, "created user %lld (%s, plan %s); the key is shown once:\n", id, email, plan);
		printf("%s\n", key);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		static const char *const head[] = { "id", "email", "plan", "role", "created_at", "keys" };
		if ((rc = users_list(db, &r)) != QC_OK)
			return ctl_fail(rc, db, "user list");
		print_rows(r, head);
		db_rows_free(r);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "set-plan") == 0) {
		const char *plan = ctl_opt(argc, argv, "--plan");
		long long uid = ctl_user_arg(db, argc, argv);
		if (!uid || !plan)
			return 2;
		rc = users_set_plan(db, uid, plan);
		if (rc == QC_EINPUT) {
			fprintf(stderr, "quotacachectl: unknown plan '%s'\n", plan);
			return 1;
		}
		if (rc != QC_OK)
			return ctl_fail(rc, db, "user set-plan");
		printf("user %lld is now on plan %s\n", uid, plan);
		return 0;
	}
	fprintf(stderr, "usage: quotacachectl user add|list|set-plan ...\n");
	return 2;
}

static int cmd_key(struct db *db, int argc, char **argv)
{
	char key[AUTH_KEY_LEN + 1];
	struct db_rows *r = NULL;
	enum qc_err rc;

	if (argc >= 1 && strcmp(argv[0], "add") == 0) {
		long long uid = ctl_user_arg(db, argc, argv);
		if (!uid)
			return 2;
		if ((rc = keys_add(db, uid, key)) != QC_OK)
			return ctl_fail(rc, db, "key add");
		fprintf(stderr, "new key for user %lld; it is shown once:\n", uid);
		printf("%s\n", key);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[0], "revoke") == 0) {
		if ((rc = keys_revoke(db, argv[1])) != QC_OK)
			return ctl_fail(rc, db, "key revoke");
		printf("revoked\n");
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		static const char *const head[] = { "id", "user_id", "prefix", "created_at", "revoked_at" };
		long long uid = 0;
		if (ctl_opt(argc, argv, "--id") || ctl_opt(argc, argv, "--email"))
			if (!(uid = ctl_user_arg(db, argc, argv)))
				return 2;
		if ((rc = keys_list(db, uid, &r)) != QC_OK)
			return ctl_fail(rc, db, "key list");
		print_rows(r, head);
		db_rows_free(r);
		return 0;
	}
	fprintf(stderr, "usage: quotacachectl key add|revoke|list ...\n");
	return 2;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: quotacachectl [-c CONFIG] COMMAND | --version\n"
		"  migrate                                   apply pending schema migrations\n"
		"  user add --email E --plan P [--admin]     create a user, print its key once\n"
		"  user list                                 list users\n"
		"  user set-plan (--id N|--email E) --plan P change a user's plan\n"
		"  key add (--id N|--email E)                new key for a user, printed once\n"
		"  key revoke KEY-OR-PREFIX                  revoke a key\n"
		"  key list [--id N|--email E]               list keys (prefixes only)\n");
	ctl_usage_more();
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
		rc = cmd_user(db, argc - i - 1, argv + i + 1);
	} else if (strcmp(argv[i], "key") == 0) {
		rc = cmd_key(db, argc - i - 1, argv + i + 1);
	} else {
		rc = ctl_more(db, &cfg, argc - i, argv + i);
		if (rc < 0)
			rc = usage();
	}
out:
	db_free(db);
	config_release(&cfg);
	mysql_library_end();
	return rc;
}
