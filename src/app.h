/*
 * app.h - what a handler sees: the configuration, the database connection
 * its thread holds for this request, the process's pool and in-flight
 * engine, and short-lived read caches.  Each thread has its own copy of
 * struct app (the pointed-to pool and engine are shared and locked inside).
 * Nothing here is needed by any other worker; all shared state lives in
 * MariaDB.
 */
#ifndef QC_APP_H
#define QC_APP_H

#include <time.h>

#include "cache.h"
#include "settings.h"
#include "db.h"
#include "http.h"

struct gen_request;
struct orch;
struct quota_status;

struct dbpool;
struct inflight;
struct orch;
struct quota_status;

struct app {
	struct config cfg;           /* read-only after start (this thread's copy) */
	const struct config *pcfg;   /* the process's: outlives every request (parked ones too) */
	struct db *db;               /* this thread's pooled connection, for this request */
	struct dbpool *pool;         /* the process's connections */
	struct inflight *inf;        /* the process's generations in flight */
	/* health: answered from this 1-second read cache */
	time_t health_at;
	int health_db_ok;
	long long health_schema;
};

/* Saving of one hit of a tier in micro-dollars (from the configuration). */
long long app_saving_micro(const struct app *app, enum cache_tier t);

/* Route, read and check the body, authenticate, run the handler, answer. */
void api_handle(struct app *app, struct http_req *req);

/* The route table (for tests and the OpenAPI check). */
extern const struct route api_routes[];
extern const size_t api_nroutes;

/* 429 problem naming the refusing window, Retry-After, RateLimit headers. */
void api_quota_refusal(struct http_req *req, const struct quota_status *st);

/* Answer a finished generation (any thread): the JSON result or its error. */
void gen_respond(struct http_req *req, struct orch *o);
/* Run a validated generation (h_generate.c): admit, begin, then answer
 * with respond at once or park the request until the upstream or an
 * identical call answers.  Takes in->extra over.  on_chunk (NULL: not a
 * stream) forwards a stream's chunk events as they arrive. */
void gen_run(struct app *app, struct http_req *req, struct gen_request *in,
	     void (*respond)(struct http_req *, struct orch *),
	     int (*on_chunk)(struct http_req *, struct orch *, json_object *));
/* 1 when model is not configured or not in the caller's plan (answered). */
int gen_model_refused(struct app *app, struct http_req *req, const char *model);
/* The OpenAI endpoint's answers (h_openai.c), also /api/v1/generate's streams. */
void oai_respond(struct http_req *req, struct orch *o);
int oai_on_chunk(struct http_req *req, struct orch *o, json_object *chunk);
/* RateLimit headers of st, and on /v1/ routes OpenAI's x-ratelimit-* (h_quota.c). */
void api_ratelimit_headers(struct http_req *req, const struct quota_status *st);

/* The path's first {param} as a positive decimal id; 0 after answering 404
 * with detail ("no such user", ...) when it is not one. */
long long api_path_id(struct http_req *req, const char *detail);
/* Query parameter name as an integer in [lo, hi] (*v = def when absent): 1
 * given, 0 absent, -1 after answering 400. */
int api_query_int(struct http_req *req, const char *name, long long lo, long long hi, long long def,
		  long long *v);
/* Answer req with the problem matching error e (detail may be NULL). */
void api_error(struct http_req *req, enum qc_err e, const char *detail);

/* Handlers (thin: parse, call a module, answer). */
void h_health(struct app *, struct http_req *);
void h_me(struct app *, struct http_req *);
void h_quota_status(struct app *, struct http_req *);
void h_quota_plans(struct app *, struct http_req *);
void h_quota_check(struct app *, struct http_req *);
void h_quota_reserve(struct app *, struct http_req *);
void h_quota_commit(struct app *, struct http_req *);
void h_quota_release(struct app *, struct http_req *);
void h_quota_user(struct app *, struct http_req *);
void h_quota_set_plan(struct app *, struct http_req *);
void h_quota_set_override(struct app *, struct http_req *);
void h_quota_clear_override(struct app *, struct http_req *);
void h_quota_overrides(struct app *, struct http_req *);
void h_admin_users(struct app *, struct http_req *);
void h_admin_user_create(struct app *, struct http_req *);
void h_admin_user(struct app *, struct http_req *);
void h_admin_user_disable(struct app *, struct http_req *);
void h_admin_user_enable(struct app *, struct http_req *);
void h_admin_key_issue(struct app *, struct http_req *);
void h_admin_key_revoke(struct app *, struct http_req *);
void h_admin_user_purge(struct app *, struct http_req *);
void h_admin_user_cache(struct app *, struct http_req *);
void h_admin_system_list(struct app *, struct http_req *);
void h_admin_system_put(struct app *, struct http_req *);
void h_admin_system_delete(struct app *, struct http_req *);
void h_admin_audit(struct app *, struct http_req *);
void h_admin_spend(struct app *, struct http_req *);
void h_admin_nearest(struct app *, struct http_req *);
void h_cache_get(struct app *, struct http_req *);
void h_cache_put(struct app *, struct http_req *);
void h_cache_delete(struct app *, struct http_req *);
void h_cache_hash(struct app *, struct http_req *);
void h_cache_stats(struct app *, struct http_req *);
void h_cache_timeseries(struct app *, struct http_req *);
void h_cache_cleanup(struct app *, struct http_req *);
void h_generate(struct app *, struct http_req *);
void h_models(struct app *, struct http_req *);
void h_oai_chat(struct app *, struct http_req *);
void h_usage(struct app *, struct http_req *);
void h_metrics(struct app *, struct http_req *);
void h_warming_run(struct app *, struct http_req *);
void h_exp_list(struct app *, struct http_req *);
void h_exp_create(struct app *, struct http_req *);
void h_exp_get(struct app *, struct http_req *);
void h_exp_start(struct app *, struct http_req *);
void h_exp_stop(struct app *, struct http_req *);

#endif
