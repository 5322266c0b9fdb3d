/*
 * metrics.h - Prometheus metrics (GET /metrics).
 *
 * Workers count into a small in-memory accumulator and add it to the
 * metrics_counters table at most a second later (like the cache counters),
 * so the exposition is correct across the whole worker pool and every web
 * node.  Cache and quota figures are read from their own tables.
 */
#ifndef QC_METRICS_H
#define QC_METRICS_H

#include <stddef.h>
#include <time.h>

#include "qc.h"

struct db;

/* A request answered: route name ("unmatched" if none), status, seconds. */
void metrics_http(const char *route, int status, double seconds);
/* A reservation refused by window ("daily", ...) for plan. */
void metrics_quota_refusal(const char *window, const char *plan);
/* An upstream call finished: outcome "ok" | "upstream_error" | "timeout". */
void metrics_upstream(const char *outcome, int attempts, double seconds,
		      long long prompt_tokens, long long completion_tokens, long long cost_micro);
/* Add v to counter name{labels} (labels: "" or NULL for none). */
void metrics_count(const char *name, const char *labels, long long v);

/* A gauge of this worker process, written by its flusher. */
struct metrics_gauge { const char *name; long long value; };
/* Upsert this worker's gauges (worker: "host:pid"); the exposition sums the
 * workers that reported in the last 10 seconds. */
enum qc_err metrics_gauges_write(struct db *db, const char *worker, const struct metrics_gauge *g,
				 unsigned n, time_t now);

/* Seconds until pending counts are due (-1: none); write them (kept on error). */
int metrics_flush_in(time_t now);
enum qc_err metrics_flush(struct db *db);

/* Render the exposition (text format 0.0.4) into *out (caller frees). */
enum qc_err metrics_render(struct db *db, char **out, size_t *len);

/* Escape a label value for the text format into out (at least 2*len+1). */
void metrics_escape(const char *in, char *out, size_t outlen);

/* The counters accumulator (accum.h), flushed by the worker. */
struct accum;
extern struct accum metrics_accum;

#endif
