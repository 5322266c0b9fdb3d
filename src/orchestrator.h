/*
 * orchestrator.h - POST /api/v1/generate as plain C (SPEC §5): cache lookup
 * -> quota reservation -> single flight -> upstream -> cache store ->
 * commit -> usage event.  No FastCGI inside; the handler only maps JSON.
 *
 * Every exit path settles what it started: a reservation is committed or
 * released, a flight row is deleted, nothing half-written stays cached.
 */
#ifndef QC_ORCHESTRATOR_H
#define QC_ORCHESTRATOR_H

#include <stddef.h>
#include <time.h>

#include <json-c/json.h>

#include "auth.h"
#include "cache.h"
#include "qc.h"
#include "quota.h"

struct config;
struct db;
struct http_req;
struct upstream_result;

#define ORCH_PROMPT_MAX (512 * 1024)
#define ORCH_MODEL_MAX 64

struct gen_request {
	const char *task;
	const char *prompt;
	size_t prompt_len;
	const char *system_prompt_key;   /* NULL: none */
	size_t spk_len;
	const char *cache_key;           /* NULL: derived from task, model, prompt */
	size_t ck_len;
	enum cache_tier tier;            /* CACHE_SESSION or CACHE_CONTENT */
	long long max_tokens;            /* 0: not given */
	const char *model;               /* NULL: the configured model */
	/* test builds only (X-QC-Test-Stall): sleep test_stall_ms at a point of
	 * the miss so that a fault test can kill the worker there; the two
	 * BILLING_LOST points also drop the database connection once, before
	 * the billing transaction is sent or after it committed (its answer
	 * lost), as a database node dying there does; the two BATCH_LOST
	 * points do that to the shared billing transaction of a batch this
	 * answer is in (orch_finish), and to nothing when it is billed
	 * alone; the two RESERVE_LOST points, to the shared reserve
	 * transaction of a batch this miss is in (orch_reserve) */
	enum { ORCH_STALL_NONE, ORCH_STALL_BEFORE_UPSTREAM, ORCH_STALL_BEFORE_BILLING,
	       ORCH_STALL_BILLING_LOST_BEFORE, ORCH_STALL_BILLING_LOST_AFTER,
	       ORCH_STALL_BATCH_LOST_BEFORE, ORCH_STALL_BATCH_LOST_AFTER,
	       ORCH_STALL_RESERVE_LOST_BEFORE, ORCH_STALL_RESERVE_LOST_AFTER } test_stall;
	long long test_stall_ms;
	/* the OpenAI endpoint (h_openai.c) sets these; /api/v1/generate leaves
	 * messages and extra NULL */
	json_object *messages;           /* borrowed: sent as is (no system prompt key) */
	json_object *extra;              /* more members of the upstream request; the
					  * orch owns it from orch_begin on */
	char key[65];                    /* a derived cache key (hex) to use; "" none */
	int stream;                      /* the client wants SSE (upstream streams too) */
	int include_usage;               /* ... with the usage chunk */
	int bypass;                      /* no cache read or store, no single flight */
	int api;                         /* ORCH_API_*: the ledger's api column */
	/* a warming call (warming.h): the user the answer is for (the orch's
	 * user is the plan's warming user, who pays), and why */
	long long warm_for;
	enum { ORCH_WARM_NONE, ORCH_WARM_REFRESH, ORCH_WARM_NEXT } warm_kind;
};

enum { ORCH_API_GENERATE, ORCH_API_OPENAI };
/* The ledger's name of an ORCH_API_* value: "generate" or "openai". */
const char *orch_api_name(int api);

struct gen_result {
	char *content;                   /* owned; release with gen_result_release */
	size_t content_len;
	int cached;
	enum cache_tier tier;
	long long prompt_tokens, completion_tokens;
	long long cost_micro;
	long long latency_ms;
	char model[ORCH_MODEL_MAX + 1];
	char cache_key[65];              /* the derived key (hex) when none was given */
	int upstream_calls;
	char error[200];                 /* on failure: what failed, safe for clients */
	struct quota_status quota;       /* on QC_EQUOTA; after a reservation: its status */
	char finish_reason[24];          /* "stop", "length", "tool_calls", ... */
	char *message;                   /* owned: the upstream's message JSON when it calls tools */
};

/* 1 if model is a usable model name: 1..64 of [A-Za-z0-9._:/-]. */
int orch_model_ok(const char *model, size_t len);

/* The default cache key: SHA-256 hex of task, model, system prompt key
 * (may be NULL) and prompt. */
void orch_default_key(const char *task, const char *model, const char *spk, size_t spk_len,
		      const char *prompt, size_t prompt_len, char out[65]);

/*
 * A generation in steps, so that no thread waits on the upstream:
 *
 *   orch_begin    cache -> system prompt; DONE (hit, error) | RESERVE (a
 *                 miss: reserve for it with orch_reserve)
 *   orch_reserve  reserve (+ flight row): DONE (refusal, error) | CALL (we
 *                 lead: call the upstream with o->msgs) | WAIT (an
 *                 identical call is in flight: check again later)
 *   orch_recheck  a waiter looks again: DONE (its answer landed, or it gave
 *                 up with QC_EBUSY) | CALL (the leader's row lapsed and we
 *                 took it over) | WAIT
 *   orch_finish   the upstream answered (or failed): store, bill, drop the
 *                 flight row -> DONE
 *   orch_abort    shutdown: release the reservation and the flight row
 *
 * struct orch must not move between steps (it points into itself) and the
 * strings of `in` must outlive it.  Each step uses the db it is given (any
 * pooled connection).  o->rc and o->r hold the outcome once DONE.
 */
enum orch_step { ORCH_DONE, ORCH_CALL, ORCH_WAIT, ORCH_RESERVE };

struct orch {
	const struct config *cfg;
	struct auth_user user;
	struct gen_request in;
	time_t now;
	const char *model;
	const char *key;
	size_t klen;
	long long t0_ms;
	int caches, leading;
	long long exp_id;                /* the running A/B experiment (0: none) */
	int exp_arm;                     /* and this user's arm in it (enum exp_arm) */
	long long min, hold_s;
	char rid[QUOTA_ID_LEN + 1], fkey[65], owner[33];
	struct cache_entry sys;
	long long wait_deadline_ms;      /* a waiter gives up then (monotonic ms) */
	json_object *msgs;               /* ORCH_CALL: the messages to send */
	enum qc_err rc;                  /* ORCH_DONE: the outcome */
	struct gen_result r;
	/* set by the handler: how to answer (inflight.c calls it when DONE),
	 * and for streams how to forward a chunk event as it arrives (on the
	 * multi loop's thread; -1: the client is gone) */
	void (*respond)(struct http_req *req, struct orch *o);
	int (*on_chunk)(struct http_req *req, struct orch *o, json_object *chunk);
	int streaming;                   /* the SSE answer's headers went out */
	int client_gone;                 /* a write to the client failed */
	int usage_sent;                  /* the upstream's usage chunk was forwarded */
};

enum orch_step orch_begin(struct orch *o, struct db *db, const struct config *cfg,
			  const struct auth_user *user, time_t now, const struct gen_request *in);
/*
 * Reserve for n misses that orch_begin left at RESERVE (a completion thread
 * takes the ones waiting in its queue, at most QUOTA_BATCH_MAX); steps[i]
 * gets os[i]'s next step.  Misses for which orch_reserve_with(os[0], o)
 * holds for every o are reserved in one transaction when the database
 * takes them together (sql/020_batch_reserve.sql); otherwise, or when it
 * declines, each is reserved on its own (qc_reserve).
 */
void orch_reserve(struct orch **os, unsigned n, struct db *db, enum orch_step *steps);
int orch_reserve_with(const struct orch *first, const struct orch *o);
enum orch_step orch_recheck(struct orch *o, struct db *db);
/*
 * Answered (or failed) upstream calls, one or several at once (a completion
 * thread takes the answers right behind one another in its queue, at most
 * ORCH_BATCH_MAX): each item's uprc is the upstream's outcome, ur its result
 * (content taken over on QC_OK), secs the call's duration; steps[i] gets
 * item i's next step.  Answers that came back well are billed in one
 * transaction (sql/019_batch_billing.sql) when the database takes them
 * together; any it declines, and any that cannot go together (a warming
 * call, a test fault point, a large answer, or one alone), are billed one
 * by one (sql/007's qc_finish_generation).
 */
#define ORCH_BATCH_MAX 16
struct orch_done {
	struct orch *o;
	enum qc_err uprc;
	struct upstream_result *ur;
	double secs;
	const char *req_id;              /* for the log lines of this item */
};
void orch_finish(struct orch_done *items, unsigned n, struct db *db, enum orch_step *steps);
/* Give back what o holds (reservation, flight row); o->rc = why. */
void orch_abort(struct orch *o, struct db *db, enum qc_err why, const char *msg);
/* Free what o owns (not o itself). */
void orch_release(struct orch *o);
/* Sleep ms milliseconds (the test stall points only). */
void orch_test_sleep(long long ms);

#endif
