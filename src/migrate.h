/*
 * migrate.h - schema migrations: numbered files "NNN_name.sql" in a
 * directory, applied in order, each recorded in schema_migrations.
 * Running it again applies nothing (idempotent).
 */
#ifndef QC_MIGRATE_H
#define QC_MIGRATE_H

#include "qc.h"

struct db;

/*
 * Apply every migration in dir not yet recorded.  *applied (may be NULL)
 * gets how many ran.  On failure returns an error with a message in err
 * naming the file; migrations before it stay applied.
 */
enum qc_err migrate_run(struct db *db, const char *dir, int *applied,
			char *err, size_t errlen);

/* Highest applied version into *version (0 if none).  QC_OK or DB error. */
enum qc_err migrate_current(struct db *db, long long *version);

#endif
