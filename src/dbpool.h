/*
 * dbpool.h - the few database connections of a worker process, shared by
 * its request threads, completion threads and flusher.
 *
 * Ownership: the pool owns every struct db in it; a thread that took one
 * with dbpool_get() owns it alone until dbpool_put().  The free list is
 * guarded by the pool's mutex.  Connections open lazily (db_query connects
 * on first use) and reconnect by themselves (db.h).
 */
#ifndef QC_DBPOOL_H
#define QC_DBPOOL_H

struct config;
struct db;
struct dbpool;

/* A pool of n connections for cfg (borrowed).  NULL on ENOMEM. */
struct dbpool *dbpool_new(const struct config *cfg, unsigned n);
void dbpool_free(struct dbpool *p);

/* Take a connection, waiting while all are taken (the wait is counted). */
struct db *dbpool_get(struct dbpool *p);
void dbpool_put(struct dbpool *p, struct db *db);

/* Waits so far. */
unsigned long dbpool_waits(struct dbpool *p);
unsigned dbpool_size(const struct dbpool *p);

#endif
