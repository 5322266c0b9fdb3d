/*
 * floors.c - the benchmark floors of SPEC §8: one libfcgi responder whose
 * work per request is chosen by the environment variable QC_FLOOR:
 *
 *   hello   F0  answer {"ok":true}; no database
 *   select  F1  one prepared point SELECT by primary key on bench_floor
 *   update  F2  one autocommit conditional UPDATE on bench_floor
 *
 * bench_floor(id INT PRIMARY KEY, n BIGINT) has rows 1..FLOOR_ROWS (created
 * by bench/run.sh). The row is chosen by a per-worker request counter that
 * starts at a pid-derived offset, so four workers do not walk the rows in
 * lock step. Database settings: QC_DB_SOCKET, QC_DB_USER, QC_DB_NAME,
 * QC_DB_PASSWORD_FILE (the same ones quotacache uses).
 *
 * Build: cc -O2 -o floors floors.c $(pkg-config --cflags --libs fcgi libmariadb)
 * Responses are formatted with snprintf and written with FCGX_PutStr
 * (FCGX_FPrintF does not know %zu and friends). SIGTERM ends the loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <mysql.h>

#define FLOOR_ROWS 64
#define UPDATE_LIMIT 4000000000000000000LL  /* "n < ?" always true in practice */

enum mode { M_HELLO, M_SELECT, M_UPDATE };

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
	FCGX_ShutdownPending();
}

struct db {
	MYSQL *conn;
	MYSQL_STMT *stmt;
	MYSQL_BIND in[2], out[1];
	long long p_id, p_lim, r_n;
	my_bool r_null, r_err;
	enum mode mode;
	char pw[256];
};

static void db_close(struct db *d)
{
	if (d->stmt)
		mysql_stmt_close(d->stmt);
	if (d->conn)
		mysql_close(d->conn);
	d->stmt = NULL;
	d->conn = NULL;
}

static int read_password(struct db *d)
{
	const char *path = getenv("QC_DB_PASSWORD_FILE");
	FILE *f;
	size_t n;

	d->pw[0] = 0;
	if (!path || !*path)
		return 0;
	if (!(f = fopen(path, "r"))) {
		fprintf(stderr, "floors: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	n = fread(d->pw, 1, sizeof d->pw - 1, f);
	fclose(f);
	d->pw[n] = 0;
	while (n && (d->pw[n - 1] == '\n' || d->pw[n - 1] == '\r' || d->pw[n - 1] == ' '))
		d->pw[--n] = 0;
	return 0;
}

static int db_open(struct db *d)
{
	const char *sql = d->mode == M_SELECT ? "SELECT n FROM bench_floor WHERE id = ?"
		: "UPDATE bench_floor SET n = n + 1 WHERE id = ? AND n < ?";
	const char *sock = getenv("QC_DB_SOCKET"), *user = getenv("QC_DB_USER"),
		   *name = getenv("QC_DB_NAME");

	if (!(d->conn = mysql_init(NULL)))
		return -1;
	if (!mysql_real_connect(d->conn, NULL, user, d->pw, name, 0, sock, 0)) {
		fprintf(stderr, "floors: connect: %s\n", mysql_error(d->conn));
		db_close(d);
		return -1;
	}
	if (!(d->stmt = mysql_stmt_init(d->conn)) || mysql_stmt_prepare(d->stmt, sql, strlen(sql))) {
		fprintf(stderr, "floors: prepare: %s\n", mysql_error(d->conn));
		db_close(d);
		return -1;
	}
	memset(d->in, 0, sizeof d->in);
	memset(d->out, 0, sizeof d->out);
	d->in[0].buffer_type = MYSQL_TYPE_LONGLONG;
	d->in[0].buffer = &d->p_id;
	d->in[1].buffer_type = MYSQL_TYPE_LONGLONG;
	d->in[1].buffer = &d->p_lim;
	d->out[0].buffer_type = MYSQL_TYPE_LONGLONG;
	d->out[0].buffer = &d->r_n;
	d->out[0].is_null = &d->r_null;
	d->out[0].error = &d->r_err;
	if (mysql_stmt_bind_param(d->stmt, d->in) ||
	    (d->mode == M_SELECT && mysql_stmt_bind_result(d->stmt, d->out))) {
		fprintf(stderr, "floors: bind: %s\n", mysql_stmt_error(d->stmt));
		db_close(d);
		return -1;
	}
	return 0;
}

/* One statement for row id; *val gets the value (select) or affected rows. */
static int db_run(struct db *d, long long id, long long *val)
{
	int rc;

	if (!d->conn && db_open(d) < 0)
		return -1;
	d->p_id = id;
	d->p_lim = UPDATE_LIMIT;
	if (mysql_stmt_execute(d->stmt))
		goto fail;
	if (d->mode == M_UPDATE) {
		*val = (long long)mysql_stmt_affected_rows(d->stmt);
		return 0;
	}
	rc = mysql_stmt_fetch(d->stmt);
	if (rc == 1)
		goto fail;
	*val = rc == MYSQL_NO_DATA || d->r_null ? -1 : d->r_n;
	while (rc != MYSQL_NO_DATA && rc != 1)
		rc = mysql_stmt_fetch(d->stmt);
	mysql_stmt_free_result(d->stmt);
	return 0;
fail:
	fprintf(stderr, "floors: execute: %s\n", mysql_stmt_error(d->stmt));
	db_close(d);   /* reconnect on the next request */
	return -1;
}

static void reply(FCGX_Request *r, int status, const char *body)
{
	char hdr[160];
	int n = snprintf(hdr, sizeof hdr,
			 "Status: %d\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			 status, strlen(body));

	FCGX_PutStr(hdr, n, r->out);
	FCGX_PutStr(body, (int)strlen(body), r->out);
}

int main(void)
{
	const char *m = getenv("QC_FLOOR");
	struct db d;
	FCGX_Request req;
	struct sigaction sa;
	unsigned long counter;
	char body[96];
	long long val;

	memset(&d, 0, sizeof d);
	if (!m || !strcmp(m, "hello"))
		d.mode = M_HELLO;
	else if (!strcmp(m, "select"))
		d.mode = M_SELECT;
	else if (!strcmp(m, "update"))
		d.mode = M_UPDATE;
	else {
		fprintf(stderr, "floors: QC_FLOOR must be hello, select or update (got '%s')\n", m);
		return 2;
	}
	if (d.mode != M_HELLO) {
		if (mysql_library_init(0, NULL, NULL) || read_password(&d) < 0)
			return 1;
		db_open(&d);   /* a failure is retried per request */
	}
	counter = (unsigned long)getpid() * 17u;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;   /* no SA_RESTART: accept() must be interrupted */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	FCGX_Init();
	FCGX_InitRequest(&req, 0, FCGI_FAIL_ACCEPT_ON_INTR);
	while (!stopping && FCGX_Accept_r(&req) >= 0) {
		if (d.mode == M_HELLO) {
			reply(&req, 200, "{\"ok\":true}");
		} else if (db_run(&d, (long long)(counter++ % FLOOR_ROWS) + 1, &val) < 0) {
			reply(&req, 503, "{\"error\":\"database\"}");
		} else {
			snprintf(body, sizeof body, d.mode == M_SELECT ? "{\"n\":%lld}" : "{\"affected\":%lld}",
				 val);
			reply(&req, 200, body);
		}
		FCGX_Finish_r(&req);
	}
	FCGX_Free(&req, 1);
	db_close(&d);
	if (d.mode != M_HELLO)
		mysql_library_end();
	return 0;
}
