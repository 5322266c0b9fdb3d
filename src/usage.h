/*
 * usage.h - the usage_events ledger: one row per generate call, written in
 * batches (the worker accumulates rows and writes them in one INSERT at most
 * a second later, like the cache counters), and the reports read from it.
 */
#ifndef QC_USAGE_H
#define QC_USAGE_H

#include <time.h>

#include "qc.h"

struct db;
struct db_rows;

struct usage_event {
	long long user_id;
	char plan[33];
	char task[65];
	char model[65];
	long long prompt_tokens, completion_tokens, cost_micro;
	long long saved_tokens, saved_micro;
	int cached;
	const char *outcome;    /* "ok", "cached", "quota", "upstream_error", "timeout", "error" */
	long long latency_ms;
	time_t created_at;
	const char *api;        /* "generate" or "openai" (NULL: "generate") */
	int streamed;           /* the client asked for a stream */
	const char *tier;       /* cache tier of the call (NULL: none) */
	long long experiment_id;  /* the A/B experiment running (0: none) */
	const char *arm;        /* "control", "treatment" or NULL */
};

/* Queue one event (copied).  Never touches the database. */
void usage_note(const struct usage_event *ev);
/* Seconds until queued events must be written; -1 if none. */
int usage_flush_in(time_t now);
/* Write queued events in one statement; kept on error. */
enum qc_err usage_flush(struct db *db);

/* Per task for one user (0 and global: everyone) in [from, to): task,
 * calls, cached, prompt_tokens, completion_tokens, cost_micro, saved_tokens,
 * saved_micro, failures. */
enum qc_err usage_by_task(struct db *db, long long user, int global, time_t from, time_t to,
			  struct db_rows **out);
/* The same columns per plan (everyone). */
enum qc_err usage_by_plan(struct db *db, time_t from, time_t to, struct db_rows **out);

/* The queue of events (accum.h), flushed by the worker. */
struct accum;
extern struct accum usage_accum;

#endif
