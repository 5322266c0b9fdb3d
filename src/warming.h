/*
 * warming.h - predictive warming (SPEC §13): refresh-ahead of hot entries and
 * opt-in next-task warming, both spending a per-plan daily token budget.
 *
 * Pure part: learning which task follows which from a plan's usage_events
 * sequences, and the refresh-ahead decision.
 *
 * Engine: a warming call is a background generation of the worker's in-flight
 * engine (inflight.h): it holds no thread and no database connection while
 * the upstream answers.  It reserves its tokens from the plan's warming user
 * (sql/015_warming.sql), whose daily quota is the budget, so the budget holds
 * exactly under concurrency and across nodes; its ledger row (task
 * 'warm:TASK') is the warming spend, billed to no user; the answer is stored
 * for the user it is for.
 *
 * Shared state: warm_init's settings are written once before threads start;
 * the queue of next-task hints and the learned transitions each have their
 * own mutex.  Hints are taken by the worker's timer loop (warm_tick), never
 * by a request thread.
 */
#ifndef QC_WARMING_H
#define QC_WARMING_H

#include <stddef.h>
#include <time.h>

#include "qc.h"

struct config;
struct db;
struct dbpool;
struct inflight;
struct gen_request;

/* --- pure ------------------------------------------------------------ */

/* One ledger row: a user's call of task at a time (rows of one user in time
 * order, users one after another). */
struct warm_event { long long user; const char *task; time_t at; };

#define WARM_MAX_TASKS 64
/* What follows what: n[i] calls of task[i]; next[i][j] of them followed by
 * task[j] as the same user's next call within gap_s. */
struct warm_model {
	unsigned ntasks;
	char task[WARM_MAX_TASKS][65];
	long long n[WARM_MAX_TASKS];
	long long next[WARM_MAX_TASKS][WARM_MAX_TASKS];
};
/* Learn m from ev[0..n) (tasks past WARM_MAX_TASKS are ignored). */
void warm_learn(const struct warm_event *ev, size_t n, long long gap_s, struct warm_model *m);
/* P(the user's next call is task to | this call is task from): 0 until
 * from was seen WARM_MIN_SAMPLES times (a few calls say little). */
#define WARM_MIN_SAMPLES 20
double warm_next_prob(const struct warm_model *m, const char *from, const char *to);
/* Refresh-ahead: 1 if an entry hit `hits` times, expiring at `expires` (0:
 * never), is due for regeneration at now. */
int warm_refresh_due(long long hits, long long min_hits, time_t expires, time_t now, long long ahead_s);

/* --- engine ------------------------------------------------------------ */

/* Settings and the process's engine (borrowed; before threads start). */
void warm_init(const struct config *cfg, struct inflight *f);
/* A generation names the user's likely next request (copied into a bounded
 * queue; dropped when full).  Never touches the database. */
void warm_hint(long long user, const char *plan, const char *from_task, const struct gen_request *next,
	       time_t now);
/* The timer loop's turn: take queued hints and, every warm_sweep_s of the
 * wall clock, sweep for entries to refresh. */
void warm_tick(struct dbpool *pool);
/* Refresh-ahead now: claim up to max due entries of this worker's region and
 * start their regeneration.  Started count, or -1 on a database error. */
int warm_sweep(struct db *db, time_t now, int max);
/* Drop queued hints (shutdown, tests). */
void warm_clear(void);

#endif
