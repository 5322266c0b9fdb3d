/*
 * inflight.h - generations in flight in one worker process (SPEC §9).
 *
 *   request threads (N)        multi loop (1 thread)          completion threads (M)
 *   FCGX_Accept_r              epoll + libcurl multi: every    take a job, a pooled
 *   -> api_handle -> orch_begin  upstream call in flight,     connection, and run
 *      DONE: answer at once      backoff timers, waiters'     orch_reserve / orch_finish /
 *      RESERVE: park the conn    check timers                 orch_recheck / orch_abort;
 *      ------------------------- job queue ---------------->  DONE: answer and finish the
 *                                ---- job queue ---------->   FCGX request; CALL/WAIT:
 *                                <---- inbox (CALL/WAIT, wake) to the loop
 *
 * A completion thread that takes a miss also takes the same user's misses
 * queued anywhere behind it (up to 16) and reserves for them together when
 * the database takes them (orch_reserve, sql/020_batch_reserve.sql); one
 * that takes an answered call also takes the answered calls right behind it
 * (up to 16) and bills them together (orch_finish, sql/019_batch_billing.sql).
 * An idle completion thread gathers first: while jobs come fast it waits up
 * to batch_wait_ms for 8 of them (inflight_gather_us below).
 *
 * A parked request (struct conn) costs its FCGX_Request, its body and a
 * curl easy handle: memory, never a thread or a database connection.
 *
 * Ownership: a struct conn belongs to exactly one place at a time: the
 * request thread that accepted it, the loop's inbox (under f->mu), the loop
 * thread's lists, the job queue (under f->mu) or one completion thread.
 * Counters read by the flusher are atomics.
 *
 * Single flight: a waiter whose leader runs in this process is woken when
 * the leader's answer is stored (a wake for its flight key), and otherwise
 * checks the flight row 4 times a second (cross-process or cross-node).
 */
#ifndef QC_INFLIGHT_H
#define QC_INFLIGHT_H

#include <fcgiapp.h>

#include "http.h"
#include "orchestrator.h"

struct config;
struct dbpool;
struct up_call;
struct inflight;

struct conn {
	FCGX_Request fr;
	struct http_req req;
	long long t0_ms;
	/* while parked */
	struct orch *o;
	struct up_call *up;
	int kind;               /* what its next holder does with it */
	int local;              /* waiter with a leader in this process */
	long long due_ms;       /* next check (waiter) or attempt (retry) */
	long long queued_us;    /* when it joined the job queue (monotonic µs) */
	int background;         /* a warming call: no FastCGI request behind it */
	struct conn *prev, *next;
};

/* A fresh conn for FCGX_Accept_r on the listen socket; NULL on ENOMEM. */
struct conn *conn_new(void);
/* A conn for a background generation (warming.h): req initialised without
 * FastCGI; NULL on ENOMEM. */
struct conn *conn_new_background(void);
/* Count the request in the metrics, release it, finish the FastCGI
 * request (a write to a client gone away fails harmlessly) and free c. */
void conn_finish(struct conn *c);

/* Respond to a finished generation (h_generate.c). */
typedef void (*inflight_respond_fn)(struct http_req *req, struct orch *o);

struct inflight *inflight_new(const struct config *cfg, struct dbpool *pool,
			      unsigned completion_threads, inflight_respond_fn respond);
/* Start the loop and completion threads.  0, or -1. */
int inflight_start(struct inflight *f);
/* Stop: refuse new calls, let those in flight finish for grace_ms, abort
 * (release, answer 503) the rest, join the threads. */
void inflight_stop(struct inflight *f, long long grace_ms);
void inflight_free(struct inflight *f);

/* Take a slot of the per-process cap: 1, or 0 when full (or stopping). */
int inflight_admit(struct inflight *f);
/* Give a slot back (a generation that ended without parking). */
void inflight_unadmit(struct inflight *f);
/* Park c (holding orch o, admitted) after orch_begin said RESERVE.
 * Nobody on this thread may touch c afterwards: ask inflight_parked(). */
void inflight_park(struct inflight *f, struct conn *c, struct orch *o, enum orch_step step);
/* Park a background conn (admitted) for the upstream call orch_reserve asked
 * for (ORCH_CALL); unlike inflight_park it leaves this thread's own request
 * alone. */
void inflight_park_background(struct inflight *f, struct conn *c, struct orch *o);
/* 1 if this thread parked its conn since inflight_parked_reset(). */
int inflight_parked(void);
void inflight_parked_reset(void);

/* Gauges: upstream calls in flight (including backoff waits), waiters. */
void inflight_gauges(struct inflight *f, long long *calls, long long *waiters);

/* How an idle completion thread gathers a batch (pure; inflight.c uses
 * them under its lock, tests/unit/test_gather.c checks them).
 *
 * inflight_gather_us: how long to wait before taking the n jobs queued, of
 * the held generations the process holds, the first queued at head_us, jobs
 * coming gap_us apart on average, waiting at most wait_ms from head_us: 0 =
 * take them now (INFLIGHT_GATHER are queued, every generation held has its
 * job queued (a lone client's next job is its own next step), the wait is
 * over, or the next job is not due before it ends).
 * inflight_next_gap: the average gap (a moving average of 8) after a job
 * queued at now_us, the one before at last_us (0: none). */
#define INFLIGHT_GATHER 8
long long inflight_gather_us(unsigned n, long long held, long long head_us, long long gap_us,
			     long long wait_ms, long long now_us);
long long inflight_next_gap(long long gap_us, long long last_us, long long now_us);

#endif
