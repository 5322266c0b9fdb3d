/*
 * dbtest.h - setup for C tests of the database-backed modules: they run
 * inside tests/integration/run.sh against the private test MariaDB, with the
 * configuration in $QC_CONFIG, and set the clock themselves.
 */
#ifndef QC_DBTEST_H
#define QC_DBTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <mysql.h>

#include "settings.h"
#include "db.h"
#include "users.h"

static struct config dbt_cfg;

static struct db *dbt_open(void)
{
	char err[512];
	struct db *db;

	if (config_load(&dbt_cfg, NULL, err, sizeof err) < 0) {
		printf("Bail out! config: %s\n", err);
		exit(1);
	}
	mysql_library_init(0, NULL, NULL);
	db = db_new(&dbt_cfg);
	if (!db || db_connect(db) != QC_OK) {
		printf("Bail out! cannot connect to the test database\n");
		exit(1);
	}
	return db;
}

static void dbt_close(struct db *db)
{
	db_free(db);
	config_release(&dbt_cfg);
	mysql_library_end();
}

/* A fresh user on plan; returns its id. */
static long long dbt_user(struct db *db, const char *plan)
{
	static int seq;
	char email[128], key[AUTH_KEY_LEN + 1];
	long long id = 0;

	snprintf(email, sizeof email, "dbt%d-%d-%ld@test.example", ++seq, (int)getpid(), (long)time(NULL));
	if (users_add(db, email, plan, 0, &id, key) != QC_OK) {
		printf("Bail out! cannot create a test user\n");
		exit(1);
	}
	return id;
}

static time_t dbt_utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = s };
	return timegm(&tm);
}

#endif
