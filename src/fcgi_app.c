/*
 * fcgi_app.c - the worker process: load configuration, open the database,
 * run the FCGX_Accept_r loop until SIGTERM, then release everything.
 * Only the accept loop lives here; each request goes to api_handle().
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fcgiapp.h>
#include <mysql.h>

#include "app.h"
#include "log.h"
#include "metrics.h"
#include "upstream.h"

static volatile sig_atomic_t stopping, alarmed;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
	FCGX_ShutdownPending();   /* makes a blocked accept return */
}

static void on_alarm(int sig)
{
	(void)sig;
	alarmed = 1;
}

/* Arm a one-shot timer (seconds; 0 disarms). */
static void arm(int secs)
{
	struct itimerval it = { { 0, 0 }, { secs, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

/*
 * Hit counters wait in the worker at most a second.  While a request runs
 * they are flushed after it when due; while the worker waits in accept(),
 * a timer interrupts the wait (FCGI_FAIL_ACCEPT_ON_INTR) so they are
 * flushed even when no request comes.  The timer is armed only around
 * accept(), so no other system call ever sees EINTR.
 */
static void flush_if_due(struct app *app)
{
	if (app_flush_in(time(NULL)) == 0 && app_flush(app) != QC_OK)
		log_warn("main", "flushing counters failed; kept for the next try");
}

int main(int argc, char **argv)
{
	struct app app;
	FCGX_Request freq;
	struct sigaction sa;
	char err[512];
	const char *cfgpath = NULL;
	int lvl;

	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			cfgpath = argv[++i];
	memset(&app, 0, sizeof app);
	if (config_load(&app.cfg, cfgpath, err, sizeof err) < 0) {
		log_error("main", "%s", err);
		return 1;
	}
	if ((lvl = log_parse_level(app.cfg.log_level)) >= 0)
		log_set_level((enum log_level)lvl);
	if (mysql_library_init(0, NULL, NULL) || !(app.db = db_new(&app.cfg))) {
		log_error("main", "cannot initialise the database library");
		config_release(&app.cfg);
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(app.up = upstream_new(&app.cfg))) {
		log_error("main", "cannot initialise libcurl");
		db_free(app.db);
		config_release(&app.cfg);
		return 1;
	}
	srand((unsigned)getpid() ^ (unsigned)time(NULL));
	/* failure is fine: requests answer 503 and reconnect */
	if (db_connect(app.db) == QC_OK && app.cfg.prompts_dir && *app.cfg.prompts_dir) {
		int loaded = 0, same = 0, skipped = 0;
		if (cache_warm_dir(app.db, app.cfg.prompts_dir, time(NULL), app.cfg.cache_max_entry,
				   &loaded, &same, &skipped) == QC_OK && loaded)
			log_info("main", "system tier warmed from %s: %d loaded, %d unchanged",
				 app.cfg.prompts_dir, loaded, same);
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;   /* no SA_RESTART: accept() must be interrupted */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* dollars and ratios: 10 significant digits, no binary noise */
	json_c_set_serialization_double_format("%.10g", JSON_C_OPTION_GLOBAL);
	FCGX_Init();
	FCGX_InitRequest(&freq, 0, FCGI_FAIL_ACCEPT_ON_INTR);
	log_info("main", "worker started (version %s)", QC_VERSION);
	while (!stopping) {
		struct http_req req;
		int due = app_flush_in(time(NULL)), rc;

		if (due == 0) {
			flush_if_due(&app);
			due = app_flush_in(time(NULL));
		}
		alarmed = 0;
		if (due > 0)
			arm(due);
		rc = FCGX_Accept_r(&freq);
		if (due > 0)
			arm(0);
		if (rc < 0) {
			if (stopping || rc != -EINTR)
				break;
			flush_if_due(&app);   /* the timer woke us */
			continue;
		}
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		http_req_init(&req, &freq);
		log_set_request_id(req.id);
		api_handle(&app, &req);
		log_set_request_id(NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		metrics_http(req.match.route ? req.match.route->name : "unmatched", req.status,
			     (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
		http_req_release(&req);
		FCGX_Finish_r(&freq);
		flush_if_due(&app);
	}
	FCGX_Free(&freq, 1);
	if (app_flush_in(time(NULL)) >= 0 && app_flush(&app) != QC_OK)
		log_warn("main", "pending counters lost at shutdown");
	log_info("main", "worker stopping");
	upstream_free(app.up);
	curl_global_cleanup();
	db_free(app.db);
	config_release(&app.cfg);
	mysql_library_end();
	return 0;
}
