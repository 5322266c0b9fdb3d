/*
 * accum.h - a per-process accumulator: records added by any thread, merged
 * by key when they are the same (counters) or appended (events), and
 * written to the database by a timer thread, a batch in one array-bound
 * statement (db_exec_bulk): all of it lands or none of it.
 *
 * Ownership: each struct accum is shared by every thread of the process and
 * guarded by its own mutex.  A flush swaps the pending records out under the
 * lock and writes them without it, so adding never waits for the database.
 * Records that fail to be written go back (merged, or appended while room
 * remains); past the cap a record is dropped, logged and counted.
 */
#ifndef QC_ACCUM_H
#define QC_ACCUM_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include "qc.h"

struct db;

struct accum {
	const char *name;            /* for logs and metrics */
	size_t recsz;                /* bytes per record */
	unsigned cap;                /* most records pending */
	/* same(a, b): 1 when b should be merged into a (NULL: never merge) */
	int (*same)(const void *a, const void *b);
	void (*merge)(void *into, const void *from);
	/* write n records (sorted by the flusher if sort is set); QC_OK or an error */
	enum qc_err (*write)(struct db *db, void *recs, unsigned n);
	int (*sort)(const void *a, const void *b);
	/* a record as text for the log when it is refused (may be NULL) */
	void (*describe)(const void *rec, char *out, size_t outlen);
	/* state, under mu */
	pthread_mutex_t mu;
	void *recs;
	unsigned n;
	time_t since;
	unsigned long dropped, failed_flushes;
};

#define ACCUM_INIT(nm, type, capacity, samef, mergef, writef, sortf) { \
	.name = (nm), .recsz = sizeof(type), .cap = (capacity), .same = (samef), \
	.merge = (mergef), .write = (writef), .sort = (sortf), \
	.mu = PTHREAD_MUTEX_INITIALIZER }

/* Add (merge or append) one record at time now (the request's clock; the
 * first pending record's time starts the one-second flush deadline); a full
 * accumulator drops and counts it. */
void accum_add(struct accum *a, const void *rec, time_t now);
/* Copy the pending record that same() matches with key into out; 1 if found. */
int accum_find(struct accum *a, const void *key, void *out);
/* Seconds until due (-1: nothing pending; 0: now). */
int accum_due(struct accum *a, time_t now);
/* Write what is pending.  On failure the records are put back. */
enum qc_err accum_flush(struct accum *a, struct db *db);
/* Counts for metrics: records dropped, flushes failed (read under the lock). */
void accum_counts(struct accum *a, unsigned long *dropped, unsigned long *failed);

#endif
