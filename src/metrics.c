/*
 * metrics.c - the metrics accumulator of this worker, its flush, and the
 * text exposition built from the database.
 * Invariant: a pending increment is added by the next successful flush
 * exactly once.  Shared state: metrics_accum (its own lock, accum.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accum.h"
#include "db.h"
#include "log.h"
#include "experiment.h"
#include "metrics.h"
#include "quota.h"

#define MAX_PENDING 1024

/* up to 60 s: upstream calls take seconds */
static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
				  1, 2.5, 5, 10, 30, 60 };
#define NBUCKETS (int)(sizeof buckets / sizeof buckets[0])   /* +Inf is index NBUCKETS */

struct pending { char name[64]; char labels[160]; int bucket; long long value; };

static int same_pending(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;
	return x->bucket == y->bucket && strcmp(x->name, y->name) == 0 &&
	       strcmp(x->labels, y->labels) == 0;
}

static void merge_pending(void *into, const void *from)
{
	((struct pending *)into)->value += ((const struct pending *)from)->value;
}

static int cmp_pending(const void *a, const void *b);
static enum qc_err write_pending(struct db *db, void *recs, unsigned n);

struct accum metrics_accum = ACCUM_INIT("metrics", struct pending, MAX_PENDING,
					same_pending, merge_pending, write_pending, cmp_pending);

static void add(const char *name, const char *labels, int bucket, long long v)
{
	struct pending p;

	snprintf(p.name, sizeof p.name, "%s", name);
	snprintf(p.labels, sizeof p.labels, "%s", labels);
	p.bucket = bucket;
	p.value = v;
	accum_add(&metrics_accum, &p, time(NULL));
}

void metrics_escape(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *in && o + 3 < outlen; in++) {
		if (*in == '\\' || *in == '"') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = 0;
}

static void observe(const char *name, const char *labels, double seconds)
{
	char n[64];

	for (int b = 0; b <= NBUCKETS; b++)
		if (b == NBUCKETS || seconds <= buckets[b]) {
			snprintf(n, sizeof n, "%s_bucket", name);
			/* cumulative buckets: every bucket from the first that fits */
			for (int c = b; c <= NBUCKETS; c++)
				add(n, labels, c, 1);
			break;
		}
	snprintf(n, sizeof n, "%s_sum", name);
	add(n, labels, -1, (long long)(seconds * 1e6 + 0.5));
	snprintf(n, sizeof n, "%s_count", name);
	add(n, labels, -1, 1);
}

void metrics_http(const char *route, int status, double seconds)
{
	char labels[160], r[64];

	metrics_escape(route, r, sizeof r);
	snprintf(labels, sizeof labels, "route=\"%s\",status=\"%d\"", r, status);
	add("qc_http_requests_total", labels, -1, 1);
	snprintf(labels, sizeof labels, "route=\"%s\"", r);
	observe("qc_http_request_duration_seconds", labels, seconds);
}

void metrics_quota_refusal(const char *window, const char *plan)
{
	char labels[160], p[66];

	metrics_escape(plan, p, sizeof p);
	snprintf(labels, sizeof labels, "plan=\"%s\",window=\"%s\"", p, window);
	add("qc_quota_refusals_total", labels, -1, 1);
}

void metrics_upstream(const char *outcome, int attempts, double seconds,
		      long long prompt_tokens, long long completion_tokens, long long cost_micro)
{
	char labels[64];

	snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
	add("qc_upstream_calls_total", labels, -1, 1);
	add("qc_upstream_attempts_total", "", -1, attempts);
	observe("qc_upstream_latency_seconds", "", seconds);
	if (prompt_tokens)
		add("qc_upstream_tokens_total", "direction=\"prompt\"", -1, prompt_tokens);
	if (completion_tokens)
		add("qc_upstream_tokens_total", "direction=\"completion\"", -1, completion_tokens);
	if (cost_micro)
		add("qc_upstream_cost_usd_total", "", -1, cost_micro);
}

void metrics_count(const char *name, const char *labels, long long v)
{
	if (v)
		add(name, labels ? labels : "", -1, v);
}

int metrics_flush_in(time_t now)
{
	return accum_due(&metrics_accum, now);
}

static int cmp_pending(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (!c)
		c = strcmp(x->labels, y->labels);
	return c ? c : (x->bucket > y->bucket) - (x->bucket < y->bucket);
}

/* Rows go in primary-key order (sorted by the accumulator) so concurrent
 * flushes lock in one order. */
static enum qc_err write_pending(struct db *db, void *recs, unsigned n)
{
	const struct pending *pend = recs;
	struct db_val *p;
	enum qc_err rc;

	if (!(p = calloc((size_t)n * 4, sizeof *p)))
		return QC_ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		p[4 * i] = DB_STR(pend[i].name);
		p[4 * i + 1] = DB_STR(pend[i].labels);
		p[4 * i + 2] = DB_INT(pend[i].bucket);
		p[4 * i + 3] = DB_INT(pend[i].value);
	}
	rc = db_exec_bulk(db, "INSERT INTO metrics_counters (name, labels, bucket, value)"
			  " VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE value = value + VALUES(value)",
			  4, n, p);
	free(p);
	return rc;
}

enum qc_err metrics_flush(struct db *db)
{
	return accum_flush(&metrics_accum, db);
}

enum qc_err metrics_gauges_write(struct db *db, const char *worker, const struct metrics_gauge *g,
				 unsigned n, time_t now)
{
	struct db_val *p;
	enum qc_err rc;

	if (!n)
		return QC_OK;
	if (!(p = calloc((size_t)n * 4, sizeof *p)))
		return QC_ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		p[4 * i] = DB_STR(worker);
		p[4 * i + 1] = DB_STR(g[i].name);
		p[4 * i + 2] = DB_INT(g[i].value);
		p[4 * i + 3] = DB_INT(now);
	}
	rc = db_exec_bulk(db, "INSERT INTO metrics_gauges (worker, name, value, updated_at)"
			  " VALUES (?, ?, ?, ?)"
			  " ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)",
			  4, n, p);
	free(p);
	return rc;
}

/* --- exposition -------------------------------------------------------- */

struct buf { char *s; size_t len, cap; int oom; };

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap * 2 + (n > 0 ? (size_t)n : 0) + 1024;
		char *t = realloc(b->s, ncap);
		if (!t) {
			b->oom = 1;
			return;
		}
		b->s = t;
		b->cap = ncap;
	}
}

/* zero: an unlabelled series shown as 0 before its first increment */
struct family { const char *name; const char *type; const char *help; int zero; };

static const struct family families[] = {
	{ "qc_http_requests_total", "counter", "HTTP requests answered, by route and status.", 0 },
	{ "qc_http_request_duration_seconds", "histogram", "Time to answer a request, by route.", 0 },
	{ "qc_quota_refusals_total", "counter", "Reservations refused (429), by window and plan.", 0 },
	{ "qc_upstream_calls_total", "counter", "Upstream LLM calls, by outcome.", 0 },
	{ "qc_upstream_attempts_total", "counter", "Upstream HTTP attempts including retries.", 1 },
	{ "qc_upstream_latency_seconds", "histogram", "Upstream call time including retries.", 0 },
	{ "qc_upstream_tokens_total", "counter", "Tokens billed by the upstream, by direction.", 0 },
	{ "qc_upstream_cost_usd_total", "counter", "Dollars spent upstream (configured prices).", 1 },
	{ "qc_db_reconnects_total", "counter", "Database reconnections by workers.", 1 },
	{ "qc_db_pool_waits_total", "counter", "Times a thread waited for a pooled database connection.", 1 },
	{ "qc_db_conflicts_total", "counter",
	  "Deadlocks and Galera certification conflicts (1213) and lock wait timeouts (1205) seen, each retried.", 1 },
	{ "qc_db_retried_statements_total", "counter",
	  "Statements that succeeded after retries, by how many retries they needed.", 0 },
	{ "qc_db_retry_giveups_total", "counter",
	  "Statements given up after the retry bound (answered 503).", 1 },
	{ "qc_backpressure_refusals_total", "counter",
	  "Generations refused because too many calls were in flight, by scope (process, user).", 0 },
	{ "qc_flush_failures_total", "counter", "Failed flushes of a worker accumulator, by accumulator.", 0 },
	{ "qc_accumulator_dropped_total", "counter", "Records dropped by a full worker accumulator.", 0 },
	{ "qc_flight_checks_total", "counter",
	  "Single-flight waiters' checks of a flight led by another process (at most 4 a second each).", 1 },
	{ "qc_flight_waits_total", "counter", "Generations that waited for an identical call in flight.", 1 },
	{ "qc_alert_crossings_total", "counter",
	  "Quota level crossings claimed for the webhook, by level (warning, critical, exceeded).", 0 },
	{ "qc_alert_webhooks_total", "counter",
	  "Level-crossing webhook posts, by outcome (sent, retried, failed: given up).", 0 },
	{ "qc_streams_total", "counter",
	  "Streamed answers (SSE), by api (generate, openai) and outcome (ok, replayed, client_gone, broken).", 0 },
	{ "qc_warming_total", "counter",
	  "Warming calls by kind (refresh, next) and outcome (ok, present, budget, failed, busy, unlikely, dropped).", 0 },
	{ "qc_cache_store_decisions_total", "counter",
	  "Answers of cost-aware plans, by decision (stored, learning, exploring, skipped).", 0 },
	{ "qc_billed_together_total", "counter",
	  "Answers offered to a shared billing transaction, by outcome (together: billed in it;"
	  " declined: the database left them to be billed one by one; lost: its connection was"
	  " lost before it landed, and they were billed one by one).", 0 },
	{ "qc_reserved_together_total", "counter",
	  "Misses of one user offered to a shared reserve transaction, by outcome (together: reserved"
	  " in it; declined: the database left them to be reserved one by one; lost: its connection"
	  " was lost, and they were answered 503).", 0 },
	{ "qc_batches_total", "counter",
	  "Shared transactions that landed, by kind (reserve, bill): qc_reserved_together_total or"
	  " qc_billed_together_total{outcome=\"together\"} over it is the average batch.", 0 },
};

static int is_money(const char *name) { return strstr(name, "_usd_") != NULL; }

static void render_value(struct buf *b, const char *name, long long v)
{
	size_t n = strlen(name);

	if (is_money(name) || (n > 4 && strcmp(name + n - 4, "_sum") == 0))
		put(b, "%.6f\n", (double)v / 1e6);
	else
		put(b, "%lld\n", v);
}

static enum qc_err render_counters(struct db *db, struct buf *b)
{
	static const char sql[] = "SELECT name, labels, bucket, value FROM metrics_counters"
				  " ORDER BY name, labels, bucket";
	struct db_rows *r = NULL;
	enum qc_err rc = db_query(db, sql, NULL, 0, &r);

	if (rc != QC_OK)
		return rc;
	for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
		const struct family *fam = &families[f];
		size_t fl = strlen(fam->name);
		int hist = strcmp(fam->type, "histogram") == 0;

		put(b, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name, fam->type);
		if (!hist) {
			int any = 0;
			for (unsigned i = 0; i < r->nrows; i++) {
				const char *name = db_cell(r, i, 0), *labels = db_cell(r, i, 1);
				if (strcmp(name, fam->name) != 0)
					continue;
				put(b, "%s%s%s%s ", name, *labels ? "{" : "", labels, *labels ? "}" : "");
				render_value(b, name, db_cell_ll(r, i, 3));
				any = 1;
			}
			if (!any && fam->zero)
				put(b, "%s 0\n", fam->name);
			continue;
		}
		/* histogram: per label set, buckets in order, then sum and count */
		for (unsigned i = 0; i < r->nrows; i++) {
			const char *name = db_cell(r, i, 0), *labels = db_cell(r, i, 1);
			char want[80];
			if (strncmp(name, fam->name, fl) != 0 || strcmp(name + fl, "_count") != 0)
				continue;
			snprintf(want, sizeof want, "%s_bucket", fam->name);
			for (unsigned j = 0; j < r->nrows; j++) {
				int bk = (int)db_cell_ll(r, j, 2);
				if (strcmp(db_cell(r, j, 0), want) != 0 || strcmp(db_cell(r, j, 1), labels) != 0)
					continue;
				if (bk >= NBUCKETS)
					put(b, "%s{%s%sle=\"+Inf\"} ", want, labels, *labels ? "," : "");
				else
					put(b, "%s{%s%sle=\"%g\"} ", want, labels, *labels ? "," : "", buckets[bk]);
				put(b, "%lld\n", db_cell_ll(r, j, 3));
			}
			for (unsigned j = 0; j < r->nrows; j++)
				if (strncmp(db_cell(r, j, 0), fam->name, fl) == 0 &&
				    strcmp(db_cell(r, j, 0) + fl, "_sum") == 0 && strcmp(db_cell(r, j, 1), labels) == 0) {
					put(b, "%s_sum%s%s%s ", fam->name, *labels ? "{" : "", labels, *labels ? "}" : "");
					render_value(b, "x_sum", db_cell_ll(r, j, 3));
				}
			put(b, "%s_count%s%s%s %lld\n", fam->name, *labels ? "{" : "", labels,
			    *labels ? "}" : "", db_cell_ll(r, i, 3));
		}
	}
	db_rows_free(r);
	return QC_OK;
}

static enum qc_err render_tables(struct db *db, struct buf *b)
{
	static const char sql_stats[] =
		"SELECT cache_type, SUM(hits), SUM(misses), SUM(saved_micro) FROM cache_stats"
		" GROUP BY cache_type ORDER BY cache_type";
	static const char sql_entries[] =
		"SELECT cache_type, COUNT(*), COALESCE(SUM(size_bytes), 0) FROM ai_cache"
		" WHERE expires_at IS NULL OR expires_at > UTC_TIMESTAMP() GROUP BY cache_type ORDER BY cache_type";
	static const char sql_over[] =
		"SELECT (SELECT COALESCE(SUM(overruns), 0) FROM quota_counters WHERE window_kind = 'day'),"
		" (SELECT COALESCE(SUM(evicted), 0) FROM cache_usage)";
	static const char *const tiers[] = { "system", "session", "content", "extraction" };
	struct db_rows *s = NULL, *e = NULL, *o = NULL;
	enum qc_err rc;

	if ((rc = db_query(db, sql_stats, NULL, 0, &s)) != QC_OK ||
	    (rc = db_query(db, sql_entries, NULL, 0, &e)) != QC_OK ||
	    (rc = db_query(db, sql_over, NULL, 0, &o)) != QC_OK)
		goto out;
	static const struct { const char *name, *help; int src, col; } fams[] = {
		{ "qc_cache_hits_total", "Cache hits, by tier.", 0, 1 },
		{ "qc_cache_misses_total", "Cache misses, by tier.", 0, 2 },
		{ "qc_cache_saved_usd_total", "Dollars saved by cache hits, by tier.", 0, 3 },
		{ "qc_cache_entries", "Live cache entries, by tier.", 1, 1 },
		{ "qc_cache_bytes", "Bytes in live cache entries, by tier.", 1, 2 },
	};
	for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
		const struct db_rows *r = fams[f].src ? e : s;
		put(b, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name,
		    fams[f].src ? "gauge" : "counter");
		for (int t = 0; t < 4; t++) {
			long long v = 0;
			for (unsigned i = 0; i < r->nrows; i++)
				if (strcmp(db_cell(r, i, 0), tiers[t]) == 0)
					v = db_cell_ll(r, i, (unsigned)fams[f].col);
			put(b, "%s{tier=\"%s\"} ", fams[f].name, tiers[t]);
			render_value(b, fams[f].name, v);
		}
	}
	put(b, "# HELP qc_quota_overruns_total Commits whose actual tokens exceeded the estimate.\n"
	       "# TYPE qc_quota_overruns_total counter\nqc_quota_overruns_total %lld\n",
	    db_cell_ll(o, 0, 0));
	put(b, "# HELP qc_cache_evictions_total Entries evicted to make room under the per-user cap"
	       " (plans with cache_full_policy evict_lowest_value).\n"
	       "# TYPE qc_cache_evictions_total counter\nqc_cache_evictions_total %lld\n",
	    db_cell_ll(o, 0, 1));
out:
	db_rows_free(s);
	db_rows_free(e);
	db_rows_free(o);
	return rc;
}

/* users at each level per plan: bounded by plans x 3 series, no user label */
static enum qc_err render_quota_users(struct db *db, struct buf *b, time_t now)
{
	static const char *const lv[] = { "warning", "critical", "exceeded" };
	struct db_rows *plans = NULL, *r = NULL;
	enum qc_err rc;

	if ((rc = quota_plans(db, &plans)) != QC_OK || (rc = quota_levels_by_plan(db, now, &r)) != QC_OK)
		goto out;
	put(b, "# HELP qc_quota_users Users whose overall quota level is warning, critical or exceeded"
	       " right now, by plan.\n# TYPE qc_quota_users gauge\n");
	for (unsigned i = 0; i < plans->nrows; i++) {
		char p[66];
		metrics_escape(db_cell(plans, i, 0), p, sizeof p);
		for (int l = 0; l < 3; l++) {
			long long v = 0;
			for (unsigned j = 0; j < r->nrows; j++)
				if (strcmp(db_cell(r, j, 0), db_cell(plans, i, 0)) == 0 && db_cell_ll(r, j, 1) == l + 1)
					v = db_cell_ll(r, j, 2);
			put(b, "qc_quota_users{plan=\"%s\",level=\"%s\"} %lld\n", p, lv[l], v);
		}
	}
out:
	db_rows_free(plans);
	db_rows_free(r);
	return rc;
}

/* gauges: the sum over workers that reported in the last 10 seconds */
static enum qc_err render_gauges(struct db *db, struct buf *b, time_t now)
{
	static const char sql[] = "SELECT name, SUM(value) FROM metrics_gauges WHERE updated_at >= ?"
				  " GROUP BY name ORDER BY name";
	static const struct { const char *name, *help; } g[] = {
		{ "qc_inflight_calls", "Upstream calls in flight (all workers)." },
		{ "qc_inflight_waiters", "Requests waiting for an identical call in flight (all workers)." },
		{ "qc_busy_request_threads", "Request threads handling a request right now (all workers)." },
		{ "qc_workers", "Worker processes that reported in the last 10 seconds." },
	};
	struct db_val p[1] = { DB_INT(now - 10) };
	struct db_rows *r = NULL;
	enum qc_err rc = db_query(db, sql, p, 1, &r);

	if (rc != QC_OK)
		return rc;
	for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
		long long v = 0;
		for (unsigned j = 0; j < r->nrows; j++)
			if (strcmp(db_cell(r, j, 0), g[i].name) == 0)
				v = db_cell_ll(r, j, 1);
		put(b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", g[i].name, g[i].help, g[i].name,
		    g[i].name, v);
	}
	db_rows_free(r);
	return QC_OK;
}

/* A/B experiments (SPEC §13): the newest EXP_METRICS ones, per arm (a
 * bounded set of series: at most 2 x EXP_METRICS per family) */
#define EXP_METRICS 5
static enum qc_err render_experiments(struct db *db, struct buf *b)
{
	static const struct { const char *name, *type, *help, *field; double scale; } fams[] = {
		{ "qc_experiment_requests_total", "counter", "Generations in an A/B experiment, by arm.", "requests", 1 },
		{ "qc_experiment_hits_total", "counter", "Cache hits in an A/B experiment, by arm.", "hits", 1 },
		{ "qc_experiment_upstream_calls_total", "counter", "Upstream calls in an A/B experiment, by arm.",
		  "upstream_calls", 1 },
		{ "qc_experiment_billed_usd_total", "counter", "Dollars billed in an A/B experiment, by arm.",
		  "billed_usd", 1 },
		{ "qc_experiment_saved_usd_total", "counter", "Dollars saved by hits in an A/B experiment, by arm.",
		  "saved_usd", 1 },
		{ "qc_experiment_latency_seconds_mean", "gauge", "Mean generation latency in an A/B experiment, by arm.",
		  "latency_ms_mean", 0.001 },
	};
	json_object *arr = NULL;
	enum qc_err rc = exp_json(db, 0, &arr);
	size_t n;

	if (rc != QC_OK)
		return rc;
	n = json_object_array_length(arr);
	if (n > EXP_METRICS)
		n = EXP_METRICS;
	for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
		put(b, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name, fams[f].type);
		for (size_t i = 0; i < n; i++) {
			json_object *e = json_object_array_get_idx(arr, i), *arms = json_object_object_get(e, "arms");
			json_object_object_foreach(arms, arm, a) {
				/* names are [A-Za-z0-9_.-]: nothing to escape */
				put(b, "%s{experiment=\"%s\",arm=\"%s\"} %.6f\n", fams[f].name,
				    json_object_get_string(json_object_object_get(e, "name")), arm,
				    json_object_get_double(json_object_object_get(a, fams[f].field)) * fams[f].scale);
			}
		}
	}
	json_object_put(arr);
	return QC_OK;
}

enum qc_err metrics_render(struct db *db, char **out, size_t *len)
{
	struct buf b = { NULL, 0, 0, 0 };
	enum qc_err rc;

	*out = NULL;
	*len = 0;
	if (!(b.s = malloc(b.cap = 8192)))
		return QC_ENOMEM;
	b.s[0] = 0;
	if ((rc = render_counters(db, &b)) != QC_OK || (rc = render_tables(db, &b)) != QC_OK ||
	    (rc = render_gauges(db, &b, time(NULL))) != QC_OK ||
	    (rc = render_quota_users(db, &b, time(NULL))) != QC_OK || (rc = render_experiments(db, &b)) != QC_OK) {
		free(b.s);
		return rc;
	}
	if (b.oom) {
		free(b.s);
		return QC_ENOMEM;
	}
	*out = b.s;
	*len = b.len;
	return QC_OK;
}
