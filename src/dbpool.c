/*
 * dbpool.c - a fixed set of connections handed out under one mutex.
 */
#include <pthread.h>
#include <stdlib.h>

#include "db.h"
#include "dbpool.h"

struct dbpool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned n, nfree;
	struct db **all;
	struct db **free;      /* stack of the idle ones */
	unsigned long waits;
};

struct dbpool *dbpool_new(const struct config *cfg, unsigned n)
{
	struct dbpool *p = calloc(1, sizeof *p);

	if (!p || n == 0)
		goto fail;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (!(p->all = calloc(n, sizeof *p->all)) || !(p->free = calloc(n, sizeof *p->free)))
		goto fail;
	for (unsigned i = 0; i < n; i++) {
		if (!(p->all[i] = db_new(cfg)))
			goto fail;
		p->n++;
		p->free[p->nfree++] = p->all[i];
	}
	return p;
fail:
	dbpool_free(p);
	return NULL;
}

void dbpool_free(struct dbpool *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n; i++)
		db_free(p->all[i]);
	free(p->all);
	free(p->free);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}

struct db *dbpool_get(struct dbpool *p)
{
	struct db *db;

	pthread_mutex_lock(&p->mu);
	if (!p->nfree)
		p->waits++;
	while (!p->nfree)
		pthread_cond_wait(&p->cv, &p->mu);
	db = p->free[--p->nfree];
	pthread_mutex_unlock(&p->mu);
	return db;
}

void dbpool_put(struct dbpool *p, struct db *db)
{
	pthread_mutex_lock(&p->mu);
	p->free[p->nfree++] = db;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

unsigned long dbpool_waits(struct dbpool *p)
{
	unsigned long w;

	pthread_mutex_lock(&p->mu);
	w = p->waits;
	pthread_mutex_unlock(&p->mu);
	return w;
}

unsigned dbpool_size(const struct dbpool *p)
{
	return p->n;
}
