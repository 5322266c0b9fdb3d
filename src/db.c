/*
 * db.c - MariaDB Connector/C wrapper: one connection, a cache of prepared
 * statements keyed by SQL text, bounded retry of 1213/1205, reconnection,
 * failover over a list of database endpoints (Galera nodes) and back.
 *
 * Invariant: when conn is NULL the statement cache is empty (statements die
 * with their connection).
 */
#include <errno.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>

#include "db.h"
#include "log.h"

#define DB_MAX_STMTS 96
#define DB_MAX_PARAMS 32
#define DB_RETRIES 50     /* SPEC §7: up to ~40 retries seen under a Galera burst */

struct stmt_slot {
	const char *sql;        /* borrowed: statements are string literals */
	MYSQL_STMT *stmt;
};

struct db {
	const struct config *cfg;
	MYSQL *conn;
	struct stmt_slot stmts[DB_MAX_STMTS];
	unsigned nstmts;
	unsigned last_errno;
	char last_error[256];
	unsigned long reconnects;
	int ever_connected;
	time_t last_ok;
	int migrator;            /* migrations: its own user, multi-statements */
	int host_idx;            /* index of the connected endpoint, -1: none */
	time_t host_since;       /* when it connected (or last tried the first) */
	int galera;              /* the server is a Galera node */
	unsigned epoch;          /* fail_epoch when last known good */
};

struct db *db_new(const struct config *cfg)
{
	struct db *db = calloc(1, sizeof *db);
	if (db) {
		db->cfg = cfg;
		db->host_idx = -1;
	}
	return db;
}

struct db *db_new_migrator(const struct config *cfg)
{
	struct db *db = db_new(cfg);
	if (db)
		db->migrator = 1;
	return db;
}

/* reconnections of every handle of this process (read by the flusher) */
static atomic_ulong reconnects_total;
/* 1213/1205 seen, statements by retries needed, statements given up */
static atomic_ulong conflicts_total, retried_total[DB_RETRY_SLOTS], giveups_total;
/* bumped when any handle of this process loses its connection: the others
 * check theirs (a ping) before their next statement, so that a database node
 * that died costs one failed statement per process, not one per handle */
static atomic_uint fail_epoch;

void db_conflict_counts(unsigned long *conflicts, unsigned long retried[DB_RETRY_SLOTS],
			unsigned long *giveups)
{
	*conflicts = atomic_load(&conflicts_total);
	for (int i = 0; i < DB_RETRY_SLOTS; i++)
		retried[i] = atomic_load(&retried_total[i]);
	*giveups = atomic_load(&giveups_total);
}

static void db_disconnect(struct db *db)
{
	for (unsigned i = 0; i < db->nstmts; i++)
		mysql_stmt_close(db->stmts[i].stmt);
	db->nstmts = 0;
	if (db->conn)
		mysql_close(db->conn);
	db->conn = NULL;
	db->host_idx = -1;
	db->galera = 0;
}

void db_drop(struct db *db)
{
	db_disconnect(db);
}

void db_free(struct db *db)
{
	if (!db)
		return;
	db_disconnect(db);
	free(db);
}

static void set_err(struct db *db, unsigned no, const char *msg)
{
	db->last_errno = no;
	snprintf(db->last_error, sizeof db->last_error, "%s", msg ? msg : "");
}

static int is_conn_error(unsigned no)
{
	switch (no) {
	case CR_SERVER_GONE_ERROR: case CR_SERVER_LOST: case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR: case CR_SERVER_LOST_EXTENDED: case ER_CONNECTION_KILLED:
	case ER_SERVER_SHUTDOWN: case 4031 /* ER_CLIENT_INTERACTION_TIMEOUT */:
	case CR_COMMANDS_OUT_OF_SYNC:
	case ER_UNKNOWN_COM_ERROR:   /* 1047: a Galera node not ready (not Synced, no quorum) */
		return 1;
	}
	return 0;
}

int db_endpoints(const struct config *c, struct db_endpoint *eps, char *err, size_t errlen)
{
	const char *s = c->db_hosts ? c->db_hosts : "";
	int n = 0;

	if (!*s) {   /* the single endpoint of db_socket or db_host:db_port */
		memset(eps, 0, sizeof *eps);
		if (c->db_socket && *c->db_socket) {
			if (strlen(c->db_socket) >= sizeof eps->sock) {
				snprintf(err, errlen, "db_socket: path too long");
				return -1;
			}
			strcpy(eps->sock, c->db_socket);
		} else {
			snprintf(eps->host, sizeof eps->host, "%s", c->db_host ? c->db_host : "localhost");
			eps->port = (unsigned)c->db_port;
		}
		return 1;
	}
	for (const char *p = s;;) {
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len, *colon;
		struct db_endpoint *ep = &eps[n];

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (b == e) {
			snprintf(err, errlen, "db_hosts: an empty entry");
			return -1;
		}
		if (n == DB_MAX_HOSTS) {
			snprintf(err, errlen, "db_hosts: more than %d entries", DB_MAX_HOSTS);
			return -1;
		}
		memset(ep, 0, sizeof *ep);
		if (*b == '/') {
			if ((size_t)(e - b) >= sizeof ep->sock) {
				snprintf(err, errlen, "db_hosts: a socket path too long");
				return -1;
			}
			memcpy(ep->sock, b, (size_t)(e - b));
		} else {
			colon = memchr(b, ':', (size_t)(e - b));
			size_t hl = (size_t)((colon ? colon : e) - b);
			if (hl == 0 || hl >= sizeof ep->host || memchr(b, ' ', hl)) {
				snprintf(err, errlen, "db_hosts: a bad host name");
				return -1;
			}
			memcpy(ep->host, b, hl);
			ep->port = (unsigned)c->db_port;
			if (colon) {
				long port = colon + 1 < e ? 0 : -1;
				for (const char *d = colon + 1; d < e && port >= 0; d++)
					port = *d >= '0' && *d <= '9' && port <= 65535 ? port * 10 + (*d - '0') : -1;
				if (port < 1 || port > 65535) {
					snprintf(err, errlen, "db_hosts: a bad port (1-65535)");
					return -1;
				}
				ep->port = (unsigned)port;
			}
		}
		n++;
		if (!p[len])
			break;
		p += len + 1;
	}
	return n;
}

int db_endpoint_index(const struct db *db) { return db->conn ? db->host_idx : -1; }
int db_galera(const struct db *db) { return db->galera; }

/* One row, one column of a fixed query (no value in it); NULL on error. */
static char *query_one(MYSQL *conn, const char *sql, unsigned col)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	char *v = NULL;

	if (mysql_query(conn, sql) || !(res = mysql_store_result(conn)))
		return NULL;
	if ((row = mysql_fetch_row(res)) && mysql_num_fields(res) > col && row[col])
		v = strdup(row[col]);
	mysql_free_result(res);
	return v;
}

/* Connect to one endpoint; on Galera only to a node ready for clients. */
static enum qc_err connect_one(struct db *db, const struct db_endpoint *ep)
{
	const struct config *c = db->cfg;
	unsigned int timeout = 2, rw_timeout = (unsigned)c->db_rw_timeout_s;
	int own = db->migrator && c->migrate_user && *c->migrate_user;
	const char *user = own ? c->migrate_user : c->db_user;
	const char *pass = own ? c->migrate_password : c->db_password;
	char lockwait[80], *v;

	if (!(db->conn = mysql_init(NULL)))
		return QC_ENOMEM;
	mysql_options(db->conn, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	/* a partitioned database must not hold a worker: bounded reads/writes */
	if (!db->migrator) {   /* a migration (ALTER of a big table) may take long */
		mysql_options(db->conn, MYSQL_OPT_READ_TIMEOUT, &rw_timeout);
		mysql_options(db->conn, MYSQL_OPT_WRITE_TIMEOUT, &rw_timeout);
	}
	mysql_options(db->conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_options(db->conn, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
	/* row locks only on the rows read: no gap locks between workers */
	mysql_options(db->conn, MYSQL_INIT_COMMAND,
		      "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
	/* a lock wait is short; the retry budget bounds the whole (db_retry_budget_ms) */
	snprintf(lockwait, sizeof lockwait, "SET SESSION innodb_lock_wait_timeout = %lld",
		 c->db_lock_wait_s);
	mysql_options(db->conn, MYSQL_INIT_COMMAND, lockwait);
	/* least privilege: the worker's user runs one statement per call (and
	 * CALLs, whose result sets need MULTI_RESULTS); only the migration
	 * runner, as its own user, sends scripts of several statements */
	if (!mysql_real_connect(db->conn, ep->sock[0] ? NULL : ep->host, user, pass, c->db_name,
				ep->port, ep->sock[0] ? ep->sock : NULL,
				db->migrator ? CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS
					     : CLIENT_MULTI_RESULTS)) {
		set_err(db, mysql_errno(db->conn), mysql_error(db->conn));
		goto fail;
	}
	/* a Galera node that is joining, a donor or without quorum answers
	 * connections but not queries (1047): only a ready one will do */
	v = query_one(db->conn, "SELECT @@wsrep_on", 0);
	db->galera = v && (strcmp(v, "1") == 0 || strcasecmp(v, "ON") == 0);
	free(v);
	if (db->galera) {
		v = query_one(db->conn, "SHOW GLOBAL STATUS LIKE 'wsrep_ready'", 1);
		int ready = v && strcasecmp(v, "ON") == 0;
		free(v);
		if (!ready) {
			set_err(db, ER_UNKNOWN_COM_ERROR, "Galera node not ready (wsrep_ready OFF)");
			goto fail;
		}
	}
	return QC_OK;
fail:
	mysql_close(db->conn);
	db->conn = NULL;
	db->galera = 0;
	return QC_EDBDOWN;
}

enum qc_err db_connect(struct db *db)
{
	struct db_endpoint eps[DB_MAX_HOSTS];
	char err[128];
	int n;
	enum qc_err rc = QC_EDBDOWN;

	if (db->conn)
		return QC_OK;
	if ((n = db_endpoints(db->cfg, eps, err, sizeof err)) < 0) {
		set_err(db, CR_CONNECTION_ERROR, err);
		log_error("db", "%s", err);
		return QC_EDBDOWN;
	}
	/* in list order: the first is this web node's own database node */
	for (int i = 0; i < n; i++) {
		if ((rc = connect_one(db, &eps[i])) == QC_ENOMEM)
			return rc;
		if (rc == QC_OK) {
			db->host_idx = i;
			break;
		}
		if (eps[i].sock[0])
			log_error("db", "connect to %s failed: %s", eps[i].sock, db->last_error);
		else
			log_error("db", "connect to %s:%u failed: %s", eps[i].host, eps[i].port, db->last_error);
	}
	if (rc != QC_OK)
		return QC_EDBDOWN;
	db->host_since = time(NULL);
	db->epoch = atomic_load(&fail_epoch);
	if (db->host_idx > 0)
		log_warn("db", "failed over to database endpoint %d of %d", db->host_idx + 1, n);
	if (db->ever_connected) {
		db->reconnects++;
		atomic_fetch_add(&reconnects_total, 1);
		log_info("db", "reconnected to database");
	}
	db->ever_connected = 1;
	db->last_ok = time(NULL);
	return QC_OK;
}

int db_is_connected(const struct db *db) { return db->conn != NULL; }
unsigned long db_reconnects(const struct db *db) { return db->reconnects; }
unsigned long db_reconnects_total(void) { return atomic_load(&reconnects_total); }
unsigned db_errno(const struct db *db) { return db->last_errno; }
const char *db_error(const struct db *db) { return db->last_error; }
unsigned long long db_insert_id(struct db *db)
{
	return db->conn ? mysql_insert_id(db->conn) : 0;
}

static MYSQL_STMT *prepare(struct db *db, const char *sql)
{
	MYSQL_STMT *st = mysql_stmt_init(db->conn);

	if (!st) {
		set_err(db, CR_OUT_OF_MEMORY, "out of memory");
		return NULL;
	}
	if (mysql_stmt_prepare(st, sql, strlen(sql))) {
		set_err(db, mysql_stmt_errno(st), mysql_stmt_error(st));
		log_error("db", "prepare failed (%u): %s", db->last_errno, db->last_error);
		mysql_stmt_close(st);
		return NULL;
	}
	return st;
}

static MYSQL_STMT *get_stmt(struct db *db, const char *sql)
{
	MYSQL_STMT *st;

	for (unsigned i = 0; i < db->nstmts; i++)
		if (db->stmts[i].sql == sql)
			return db->stmts[i].stmt;
	if (!(st = prepare(db, sql)))
		return NULL;
	my_bool on = 1;
	mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
	if (db->nstmts == DB_MAX_STMTS) {   /* full: drop the oldest */
		mysql_stmt_close(db->stmts[0].stmt);
		memmove(db->stmts, db->stmts + 1, sizeof db->stmts[0] * (DB_MAX_STMTS - 1));
		db->nstmts--;
	}
	db->stmts[db->nstmts].sql = sql;
	db->stmts[db->nstmts].stmt = st;
	db->nstmts++;
	return st;
}

static void forget_stmt(struct db *db, MYSQL_STMT *st)
{
	for (unsigned i = 0; i < db->nstmts; i++)
		if (db->stmts[i].stmt == st) {
			mysql_stmt_close(st);
			db->stmts[i] = db->stmts[--db->nstmts];
			return;
		}
}

static void bind_params(MYSQL_BIND *b, const struct db_val *p, unsigned np)
{
	memset(b, 0, sizeof *b * np);
	for (unsigned i = 0; i < np; i++) {
		switch (p[i].t) {
		case DBT_NULL:
			b[i].buffer_type = MYSQL_TYPE_NULL;
			break;
		case DBT_INT:
			b[i].buffer_type = MYSQL_TYPE_LONGLONG;
			b[i].buffer = (void *)&p[i].i;
			break;
		case DBT_DOUBLE:
			b[i].buffer_type = MYSQL_TYPE_DOUBLE;
			b[i].buffer = (void *)&p[i].d;
			break;
		case DBT_STR:
			b[i].buffer_type = MYSQL_TYPE_BLOB;
			b[i].buffer = (void *)(p[i].s ? p[i].s : "");
			b[i].buffer_length = p[i].len;
			break;
		}
	}
}

/*
 * Array binding (Connector/C's bulk execution): nrows rows of ncols values,
 * row-major in p, bound column-wise.  Each column has one buffer type, that
 * of its non-NULL values (an all-NULL column is bound as integers); NULLs go
 * in its indicator array.  The arrays live in one block (*arrays) the
 * caller frees.  0, or -1 out of memory, or -2 a column of two types (a
 * caller's bug).
 */
union bulk_val { long long i; double d; const char *s; };

static int bind_bulk(MYSQL_BIND *b, const struct db_val *p, unsigned ncols, unsigned nrows,
		     void **arrays)
{
	size_t n = (size_t)ncols * nrows;
	union bulk_val *v = calloc(n, sizeof *v + sizeof(unsigned long) + 1);
	unsigned long *lens = (unsigned long *)(v + n);
	char *ind = (char *)(lens + n);

	if (!(*arrays = v))
		return -1;
	memset(b, 0, sizeof *b * ncols);
	for (unsigned c = 0; c < ncols; c++) {
		enum db_type t = DBT_NULL;
		union bulk_val *cv = v + (size_t)c * nrows;
		unsigned long *cl = lens + (size_t)c * nrows;
		char *ci = ind + (size_t)c * nrows;

		for (unsigned r = 0; r < nrows && t == DBT_NULL; r++)
			t = p[(size_t)r * ncols + c].t;
		for (unsigned r = 0; r < nrows; r++) {
			const struct db_val *x = &p[(size_t)r * ncols + c];
			if (x->t == DBT_NULL) {
				ci[r] = STMT_INDICATOR_NULL;
				continue;
			}
			if (x->t != t)
				return -2;
			ci[r] = STMT_INDICATOR_NONE;
			if (t == DBT_INT)
				cv[r].i = x->i;
			else if (t == DBT_DOUBLE)
				cv[r].d = x->d;
			else {
				cv[r].s = x->s ? x->s : "";
				cl[r] = x->len;
			}
		}
		b[c].buffer_type = t == DBT_DOUBLE ? MYSQL_TYPE_DOUBLE
			: t == DBT_STR ? MYSQL_TYPE_BLOB : MYSQL_TYPE_LONGLONG;
		b[c].buffer = cv;
		b[c].length = cl;
		b[c].u.indicator = ci;
	}
	return 0;
}

/* Fetch the current result set of st into a db_rows.  0 or -1 (ENOMEM/db). */
static enum qc_err fetch_rows(struct db *db, MYSQL_STMT *st, struct db_rows **out)
{
	unsigned ncols = mysql_stmt_field_count(st);
	MYSQL_RES *meta = NULL;
	MYSQL_FIELD *fields;
	MYSQL_BIND *rb = NULL;
	unsigned long *lens = NULL;
	my_bool *nulls = NULL;
	struct db_rows *r = NULL;
	enum qc_err rc = QC_ENOMEM;
	unsigned long long nrows;

	if (mysql_stmt_store_result(st)) {
		set_err(db, mysql_stmt_errno(st), mysql_stmt_error(st));
		return is_conn_error(db->last_errno) ? QC_EDBDOWN : QC_EDB;
	}
	/* metadata taken after store_result carries the max_length values */
	if (!(meta = mysql_stmt_result_metadata(st)))
		goto out;
	fields = mysql_fetch_fields(meta);
	nrows = mysql_stmt_num_rows(st);
	if (!(r = calloc(1, sizeof *r)))
		goto out;
	r->ncols = ncols;
	r->nrows = (unsigned)nrows;
	if (nrows && ncols) {
		r->cells = calloc(nrows * ncols, sizeof *r->cells);
		r->lens = calloc(nrows * ncols, sizeof *r->lens);
		if (!r->cells || !r->lens)
			goto out;
	}
	rb = calloc(ncols ? ncols : 1, sizeof *rb);
	lens = calloc(ncols ? ncols : 1, sizeof *lens);
	nulls = calloc(ncols ? ncols : 1, sizeof *nulls);
	if (!rb || !lens || !nulls)
		goto out;
	for (unsigned row = 0; row < r->nrows; row++) {
		for (unsigned c = 0; c < ncols; c++) {
			size_t cap = (fields[c].max_length > 63 ? (size_t)fields[c].max_length : 63) + 1;
			char *buf = malloc(cap);
			if (!buf)
				goto out;
			r->cells[row * ncols + c] = buf;
			memset(&rb[c], 0, sizeof rb[c]);
			rb[c].buffer_type = MYSQL_TYPE_STRING;
			rb[c].buffer = buf;
			rb[c].buffer_length = cap;
			rb[c].length = &lens[c];
			rb[c].is_null = &nulls[c];
		}
		if (mysql_stmt_bind_result(st, rb)) {
			set_err(db, mysql_stmt_errno(st), mysql_stmt_error(st));
			rc = QC_EDB;
			goto out;
		}
		int f = mysql_stmt_fetch(st);
		if (f == 1 || f == MYSQL_NO_DATA) {
			set_err(db, mysql_stmt_errno(st), mysql_stmt_error(st));
			rc = QC_EDB;
			goto out;
		}
		for (unsigned c = 0; c < ncols; c++) {
			unsigned i = row * ncols + c;
			if (nulls[c]) {
				free(r->cells[i]);
				r->cells[i] = NULL;
				continue;
			}
			if (lens[c] >= rb[c].buffer_length) {   /* truncated: fetch whole */
				char *big = realloc(r->cells[i], (size_t)lens[c] + 1);
				if (!big)
					goto out;
				r->cells[i] = big;
				rb[c].buffer = big;
				rb[c].buffer_length = lens[c] + 1;
				if (mysql_stmt_fetch_column(st, &rb[c], c, 0)) {
					set_err(db, mysql_stmt_errno(st), mysql_stmt_error(st));
					rc = QC_EDB;
					goto out;
				}
			}
			r->cells[i][lens[c]] = 0;
			r->lens[i] = lens[c];
		}
	}
	*out = r;
	r = NULL;
	rc = QC_OK;
out:
	free(rb);
	free(lens);
	free(nulls);
	db_rows_free(r);
	if (meta)
		mysql_free_result(meta);
	mysql_stmt_free_result(st);
	return rc;
}

static void backoff(int attempt)
{
	unsigned cap = attempt < 8 ? (1u << attempt) : 256u;   /* ms */
	unsigned ms = 1 + (unsigned)(rand() % (int)cap);
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int is_read_only(const char *sql)
{
	while (*sql == ' ' || *sql == '\n' || *sql == '\t')
		sql++;
	return strncasecmp(sql, "SELECT", 6) == 0;
}

/* One attempt: sql with np values, or with rows > 0 an array-bound execution
 * of rows rows of np / rows values each.  Returns QC_OK, or an error with
 * db->last_errno set. */
static enum qc_err run_once(struct db *db, const char *sql, const struct db_val *p,
			    unsigned np, struct db_rows **out, unsigned long long *affected,
			    unsigned rows)
{
	MYSQL_BIND small[DB_MAX_PARAMS], *pb = small;
	MYSQL_STMT *st;
	void *arrays = NULL;
	unsigned ncols = rows ? np / rows : np;
	/* an array-bound INSERT runs as one statement; any other runs once per
	 * row, so a transaction makes its rows land together */
	int wrap = rows > 1 && strncmp(sql, "INSERT", 6) != 0;
	enum qc_err rc;

	if ((rc = db_connect(db)) != QC_OK)
		return rc;
	if (!(st = get_stmt(db, sql)))
		return is_conn_error(db->last_errno) ? QC_EDBDOWN : QC_EDB;
	if (mysql_stmt_param_count(st) != ncols || (rows && ncols * rows != np)) {
		set_err(db, 0, "parameter count mismatch");
		log_error("db", "parameter count mismatch for: %.60s", sql);
		rc = QC_EDB;
		goto done;
	}
	if (ncols > DB_MAX_PARAMS && !(pb = malloc(sizeof *pb * ncols))) {
		set_err(db, CR_OUT_OF_MEMORY, "out of memory");
		rc = QC_ENOMEM;
		goto done;
	}
	if (rows) {
		unsigned size = rows;
		int b = bind_bulk(pb, p, ncols, rows, &arrays);
		if (b < 0) {
			set_err(db, b == -1 ? CR_OUT_OF_MEMORY : 0,
				b == -1 ? "out of memory" : "a bulk column of two types");
			rc = b == -1 ? QC_ENOMEM : QC_EDB;
			goto done;
		}
		if (mysql_stmt_attr_set(st, STMT_ATTR_ARRAY_SIZE, &size) ||
		    mysql_stmt_bind_param(st, pb))
			goto stmt_err;
	} else if (np) {
		bind_params(pb, p, np);
		if (mysql_stmt_bind_param(st, pb))
			goto stmt_err;
	}
	if (wrap && mysql_query(db->conn, "START TRANSACTION")) {
		set_err(db, mysql_errno(db->conn), mysql_error(db->conn));
		rc = is_conn_error(db->last_errno) ? QC_EDBDOWN : QC_EDB;
		goto done;
	}
	if (mysql_stmt_execute(st))
		goto stmt_err;
	if (wrap && mysql_query(db->conn, "COMMIT")) {
		set_err(db, mysql_errno(db->conn), mysql_error(db->conn));
		mysql_query(db->conn, "ROLLBACK");
		rc = is_conn_error(db->last_errno) ? QC_EDBDOWN : QC_EDB;
		goto done;
	}
	if (affected)
		*affected = mysql_stmt_affected_rows(st);
	if (mysql_stmt_field_count(st) > 0) {
		rc = QC_OK;
		if (out)
			rc = fetch_rows(db, st, out);
		else
			mysql_stmt_free_result(st);
		if (rc != QC_OK)
			goto done;
	} else if (out) {
		*out = calloc(1, sizeof **out);
		if (!*out) {
			rc = QC_ENOMEM;
			goto done;
		}
	}
	/* CALL returns extra result sets (at least the status); drain them */
	while (mysql_stmt_more_results(st)) {
		int nr = mysql_stmt_next_result(st);
		if (nr > 0)
			goto stmt_err;
		if (nr < 0)
			break;
		if (mysql_stmt_field_count(st) > 0) {
			mysql_stmt_store_result(st);
			mysql_stmt_free_result(st);
		}
	}
	db->last_ok = time(NULL);
	db->last_errno = 0;
	db->last_error[0] = 0;
	rc = QC_OK;
	goto done;
stmt_err:
	set_err(db, mysql_stmt_errno(st), mysql_stmt_error(st));
	if (wrap)   /* nothing of it stays */
		mysql_query(db->conn, "ROLLBACK");
	if (out && *out) {
		db_rows_free(*out);
		*out = NULL;
	}
	if (db->last_errno == ER_NEED_REPREPARE || db->last_errno == ER_UNKNOWN_STMT_HANDLER)
		forget_stmt(db, st);
	rc = is_conn_error(db->last_errno) ? QC_EDBDOWN : QC_EDB;
done:
	if (pb != small)
		free(pb);
	free(arrays);
	return rc;
}

static enum qc_err run(struct db *db, const char *sql, const struct db_val *p,
		       unsigned np, struct db_rows **out, unsigned long long *affected, unsigned rows)
{
	enum qc_err rc;
	int reconnected = 0;

	if (out)
		*out = NULL;
	/* Failed over to a later endpoint: between statements, go back to the
	 * first once db_failback_s has passed (if it is still down, connecting
	 * falls through to the next one again at once). */
	if (db->conn && db->host_idx > 0 && time(NULL) - db->host_since >= db->cfg->db_failback_s)
		db_disconnect(db);
	/* Another handle lost its connection: this one may be dead too */
	if (db->conn && db->epoch != atomic_load(&fail_epoch)) {
		db->epoch = atomic_load(&fail_epoch);
		if (mysql_ping(db->conn) != 0)
			db_disconnect(db);
	}
	/* An idle connection may have died quietly (server restart): ping it
	 * before a write, whose loss we could not safely retry. */
	if (db->conn && !is_read_only(sql) && time(NULL) - db->last_ok > 2 &&
	    mysql_ping(db->conn) != 0)
		db_disconnect(db);
	long long budget_end = qc_mono_ms() + db->cfg->db_retry_budget_ms;

	for (int attempt = 0;; attempt++) {
		rc = run_once(db, sql, p, np, out, affected, rows);
		if (rc == QC_OK) {
			if (attempt > 0)   /* how many retries this statement needed */
				atomic_fetch_add(&retried_total[attempt < DB_RETRY_SLOTS ? attempt
										 : DB_RETRY_SLOTS - 1], 1);
			return QC_OK;
		}
		if (rc == QC_EDBDOWN || is_conn_error(db->last_errno)) {
			unsigned no = db->last_errno;
			if (db->conn)
				atomic_fetch_add(&fail_epoch, 1);
			db_disconnect(db);
			/* a Galera node that lost quorum or is not synced refused
			 * the statement (1047): nothing ran, so another node may */
			if (no == ER_UNKNOWN_COM_ERROR && !reconnected) {
				reconnected = 1;
				continue;
			}
			/* a read is safe to repeat once on a fresh connection */
			if (!reconnected && is_read_only(sql) && db->last_errno != CR_CONNECTION_ERROR) {
				reconnected = 1;
				continue;
			}
			log_error("db", "connection lost (%u): %s", db->last_errno, db->last_error);
			return QC_EDBDOWN;
		}
		if (db->last_errno == ER_LOCK_DEADLOCK || db->last_errno == ER_LOCK_WAIT_TIMEOUT) {
			/* the failed transaction was rolled back; make sure no
			 * half-open one stays on this connection */
			mysql_query(db->conn, "ROLLBACK");
			atomic_fetch_add(&conflicts_total, 1);
			if (attempt < DB_RETRIES && qc_mono_ms() < budget_end) {
				backoff(attempt);
				continue;
			}
			atomic_fetch_add(&giveups_total, 1);
			/* never wait on the database forever: busy, retry later */
			log_error("db", "gave up after %d attempt(s) (%u): %s", attempt + 1,
				  db->last_errno, db->last_error);
			return QC_EDBDOWN;
		}
		if (db->last_errno == ER_NEED_REPREPARE && attempt < 2)
			continue;
		if (db->last_errno != ER_SIGNAL_EXCEPTION)
			log_error("db", "query failed (%u): %s", db->last_errno, db->last_error);
		return rc;
	}
}

enum qc_err db_query(struct db *db, const char *sql, const struct db_val *p,
		     unsigned np, struct db_rows **out)
{
	return run(db, sql, p, np, out, NULL, 0);
}

enum qc_err db_query_synced(struct db *db, const char *sql, const struct db_val *p,
			    unsigned np, struct db_rows **out)
{
	enum qc_err rc;

	*out = NULL;
	if ((rc = db_connect(db)) != QC_OK)
		return rc;
	if (!db->galera)
		return db_query(db, sql, p, np, out);
	if (mysql_query(db->conn, "SET SESSION wsrep_sync_wait = 1")) {
		set_err(db, mysql_errno(db->conn), mysql_error(db->conn));
		if (is_conn_error(db->last_errno))
			db_disconnect(db);
		return db_query(db, sql, p, np, out);   /* unsynced, still an answer */
	}
	rc = db_query(db, sql, p, np, out);
	/* a new connection starts at 0; this one goes back to it */
	if (db->conn && mysql_query(db->conn, "SET SESSION wsrep_sync_wait = 0"))
		db_disconnect(db);
	return rc;
}

enum qc_err db_exec(struct db *db, const char *sql, const struct db_val *p,
		    unsigned np, unsigned long long *affected)
{
	return run(db, sql, p, np, NULL, affected, 0);
}

enum qc_err db_exec_bulk(struct db *db, const char *sql, unsigned ncols, unsigned nrows,
			 const struct db_val *p)
{
	if (!nrows)
		return QC_OK;
	return run(db, sql, p, ncols * nrows, NULL, NULL, nrows);
}

enum qc_err db_exec_script(struct db *db, const char *sql)
{
	enum qc_err rc;
	int status;

	if ((rc = db_connect(db)) != QC_OK)
		return rc;
	if (mysql_real_query(db->conn, sql, strlen(sql)))
		goto err;
	do {
		MYSQL_RES *res = mysql_store_result(db->conn);
		if (res)
			mysql_free_result(res);
		else if (mysql_field_count(db->conn))
			goto err;
		status = mysql_next_result(db->conn);
		if (status > 0)
			goto err;
	} while (status == 0);
	return QC_OK;
err:
	set_err(db, mysql_errno(db->conn), mysql_error(db->conn));
	if (is_conn_error(db->last_errno)) {
		db_disconnect(db);
		return QC_EDBDOWN;
	}
	return QC_EDB;
}

void db_rows_free(struct db_rows *r)
{
	if (!r)
		return;
	if (r->cells)
		for (unsigned i = 0; i < r->nrows * r->ncols; i++)
			free(r->cells[i]);
	free(r->cells);
	free(r->lens);
	free(r);
}

const char *db_cell(const struct db_rows *r, unsigned row, unsigned col)
{
	if (!r || row >= r->nrows || col >= r->ncols)
		return NULL;
	return r->cells[row * r->ncols + col];
}

long long db_cell_ll(const struct db_rows *r, unsigned row, unsigned col)
{
	const char *s = db_cell(r, row, col);
	return s ? strtoll(s, NULL, 10) : 0;
}

unsigned long db_cell_len(const struct db_rows *r, unsigned row, unsigned col)
{
	if (!r || row >= r->nrows || col >= r->ncols)
		return 0;
	return r->lens[row * r->ncols + col];
}

int db_cell_null(const struct db_rows *r, unsigned row, unsigned col)
{
	return db_cell(r, row, col) == NULL;
}
