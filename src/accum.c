/*
 * accum.c - the accumulator shared by the cache hit counters, the usage
 * ledger queue and the metrics counters (see accum.h for the rules).
 */
#include <stdlib.h>
#include <string.h>

#include "accum.h"
#include "log.h"

/* a = the accumulator, locked by the caller */
static int add_locked(struct accum *a, const void *rec, time_t now)
{
	char *base;

	if (!a->recs && !(a->recs = calloc(a->cap, a->recsz)))
		return -1;
	base = a->recs;
	if (a->same)
		for (unsigned i = 0; i < a->n; i++)
			if (a->same(base + (size_t)i * a->recsz, rec)) {
				a->merge(base + (size_t)i * a->recsz, rec);
				return 0;
			}
	if (a->n == a->cap)
		return -1;
	if (!a->n)
		a->since = now;
	memcpy(base + (size_t)a->n * a->recsz, rec, a->recsz);
	a->n++;
	return 0;
}

void accum_add(struct accum *a, const void *rec, time_t now)
{
	int rc;

	pthread_mutex_lock(&a->mu);
	rc = add_locked(a, rec, now);
	if (rc < 0)
		a->dropped++;
	pthread_mutex_unlock(&a->mu);
	if (rc < 0)
		log_warn("accum", "%s: %u records pending, one is dropped", a->name, a->cap);
}

int accum_find(struct accum *a, const void *key, void *out)
{
	int found = 0;

	pthread_mutex_lock(&a->mu);
	for (unsigned i = 0; a->same && i < a->n && !found; i++) {
		const char *r = (const char *)a->recs + (size_t)i * a->recsz;
		if (a->same(r, key)) {
			memcpy(out, r, a->recsz);
			found = 1;
		}
	}
	pthread_mutex_unlock(&a->mu);
	return found;
}

int accum_due(struct accum *a, time_t now)
{
	int due;

	pthread_mutex_lock(&a->mu);
	due = qc_flush_due(a->n, a->cap, a->since, now);
	pthread_mutex_unlock(&a->mu);
	return due;
}

enum qc_err accum_flush(struct accum *a, struct db *db)
{
	void *mine;
	unsigned n, lost = 0;
	enum qc_err rc;

	pthread_mutex_lock(&a->mu);
	mine = a->recs;
	n = a->n;
	a->recs = NULL;
	a->n = 0;
	pthread_mutex_unlock(&a->mu);
	if (!n) {
		free(mine);
		return QC_OK;
	}
	if (a->sort)
		qsort(mine, n, a->recsz, a->sort);
	rc = a->write(db, mine, n);
	if (rc == QC_EDB && n > 1) {
		/* the database answered but refused the batch: one bad record must
		 * not block the ones behind it; write them one by one and drop (log,
		 * count) only those refused on their own */
		unsigned bad = 0;
		for (unsigned i = 0; i < n; i++) {
			char *r = (char *)mine + (size_t)i * a->recsz;
			if (a->write(db, r, 1) == QC_EDB) {
				bad++;
				if (a->describe) {
					char line[600];
					a->describe(r, line, sizeof line);
					log_error("accum", "%s: a record was refused and is dropped: %s", a->name, line);
				}
			}
		}
		pthread_mutex_lock(&a->mu);
		a->dropped += bad;
		a->failed_flushes++;
		pthread_mutex_unlock(&a->mu);
		free(mine);
		return bad ? QC_EDB : QC_OK;
	}
	if (rc != QC_OK) {
		/* put them back for the next try */
		pthread_mutex_lock(&a->mu);
		a->failed_flushes++;
		for (unsigned i = 0; i < n; i++)
			if (add_locked(a, (char *)mine + (size_t)i * a->recsz, time(NULL)) < 0)
				lost++;
		a->dropped += lost;
		pthread_mutex_unlock(&a->mu);
		if (lost)
			log_warn("accum", "%s: flush failed and %u records did not fit back", a->name, lost);
	}
	free(mine);
	return rc;
}

void accum_counts(struct accum *a, unsigned long *dropped, unsigned long *failed)
{
	pthread_mutex_lock(&a->mu);
	*dropped = a->dropped;
	*failed = a->failed_flushes;
	pthread_mutex_unlock(&a->mu);
}
