/*
 * fcgi_app.c - the worker process: configuration, the database pool, the
 * in-flight engine (inflight.h), request threads in FCGX_Accept_r, and the
 * main thread, which waits for SIGTERM and meanwhile flushes the
 * accumulators and this worker's gauges (never on a request's path) and,
 * at rest, gives freed memory back (trim_at_rest).
 *
 * Shared state: app_base (read-only after start), the pool, the engine and
 * the alerts sender (alerts.h) (their own locks), `stopping`, `busy` and
 * `accepted` (atomics); trim_at_rest's counters belong to the main thread.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fcgiapp.h>
#include <mysql.h>

#include "accum.h"
#include "alerts.h"
#include "app.h"
#include "warming.h"
#include "dbpool.h"
#include "inflight.h"
#include "log.h"
#include "metrics.h"
#include "upstream.h"
#include "usage.h"

static atomic_int stopping;
static atomic_long busy;        /* request threads handling a request */
static atomic_ulong accepted;   /* requests accepted, ever (trim_at_rest) */
static struct app app_base;     /* configuration and engine; each thread copies it */

static void on_usr1(int sig)
{
	(void)sig;   /* only interrupts accept() */
}

static void *request_main(void *arg)
{
	struct app app = app_base;
	struct conn *c = conn_new();

	(void)arg;
	mysql_thread_init();
	while (c && !atomic_load(&stopping)) {
		int rc = FCGX_Accept_r(&c->fr);

		if (rc < 0) {
			if (atomic_load(&stopping))
				break;
			if (rc != -EINTR) {   /* not a signal: do not spin */
				struct timespec ts = { 0, 10 * 1000000L };
				nanosleep(&ts, NULL);
			}
			continue;
		}
		atomic_fetch_add(&busy, 1);
		atomic_fetch_add(&accepted, 1);
		c->t0_ms = qc_mono_ms();
		http_req_init(&c->req, &c->fr);
		log_set_request_id(c->req.id);
		app.db = dbpool_get(app.pool);
		inflight_parked_reset();
		api_handle(&app, &c->req);
		dbpool_put(app.pool, app.db);
		app.db = NULL;
		log_set_request_id(NULL);
		if (inflight_parked()) {
			c = conn_new();   /* the parked one now belongs to the engine */
		} else {
			struct conn *next = conn_new();
			conn_finish(c);
			c = next;
		}
		atomic_fetch_sub(&busy, 1);
	}
	if (c) {
		FCGX_Free(&c->fr, 1);
		free(c);
	}
	mysql_thread_end();
	return NULL;
}

/* Main thread, each tick: once the worker has been at rest for a second
 * (no request accepted, nothing in flight), give the pages that load freed
 * back to the system, once per quiet spell.  Under load glibc keeps freed
 * pages in its arenas; at rest they are only RSS (SPEC §8). */
static void trim_at_rest(struct app *app)
{
	static unsigned long seen;
	static int quiet, trimmed;
	unsigned long n = atomic_load(&accepted);
	long long calls = 0, waiters = 0;

	if (n != seen) {
		seen = n;
		quiet = trimmed = 0;
		return;
	}
	if (trimmed || ++quiet < 4)
		return;
	inflight_gauges(app->inf, &calls, &waiters);
	if (calls || waiters || atomic_load(&busy))
		return;
	malloc_trim(0);
	trimmed = 1;
}

/* Flush what is due, and this worker's gauges, with a pooled connection. */
static void flush(struct app *app, int all)
{
	static struct accum *const accs[] = { &cache_hits_accum, &cache_stats_accum, &usage_accum,
					      &metrics_accum };
	static unsigned long seen_reconnects, seen_waits, seen_fail[4], seen_drop[4];
	static unsigned long seen_conflicts, seen_retried[DB_RETRY_SLOTS], seen_giveups;
	static long long last_g[4] = { -1, -1, -1, -1 };
	static time_t last_g_at;
	unsigned long conflicts, retried[DB_RETRY_SLOTS], giveups;
	time_t now = time(NULL);
	struct metrics_gauge g[4];
	char worker[96], host[64] = "";
	unsigned long v, d, fl;
	long long calls = 0, waiters = 0;
	struct db *db;

	/* counters of the machinery itself (the deltas since the last flush) */
	if ((v = db_reconnects_total()) > seen_reconnects) {
		metrics_count("qc_db_reconnects_total", "", (long long)(v - seen_reconnects));
		seen_reconnects = v;
	}
	db_conflict_counts(&conflicts, retried, &giveups);
	if (conflicts > seen_conflicts)
		metrics_count("qc_db_conflicts_total", "", (long long)(conflicts - seen_conflicts));
	if (giveups > seen_giveups)
		metrics_count("qc_db_retry_giveups_total", "", (long long)(giveups - seen_giveups));
	for (int i = 1; i < DB_RETRY_SLOTS; i++)
		if (retried[i] > seen_retried[i]) {
			char labels[32];
			snprintf(labels, sizeof labels, "retries=\"%d%s\"", i, i == DB_RETRY_SLOTS - 1 ? "+" : "");
			metrics_count("qc_db_retried_statements_total", labels,
				      (long long)(retried[i] - seen_retried[i]));
			seen_retried[i] = retried[i];
		}
	seen_conflicts = conflicts;
	seen_giveups = giveups;
	if ((v = dbpool_waits(app->pool)) > seen_waits) {
		metrics_count("qc_db_pool_waits_total", "", (long long)(v - seen_waits));
		seen_waits = v;
	}
	for (int i = 0; i < 4; i++) {
		char labels[64];
		accum_counts(accs[i], &d, &fl);
		snprintf(labels, sizeof labels, "accumulator=\"%s\"", accs[i]->name);
		if (fl > seen_fail[i])
			metrics_count("qc_flush_failures_total", labels, (long long)(fl - seen_fail[i]));
		if (d > seen_drop[i])
			metrics_count("qc_accumulator_dropped_total", labels, (long long)(d - seen_drop[i]));
		seen_fail[i] = fl;
		seen_drop[i] = d;
	}
	db = dbpool_get(app->pool);
	for (int i = 0; i < 4; i++)
		if (all ? accum_due(accs[i], now) >= 0 : accum_due(accs[i], now) == 0)
			if (accum_flush(accs[i], db) != QC_OK)
				log_warn("main", "flushing %s failed; kept for the next try", accs[i]->name);
	if (app->inf)
		inflight_gauges(app->inf, &calls, &waiters);
	g[0] = (struct metrics_gauge){ "qc_inflight_calls", calls };
	g[1] = (struct metrics_gauge){ "qc_inflight_waiters", waiters };
	g[2] = (struct metrics_gauge){ "qc_busy_request_threads", atomic_load(&busy) };
	g[3] = (struct metrics_gauge){ "qc_workers", all ? 0 : 1 };
	/* the gauges only when they changed, or every 2 s to stay live (the
	 * exposition sums the workers heard from in the last 10 s) */
	if (all || now - last_g_at >= 2 || g[0].value != last_g[0] || g[1].value != last_g[1] ||
	    g[2].value != last_g[2] || g[3].value != last_g[3]) {
		gethostname(host, sizeof host - 1);
		snprintf(worker, sizeof worker, "%s:%d", host, (int)getpid());
		if (metrics_gauges_write(db, worker, g, 4, now) != QC_OK) {
			log_debug("main", "writing gauges failed");
		} else {
			for (int i = 0; i < 4; i++)
				last_g[i] = g[i].value;
			last_g_at = now;
		}
	}
	dbpool_put(app->pool, db);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	/* every parked request holds its FastCGI connection and an upstream socket */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct app *app = &app_base;
	struct sigaction sa;
	sigset_t term;
	pthread_t *tids = NULL;
	char err[512];
	const char *cfgpath = NULL;
	int lvl, nthreads = 0, sig = 0;

	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			cfgpath = argv[++i];
	app->pcfg = &app->cfg;
	if (config_load(&app->cfg, cfgpath, err, sizeof err) < 0) {
		log_error("main", "%s", err);
		return 1;
	}
	if ((lvl = log_parse_level(app->cfg.log_level)) >= 0)
		log_set_level((enum log_level)lvl);
	if (strcmp(app->cfg.openai_cache, "deterministic") != 0 && strcmp(app->cfg.openai_cache, "always") != 0 &&
	    strcmp(app->cfg.openai_cache, "never") != 0) {
		log_error("main", "openai_cache must be deterministic, always or never (not '%s')", app->cfg.openai_cache);
		config_release(&app->cfg);
		return 1;
	}
	if (cache_set_region(app->cfg.region) < 0) {   /* before any thread starts */
		log_error("main", "region must be up to %d of a-z 0-9 - (not '%s')", CACHE_REGION_MAX,
			  app->cfg.region);
		config_release(&app->cfg);
		return 1;
	}
	{   /* the database endpoints must parse (SPEC §12: a list to fail over along) */
		struct db_endpoint eps[DB_MAX_HOSTS];
		if (db_endpoints(&app->cfg, eps, err, sizeof err) < 0) {
			log_error("main", "%s", err);
			config_release(&app->cfg);
			return 1;
		}
	}
	/* only configured models are called, each with a price (SPEC §11) */
	if (upstream_prices_check(app->cfg.upstream_prices, app->cfg.upstream_model, err, sizeof err) < 0) {
		log_error("main", "%s", err);
		config_release(&app->cfg);
		return 1;
	}
	raise_fd_limit();
	/* glibc gives each thread that allocates its own arena (64 MiB reserved,
	 * fragmented pages kept).  One arena for all threads: measured with
	 * bench/run.sh (rss), a worker at rest holds 11.3-11.5 MiB after 200k
	 * mixed requests with one, 11.4-13.7 MiB with two, stepping up between
	 * samples; the rates of hits, status and 1,024 misses in flight did not
	 * move (SPEC §8).  MALLOC_ARENA_MAX still wins. */
	if (!getenv("MALLOC_ARENA_MAX"))
		mallopt(M_ARENA_MAX, 1);
	if (mysql_library_init(0, NULL, NULL) ||
	    !(app->pool = dbpool_new(&app->cfg, (unsigned)app->cfg.db_pool_size))) {
		log_error("main", "cannot initialise the database library");
		config_release(&app->cfg);
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    !(app->inf = inflight_new(&app->cfg, app->pool, (unsigned)app->cfg.completion_threads,
				      gen_respond))) {
		log_error("main", "cannot initialise libcurl");
		dbpool_free(app->pool);
		config_release(&app->cfg);
		return 1;
	}
	warm_init(&app->cfg, app->inf);
	srand((unsigned)getpid() ^ (unsigned)time(NULL));
	/* failure is fine: requests answer 503 and reconnect */
	{
		struct db *db = dbpool_get(app->pool);
		if (db_connect(db) == QC_OK && app->cfg.prompts_dir && *app->cfg.prompts_dir) {
			int loaded = 0, same = 0, skipped = 0;
			if (cache_warm_dir(db, app->cfg.prompts_dir, time(NULL), app->cfg.cache_max_entry,
					   &loaded, &same, &skipped) == QC_OK && loaded)
				log_info("main", "system tier warmed from %s: %d loaded, %d unchanged",
					 app->cfg.prompts_dir, loaded, same);
		}
		dbpool_put(app->pool, db);
	}

	/* SIGTERM/SIGINT go to the main thread only (sigtimedwait below);
	 * SIGUSR1 interrupts a request thread's accept() at shutdown */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGINT);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;   /* no SA_RESTART: accept() must return */
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* dollars and ratios: 10 significant digits, no binary noise */
	json_c_set_serialization_double_format("%.10g", JSON_C_OPTION_GLOBAL);
	FCGX_Init();
	if (inflight_start(app->inf) < 0 || alerts_start(app->pcfg, app->pool) < 0 ||
	    !(tids = calloc((size_t)app->cfg.worker_threads, sizeof *tids))) {
		log_error("main", "cannot start threads");
		return 1;
	}
	for (; nthreads < app->cfg.worker_threads; nthreads++)
		if (pthread_create(&tids[nthreads], NULL, request_main, NULL) != 0)
			break;
	log_info("main", "worker started (version %s): %d request threads, %lld completion threads, "
		 "%lld database connections, up to %lld generations in flight", QC_VERSION, nthreads,
		 app->cfg.completion_threads, app->cfg.db_pool_size, app->cfg.max_inflight);

	while (!sig) {
		struct timespec tick = { 0, 250 * 1000000L };
		int s = sigtimedwait(&term, NULL, &tick);
		if (s == SIGTERM || s == SIGINT) {
			sig = s;
		} else {
			flush(app, 0);
			warm_tick(app->pool);   /* predictive warming, off the request path */
			trim_at_rest(app);
		}
	}
	/* stop accepting: wake every request thread out of accept() */
	atomic_store(&stopping, 1);
	log_info("main", "stopping: no new requests; waiting for calls in flight");
	for (int i = 0; i < nthreads; i++) {
		for (int tries = 0; tries < 200; tries++) {
			struct timespec ts;
			pthread_kill(tids[i], SIGUSR1);
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 20 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			if (pthread_timedjoin_np(tids[i], NULL, &ts) == 0)
				break;
		}
	}
	free(tids);
	warm_clear();
	inflight_stop(app->inf, app->cfg.shutdown_grace_ms);
	alerts_stop();   /* claims what it queued; its counts go in the flush */
	flush(app, 1);
	log_info("main", "worker stopping");
	inflight_free(app->inf);
	curl_global_cleanup();
	dbpool_free(app->pool);
	config_release(&app->cfg);
	mysql_library_end();
	return 0;
}
