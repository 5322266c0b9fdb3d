/*
 * usage.c - the usage_events queue of this worker and the usage reports.
 * Invariant: a queued event is written by the next successful usage_flush
 * exactly once.  Shared state: usage_accum (its own lock, accum.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accum.h"
#include "db.h"
#include "log.h"
#include "usage.h"

#define MAX_QUEUED 4096

static enum qc_err write_events(struct db *db, void *recs, unsigned n);

static void describe_event(const void *rec, char *out, size_t len)
{
	const struct usage_event *e = rec;

	snprintf(out, len, "user=%lld plan=%s task=%s model=%s prompt_tokens=%lld completion_tokens=%lld"
		 " cost_micro=%lld saved_tokens=%lld saved_micro=%lld cached=%d outcome=%s latency_ms=%lld at=%lld"
		 " api=%s streamed=%d",
		 e->user_id, e->plan, e->task, e->model, e->prompt_tokens, e->completion_tokens, e->cost_micro,
		 e->saved_tokens, e->saved_micro, e->cached, e->outcome, e->latency_ms, (long long)e->created_at,
		 e->api ? e->api : "generate", e->streamed);
}

struct accum usage_accum = {
	.name = "usage events", .recsz = sizeof(struct usage_event), .cap = MAX_QUEUED,
	.write = write_events, .describe = describe_event, .mu = PTHREAD_MUTEX_INITIALIZER,
};

void usage_note(const struct usage_event *ev)
{
	accum_add(&usage_accum, ev, time(NULL));   /* the flush timer runs on the wall clock, whatever the event's time */
}

int usage_flush_in(time_t now)
{
	return accum_due(&usage_accum, now);
}

#define NCOL 18

static enum qc_err write_events(struct db *db, void *recs, unsigned n)
{
	const struct usage_event *q = recs;
	struct db_val *p;
	enum qc_err rc;

	if (!(p = calloc((size_t)n * NCOL, sizeof *p)))
		return QC_ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		const struct usage_event *e = &q[i];
		struct db_val *v = p + i * NCOL;
		v[0] = DB_INT(e->user_id);
		v[1] = DB_STR(e->plan);
		v[2] = DB_STR(e->task);
		v[3] = DB_STR(e->model);
		v[4] = DB_INT(e->prompt_tokens);
		v[5] = DB_INT(e->completion_tokens);
		v[6] = DB_INT(e->cost_micro);
		v[7] = DB_INT(e->saved_tokens);
		v[8] = DB_INT(e->saved_micro);
		v[9] = DB_INT(e->cached);
		v[10] = DB_STR(e->outcome);
		v[11] = DB_INT(e->latency_ms);
		v[12] = DB_INT(e->created_at);
		v[13] = DB_STR(e->api ? e->api : "generate");
		v[14] = DB_INT(e->streamed ? 1 : 0);
		v[15] = e->tier ? DB_STR(e->tier) : DB_NULLV;
		v[16] = e->experiment_id ? DB_INT(e->experiment_id) : DB_NULLV;
		v[17] = e->arm ? DB_STR(e->arm) : DB_NULLV;
	}
	rc = db_exec_bulk(db, "INSERT INTO usage_events (user_id, plan, task, model, prompt_tokens,"
			  " completion_tokens, cost_micro, saved_tokens, saved_micro, cached, outcome,"
			  " latency_ms, created_at, api, streamed, cache_type, experiment_id, arm)"
			  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", NCOL, n, p);
	free(p);
	return rc;
}

enum qc_err usage_flush(struct db *db)
{
	return accum_flush(&usage_accum, db);
}

#define SUMS " COUNT(*), SUM(cached), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_micro)," \
	     " SUM(saved_tokens), SUM(saved_micro), SUM(outcome NOT IN ('ok', 'cached')), SUM(streamed)," \
	     " SUM(api = 'openai')"

static const char SQL_BY_TASK[] =
	"SELECT task," SUMS " FROM usage_events"
	" WHERE (? = 1 OR user_id = ?) AND created_at >= ? AND created_at < ?"
	" GROUP BY task ORDER BY task";
static const char SQL_BY_PLAN[] =
	"SELECT plan," SUMS " FROM usage_events WHERE created_at >= ? AND created_at < ?"
	" GROUP BY plan ORDER BY plan";

enum qc_err usage_by_task(struct db *db, long long user, int global, time_t from, time_t to,
			  struct db_rows **out)
{
	struct db_val p[4] = { DB_INT(global), DB_INT(user), DB_INT(from), DB_INT(to) };
	return db_query(db, SQL_BY_TASK, p, 4, out);
}

enum qc_err usage_by_plan(struct db *db, time_t from, time_t to, struct db_rows **out)
{
	struct db_val p[2] = { DB_INT(from), DB_INT(to) };
	return db_query(db, SQL_BY_PLAN, p, 2, out);
}
