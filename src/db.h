/*
 * db.h - one MariaDB connection, its prepared statements, and reconnection.
 * A struct db is used by one thread at a time (dbpool.h hands them out).
 *
 * Every query that carries a value goes through db_query()/db_exec(), which
 * prepare the statement once per connection (cached by SQL text) and bind
 * parameters; no SQL is ever built from input.  A lost connection is closed
 * and reopened on the next call; while the server is down calls fail with
 * QC_EDBDOWN.  Deadlocks and Galera certification conflicts (1213) and lock
 * wait timeouts (1205) are retried a bounded number of times with jitter.
 */
#ifndef QC_DB_H
#define QC_DB_H

#include <stddef.h>
#include <string.h>

#include "settings.h"
#include "qc.h"

struct db;

enum db_type { DBT_NULL, DBT_INT, DBT_STR, DBT_DOUBLE };

struct db_val {
	enum db_type t;
	long long i;
	double d;
	const char *s;
	size_t len;
};

#define DB_INT(x)    ((struct db_val){ .t = DBT_INT, .i = (long long)(x) })
#define DB_DBL(x)    ((struct db_val){ .t = DBT_DOUBLE, .d = (x) })
#define DB_STR(x)    ((struct db_val){ .t = DBT_STR, .s = (x), .len = strlen(x) })
#define DB_BLOB(x, n) ((struct db_val){ .t = DBT_STR, .s = (x), .len = (n) })
#define DB_NULLV     ((struct db_val){ .t = DBT_NULL })

/* A fully fetched result: every cell as text (NULL pointer = SQL NULL). */
struct db_rows {
	unsigned nrows, ncols;
	char **cells;            /* nrows * ncols, each NUL-terminated */
	unsigned long *lens;     /* byte length of each cell */
};

/* Allocate a handle; does not connect.  Borrowed config must outlive it. */
struct db *db_new(const struct config *cfg);
/* A handle for the migration runner: connects as migrate_user (if set)
 * and allows scripts of several statements; no other handle does. */
struct db *db_new_migrator(const struct config *cfg);
/* Close and free; db may be NULL. */
void db_free(struct db *db);

/* Connect if not connected.  QC_OK, or QC_EDBDOWN with the reason logged. */
enum qc_err db_connect(struct db *db);
/* 1 if a connection is open. */
int db_is_connected(const struct db *db);
/* Close the connection as a lost one is closed; the next statement
 * connects again.  For fault tests of the test build. */
void db_drop(struct db *db);
/* How many times this handle reconnected after losing a connection. */
unsigned long db_reconnects(const struct db *db);
/* Reconnections of every handle of this process (thread-safe). */
unsigned long db_reconnects_total(void);

/*
 * Database endpoints (SPEC §12): config db_hosts is a comma-separated list of
 * "host:port", "host" (db_port) or "/unix/socket/path"; empty means the one
 * endpoint of db_socket, or db_host:db_port.  A handle connects to the first
 * endpoint that answers (and, on Galera, is ready), in list order; on a later
 * one it returns to the first after db_failback_s, between statements.
 */
#define DB_MAX_HOSTS 8
struct db_endpoint {
	char host[256];          /* "" when sock is set */
	unsigned port;
	char sock[108];
};
/* Parse cfg's endpoints into eps[0..DB_MAX_HOSTS).  The count, or -1 with a
 * reason in err for a malformed list. */
int db_endpoints(const struct config *cfg, struct db_endpoint *eps, char *err, size_t errlen);
/* The index in that list of the endpoint this handle is connected to (-1: none). */
int db_endpoint_index(const struct db *db);
/* 1 if the connected server is a Galera node (wsrep_on). */
int db_galera(const struct db *db);
/* Deadlocks and certification conflicts (1213) and lock wait timeouts (1205)
 * seen by every handle of this process, the statements that needed retries
 * (by how many: retried[n] for n retries, n < DB_RETRY_SLOTS; the last slot
 * counts more) and the statements given up; all thread-safe. */
#define DB_RETRY_SLOTS 52
void db_conflict_counts(unsigned long *conflicts, unsigned long retried[DB_RETRY_SLOTS],
			unsigned long *giveups);

/*
 * Run a statement returning rows.  On QC_OK *out holds the first result set
 * (caller frees with db_rows_free).  Errors: QC_EDBDOWN, QC_EDB, QC_ENOMEM.
 */
enum qc_err db_query(struct db *db, const char *sql, const struct db_val *p,
		     unsigned np, struct db_rows **out);

/*
 * As db_query, but on a Galera node the read waits until this node has
 * applied every write committed anywhere in the cluster before it started
 * (wsrep_sync_wait = 1 for this statement only: it costs a round of the
 * cluster).  Callers use it for a second look when a row they expect (a key,
 * a cache entry, a reservation) was not found: another web node may have
 * written it a moment ago.  On a single server it is db_query.
 */
enum qc_err db_query_synced(struct db *db, const char *sql, const struct db_val *p,
			    unsigned np, struct db_rows **out);

/* Run a statement without rows; *affected (may be NULL) gets the count. */
enum qc_err db_exec(struct db *db, const char *sql, const struct db_val *p,
		    unsigned np, unsigned long long *affected);

/*
 * Run sql, a statement written for one row of ncols values, for nrows rows
 * at once (Connector/C's array binding: one execution, no SQL text built,
 * prepared once per connection).  The rows land together or not at all: an
 * INSERT's rows are one statement; any other statement runs once per row
 * inside a transaction of its own, so the connection must not be in one.
 * p holds the rows one after another; a column's non-NULL values are of one
 * type.
 */
enum qc_err db_exec_bulk(struct db *db, const char *sql, unsigned ncols, unsigned nrows,
			 const struct db_val *p);

/* Run trusted SQL text (several statements allowed; no values).  Migrations. */
enum qc_err db_exec_script(struct db *db, const char *sql);

/* Last insert id of this connection. */
unsigned long long db_insert_id(struct db *db);
/* MariaDB error number / text of the last failure (0 / "" if none). */
unsigned db_errno(const struct db *db);
const char *db_error(const struct db *db);

void db_rows_free(struct db_rows *r);
/* Cell accessors; NULL/0 when out of range or SQL NULL. */
const char *db_cell(const struct db_rows *r, unsigned row, unsigned col);
long long db_cell_ll(const struct db_rows *r, unsigned row, unsigned col);
unsigned long db_cell_len(const struct db_rows *r, unsigned row, unsigned col);
int db_cell_null(const struct db_rows *r, unsigned row, unsigned col);

#endif
