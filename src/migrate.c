/*
 * migrate.c - the migration runner used by quotacachectl.  Migration files
 * are trusted SQL shipped with the program (no values from input), so they
 * run as scripts; the version bookkeeping uses prepared statements.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "migrate.h"

static const char SQL_CREATE[] =
	"CREATE TABLE IF NOT EXISTS schema_migrations ("
	" version BIGINT NOT NULL PRIMARY KEY,"
	" name VARCHAR(255) NOT NULL,"
	" applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
static const char SQL_HAS[] = "SELECT 1 FROM schema_migrations WHERE version = ?";
static const char SQL_RECORD[] = "INSERT INTO schema_migrations (version, name) VALUES (?, ?)";
static const char SQL_CURRENT[] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

static int is_migration(const char *name, long long *version)
{
	size_t n = strlen(name);
	char *end;

	if (n < 9 || strcmp(name + n - 4, ".sql") != 0)
		return 0;
	*version = strtoll(name, &end, 10);
	return end != name && *end == '_' && *version > 0;
}

static int cmp_names(const void *a, const void *b)
{
	long long va = 0, vb = 0;
	is_migration(*(char *const *)a, &va);
	is_migration(*(char *const *)b, &vb);
	return va < vb ? -1 : va > vb;
}

enum qc_err migrate_run(struct db *db, const char *dir, int *applied,
			char *err, size_t errlen)
{
	DIR *d = NULL;
	struct dirent *e;
	char **names = NULL, *sql = NULL, path[4096];
	size_t n = 0, cap = 0;
	enum qc_err rc;
	int count = 0;

	if (applied)
		*applied = 0;
	if ((rc = db_exec(db, SQL_CREATE, NULL, 0, NULL)) != QC_OK) {
		snprintf(err, errlen, "cannot create schema_migrations: %s", db_error(db));
		return rc;
	}
	if (!(d = opendir(dir))) {
		snprintf(err, errlen, "cannot open migrations directory %s: %s", dir, strerror(errno));
		return QC_EIO;
	}
	rc = QC_ENOMEM;
	while ((e = readdir(d))) {
		long long v;
		if (!is_migration(e->d_name, &v))
			continue;
		if (n == cap) {
			char **t = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
			if (!t)
				goto out;
			names = t;
		}
		if (!(names[n] = strdup(e->d_name)))
			goto out;
		n++;
	}
	qsort(names, n, sizeof *names, cmp_names);
	for (size_t i = 0; i < n; i++) {
		struct db_rows *rows = NULL;
		long long v = 0;
		struct db_val p[2];

		is_migration(names[i], &v);
		p[0] = DB_INT(v);
		if ((rc = db_query(db, SQL_HAS, p, 1, &rows)) != QC_OK) {
			snprintf(err, errlen, "%s: %s", names[i], db_error(db));
			goto out;
		}
		int done = rows->nrows > 0;
		db_rows_free(rows);
		if (done)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		size_t len;
		if (!(sql = qc_read_file(path, 16 << 20, &len))) {
			snprintf(err, errlen, "cannot read %s", path);
			rc = QC_EIO;
			goto out;
		}
		if ((rc = db_exec_script(db, sql)) != QC_OK) {
			snprintf(err, errlen, "%s failed: %s", names[i], db_error(db));
			goto out;
		}
		free(sql);
		sql = NULL;
		p[1] = DB_STR(names[i]);
		if ((rc = db_exec(db, SQL_RECORD, p, 2, NULL)) != QC_OK) {
			snprintf(err, errlen, "%s: cannot record: %s", names[i], db_error(db));
			goto out;
		}
		log_info("migrate", "applied %s", names[i]);
		count++;
	}
	if (applied)
		*applied = count;
	rc = QC_OK;
out:
	free(sql);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (d)
		closedir(d);
	return rc;
}

enum qc_err migrate_current(struct db *db, long long *version)
{
	struct db_rows *rows = NULL;
	enum qc_err rc = db_query(db, SQL_CURRENT, NULL, 0, &rows);

	*version = 0;
	if (rc == QC_OK)
		*version = db_cell_ll(rows, 0, 0);
	db_rows_free(rows);
	return rc;
}
