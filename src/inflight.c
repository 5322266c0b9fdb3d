/*
 * inflight.c - the multi loop, the job queue and the completion threads of
 * one worker process (see inflight.h for the picture and the ownership).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "dbpool.h"
#include "inflight.h"
#include "log.h"
#include "metrics.h"
#include "settings.h"
#include "upstream.h"

#define CHECK_MS 250          /* cross-process waiters: 4 checks a second */
#define LOCAL_CHECK_MS 2000   /* same-process waiters are woken; this is a safety net */
#define SPILL_MS 20           /* a job waits this long for a busy completion thread */

enum kind { K_CALL, K_WAIT, K_DONE, K_CHECK, K_ABORT, K_RESERVE };

struct wake { char fkey[65]; struct wake *next; };

struct list { struct conn *head; };

struct inflight {
	const struct config *cfg;
	struct dbpool *pool;
	inflight_respond_fn respond;
	unsigned nthreads;
	pthread_t loop_tid, *tids;
	int started;
	CURLM *multi;
	/* curl's sockets and the wakeup eventfd, watched by the loop's epoll;
	 * efd is written by any thread, ep and curl_due are the loop's own */
	int ep, efd;
	long long curl_due;     /* when curl's timer fires (mono ms); -1: none */
	/* under mu: the loop's inbox and the job queue */
	pthread_mutex_t mu;
	pthread_cond_t jobs_cv;
	struct conn *inbox;
	struct wake *wakes;
	struct conn *jobs_head, *jobs_tail;
	unsigned njobs;         /* in the job queue */
	unsigned busy;          /* completion threads working on jobs */
	long long last_job_us;  /* when the last job was queued (mono µs) */
	long long gap_us;       /* the average time between jobs (mono µs, moving average of 8) */
	int abort_all, stop;
	/* the loop thread's own */
	struct list calling, waiting, retrying;
	/* atomics */
	atomic_long admitted, calls, waiters;
	atomic_int draining;
};

/* --- conns ------------------------------------------------------------- */

struct conn *conn_new(void)
{
	struct conn *c = calloc(1, sizeof *c);

	if (c)
		FCGX_InitRequest(&c->fr, 0, FCGI_FAIL_ACCEPT_ON_INTR);
	return c;
}

struct conn *conn_new_background(void)
{
	struct conn *c = calloc(1, sizeof *c);

	if (c) {
		c->background = 1;
		http_req_init(&c->req, NULL);
		c->t0_ms = qc_mono_ms();
	}
	return c;
}

void conn_finish(struct conn *c)
{
	double secs = (double)(qc_mono_ms() - c->t0_ms) / 1000.0;

	if (!c->background)
		metrics_http(c->req.match.route ? c->req.match.route->name : "unmatched", c->req.status, secs);
	http_req_release(&c->req);
	if (!c->background)
		http_fcgi_finish(&c->fr);
	free(c);
}

/* --- lists (loop thread only) ------------------------------------------ */

static void list_add(struct list *l, struct conn *c)
{
	c->prev = NULL;
	c->next = l->head;
	if (l->head)
		l->head->prev = c;
	l->head = c;
}

static void list_del(struct list *l, struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

/* --- hand-offs ------------------------------------------------------------ */

/* Interrupt the loop's epoll_wait (any thread). */
static void loop_wakeup(struct inflight *f)
{
	uint64_t one = 1;
	ssize_t n = write(f->efd, &one, sizeof one);

	(void)n;   /* EAGAIN: the counter is already non-zero, the loop wakes anyway */
}

static void to_loop(struct inflight *f, struct conn *c, int kind)
{
	c->kind = kind;
	pthread_mutex_lock(&f->mu);
	c->next = f->inbox;
	f->inbox = c;
	pthread_mutex_unlock(&f->mu);
	loop_wakeup(f);
}

long long inflight_next_gap(long long gap_us, long long last_us, long long now_us)
{
	return last_us ? gap_us + (now_us - last_us - gap_us) / 8 : gap_us;
}

long long inflight_gather_us(unsigned n, long long held, long long head_us, long long gap_us,
			     long long wait_ms, long long now_us)
{
	long long left = head_us + wait_ms * 1000 - now_us;

	return n >= INFLIGHT_GATHER || held <= (long long)n || left <= 0 || gap_us > left ? 0 : left;
}

static void to_jobs(struct inflight *f, struct conn *c, int kind)
{
	c->kind = kind;
	c->next = NULL;
	c->queued_us = qc_mono_us();
	pthread_mutex_lock(&f->mu);
	f->gap_us = inflight_next_gap(f->gap_us, f->last_job_us, c->queued_us);
	f->last_job_us = c->queued_us;
	f->njobs++;
	if (f->jobs_tail)
		f->jobs_tail->next = c;
	else
		f->jobs_head = c;
	f->jobs_tail = c;
	pthread_cond_signal(&f->jobs_cv);
	pthread_mutex_unlock(&f->mu);
}

static void wake(struct inflight *f, const char *fkey)
{
	struct wake *w = malloc(sizeof *w);

	if (!w)
		return;   /* the waiters' safety-net check still finds the answer */
	memcpy(w->fkey, fkey, sizeof w->fkey);
	pthread_mutex_lock(&f->mu);
	w->next = f->wakes;
	f->wakes = w;
	pthread_mutex_unlock(&f->mu);
	loop_wakeup(f);
}

int inflight_admit(struct inflight *f)
{
	if (atomic_load(&f->draining))
		return 0;
	if (atomic_fetch_add(&f->admitted, 1) >= f->cfg->max_inflight) {
		atomic_fetch_sub(&f->admitted, 1);
		return 0;
	}
	return 1;
}

void inflight_unadmit(struct inflight *f)
{
	atomic_fetch_sub(&f->admitted, 1);
}

/* A stream's chunk event, on the loop thread (which owns c while its call
 * is in flight): forward it unless the client went away; the call goes on
 * either way, so that the answer is stored and billed in full. */
static void forward_chunk(void *ud, json_object *chunk)
{
	struct conn *c = ud;
	struct orch *o = c->o;

	if (!o->client_gone && o->on_chunk(&c->req, o, chunk) < 0)
		o->client_gone = 1;
}

/* CALL: make the upstream call and hand it to the loop; DONE on failure. */
static int start_call(struct inflight *f, struct conn *c)
{
	struct orch *o = c->o;

	if (!(c->up = up_call_new(f->cfg, o->model, o->msgs, o->in.max_tokens, o->in.extra, o->in.stream)))
		return -1;
	if (o->in.stream && o->on_chunk)
		up_call_on_chunk(c->up, forward_chunk, c);
	json_object_put(o->msgs);   /* serialised into the call */
	o->msgs = NULL;
	atomic_fetch_add(&f->calls, 1);
	to_loop(f, c, K_CALL);
	return 0;
}

/* The generation is over: answer, finish the request, give the slot back. */
static void finish(struct inflight *f, struct conn *c)
{
	if (c->o->respond)
		c->o->respond(&c->req, c->o);
	else
		f->respond(&c->req, c->o);
	orch_release(c->o);
	free(c->o);
	c->o = NULL;
	conn_finish(c);
	inflight_unadmit(f);
}

static void next_step(struct inflight *f, struct conn *c, enum orch_step step, struct db *db)
{
	if (step == ORCH_RESERVE) {   /* a completion thread reserves (with others) */
		to_jobs(f, c, K_RESERVE);
		return;
	}
	if (step == ORCH_CALL && start_call(f, c) < 0) {
		orch_abort(c->o, db, QC_ENOMEM, NULL);
		step = ORCH_DONE;
	}
	if (step == ORCH_WAIT) {
		atomic_fetch_add(&f->waiters, 1);
		to_loop(f, c, K_WAIT);
	} else if (step == ORCH_DONE) {
		finish(f, c);
	}
}

/* set by inflight_park on the request thread that parked its conn */
static _Thread_local int parked_here;

void inflight_park(struct inflight *f, struct conn *c, struct orch *o, enum orch_step step)
{
	c->o = o;
	parked_here = 1;
	next_step(f, c, step, NULL);   /* c may be finished and freed before this returns */
}

void inflight_park_background(struct inflight *f, struct conn *c, struct orch *o)
{
	c->o = o;
	next_step(f, c, ORCH_CALL, NULL);   /* c may be finished and freed before this returns */
}

int inflight_parked(void)
{
	return parked_here;
}

void inflight_parked_reset(void)
{
	parked_here = 0;
}

/* --- completion threads ------------------------------------------------ */

/* Most answers a completion thread takes from its queue to finish together
 * (billed in one transaction when the database takes them: orchestrator.h). */
#define FINISH_BATCH ORCH_BATCH_MAX
_Static_assert(QUOTA_BATCH_MAX <= FINISH_BATCH, "a completion thread's jobs fit its array");

/* Finish the n answered calls in cs: bill them (together when they can),
 * answer each, wake each flight's waiters in this process. */
static void finish_answers(struct inflight *f, struct conn **cs, unsigned n, struct db *db)
{
	struct orch_done items[FINISH_BATCH];
	struct upstream_result urs[FINISH_BATCH];
	enum orch_step steps[FINISH_BATCH];
	int led[FINISH_BATCH];

	for (unsigned i = 0; i < n; i++) {
		struct conn *c = cs[i];
		double secs = 0;
		enum qc_err rc = up_call_result(c->up, &urs[i], &secs);

		led[i] = c->o->caches;
		up_call_free(c->up);
		c->up = NULL;
		atomic_fetch_sub(&f->calls, 1);
		if (c->o->in.test_stall >= ORCH_STALL_BEFORE_BILLING)
			orch_test_sleep(c->o->in.test_stall_ms);
		items[i] = (struct orch_done){ c->o, rc, &urs[i], secs, c->req.id };
	}
	orch_finish(items, n, db, steps);
	for (unsigned i = 0; i < n; i++) {
		struct conn *c = cs[i];

		log_set_request_id(c->req.id);
		upstream_result_release(&urs[i]);
		if (led[i])
			wake(f, c->o->fkey);
		next_step(f, c, steps[i], db);   /* c may be finished and freed */
	}
}

/* Take job q, behind prev (NULL: q is the head), out of the queue (under f->mu). */
static void unlink_job(struct inflight *f, struct conn *prev, struct conn *q)
{
	if (prev)
		prev->next = q->next;
	else
		f->jobs_head = q->next;
	if (f->jobs_tail == q)
		f->jobs_tail = prev;
	q->next = NULL;
	f->njobs--;
}

/* Reserve for the n misses in cs (one user's when n > 1: take_reserves),
 * then send each on its way: to the upstream, to wait, or answered. */
static void reserve_misses(struct inflight *f, struct conn **cs, unsigned n, struct db *db)
{
	struct orch *os[QUOTA_BATCH_MAX];
	enum orch_step steps[QUOTA_BATCH_MAX];

	for (unsigned i = 0; i < n; i++)
		os[i] = cs[i]->o;
	log_set_request_id(n == 1 ? cs[0]->req.id : NULL);
	orch_reserve(os, n, db, steps);
	for (unsigned i = 0; i < n; i++) {
		log_set_request_id(cs[i]->req.id);
		if (steps[i] == ORCH_CALL && os[i]->in.test_stall == ORCH_STALL_BEFORE_UPSTREAM)
			orch_test_sleep(os[i]->in.test_stall_ms);
		next_step(f, cs[i], steps[i], db);   /* cs[i] may be finished and freed */
	}
}

/* With the miss c just taken from the queue (under f->mu), take the misses
 * queued behind it that can be reserved for together with it (the same
 * user's: orch_reserve_with), wherever they are in the queue; cs[0] is c.
 * Returns how many cs holds. */
static unsigned take_reserves(struct inflight *f, struct conn *c, struct conn **cs)
{
	struct conn *p = NULL, *q = f->jobs_head, *next;
	unsigned n = 1;

	cs[0] = c;
	for (; q && n < QUOTA_BATCH_MAX; q = next) {
		int ok = q->kind == K_RESERVE;
		next = q->next;
		for (unsigned i = 0; ok && i < n; i++)
			ok = orch_reserve_with(cs[i]->o, q->o);
		if (!ok) {
			p = q;
			continue;
		}
		unlink_job(f, p, q);
		cs[n++] = q;
	}
	return n;
}

/* A waiter's check or an abort. */
static void run_job(struct inflight *f, struct conn *c, struct db *db)
{
	enum orch_step step = ORCH_DONE;

	log_set_request_id(c->req.id);
	switch (c->kind) {
	case K_CHECK:
		atomic_fetch_sub(&f->waiters, 1);
		step = orch_recheck(c->o, db);
		break;
	case K_ABORT:
		if (c->up) {
			up_call_free(c->up);
			c->up = NULL;
			atomic_fetch_sub(&f->calls, 1);
		} else {
			atomic_fetch_sub(&f->waiters, 1);
		}
		orch_abort(c->o, db, QC_EBUSY, "the worker is shutting down; retry");
		break;
	}
	next_step(f, c, step, db);   /* c may be finished and freed */
}

static void *completion_main(void *arg)
{
	struct inflight *f = arg;

	for (;;) {
		struct conn *c, *cs[FINISH_BATCH];
		unsigned n = 0;
		struct db *db;

		pthread_mutex_lock(&f->mu);
		/* One thread at a time takes jobs while that keeps up: the jobs
		 * that queue meanwhile go together (billed, reserved for) in the
		 * next take.  An idle one gathers first: it waits for 8 jobs
		 * while the next is due (jobs come faster than the time left of
		 * batch_wait_ms since the head was queued) and another
		 * generation held could send it, since a batch of 8
		 * costs the database about a fifth of what 8 alone do
		 * (docs/concurrency.md).
		 * Another joins when a batch's worth is queued or the head has
		 * waited SPILL_MS (a slow transaction holds up no one). */
		for (;;) {
			long long wait;
			struct timespec ts;
			if (!f->jobs_head) {
				if (f->stop)
					break;
				pthread_cond_wait(&f->jobs_cv, &f->mu);
				continue;
			}
			if (f->busy == 0) {
				wait = inflight_gather_us(f->njobs, atomic_load(&f->admitted),
							  f->jobs_head->queued_us, f->gap_us,
							  f->cfg->batch_wait_ms, qc_mono_us());
				if (f->stop || wait <= 0)
					break;
			} else {
				wait = f->jobs_head->queued_us + SPILL_MS * 1000 - qc_mono_us();
				if (f->stop || f->njobs >= FINISH_BATCH || wait <= 0)
					break;
			}
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += (long)(wait * 1000);
			ts.tv_sec += ts.tv_nsec / 1000000000L;
			ts.tv_nsec %= 1000000000L;
			pthread_cond_timedwait(&f->jobs_cv, &f->mu, &ts);
		}
		if (!(c = f->jobs_head)) {
			pthread_mutex_unlock(&f->mu);
			break;
		}
		/* the job at the head, and the answers right behind an answer */
		do {
			unlink_job(f, NULL, c);
			cs[n++] = c;
		} while (c->kind == K_DONE && n < FINISH_BATCH && (c = f->jobs_head) && c->kind == K_DONE);
		c = cs[0];
		if (c->kind == K_RESERVE)   /* and the same user's misses queued anywhere */
			n = take_reserves(f, c, cs);
		f->busy++;
		pthread_mutex_unlock(&f->mu);
		db = dbpool_get(f->pool);
		if (c->kind == K_DONE)
			finish_answers(f, cs, n, db);
		else if (c->kind == K_RESERVE)
			reserve_misses(f, cs, n, db);
		else
			run_job(f, c, db);
		dbpool_put(f->pool, db);
		log_set_request_id(NULL);
		pthread_mutex_lock(&f->mu);
		f->busy--;
		pthread_mutex_unlock(&f->mu);
	}
	return NULL;
}

/* --- the multi loop ---------------------------------------------------- */

static void attempt(struct inflight *f, struct conn *c)
{
	CURL *h = up_call_attempt(c->up);

	if (!h) {
		to_jobs(f, c, K_DONE);
		return;
	}
	curl_easy_setopt(h, CURLOPT_PRIVATE, c);
	if (curl_multi_add_handle(f->multi, h) != CURLM_OK) {
		to_jobs(f, c, K_DONE);
		return;
	}
	list_add(&f->calling, c);
}

static int leads_here(struct inflight *f, const char *fkey)
{
	for (struct conn *c = f->calling.head; c; c = c->next)
		if (c->o->caches && strcmp(c->o->fkey, fkey) == 0)
			return 1;
	for (struct conn *c = f->retrying.head; c; c = c->next)
		if (c->o->caches && strcmp(c->o->fkey, fkey) == 0)
			return 1;
	return 0;
}

static void take_inbox(struct inflight *f, long long now)
{
	struct conn *in, *c, *next;
	struct wake *w, *wn;
	int abort_all;

	pthread_mutex_lock(&f->mu);
	in = f->inbox;
	f->inbox = NULL;
	w = f->wakes;
	f->wakes = NULL;
	abort_all = f->abort_all;
	pthread_mutex_unlock(&f->mu);
	for (c = in; c; c = next) {
		next = c->next;
		if (abort_all) {
			to_jobs(f, c, K_ABORT);
		} else if (c->kind == K_CALL) {
			attempt(f, c);
		} else {
			c->local = leads_here(f, c->o->fkey);
			c->due_ms = now + (c->local ? LOCAL_CHECK_MS : CHECK_MS);
			list_add(&f->waiting, c);
		}
	}
	for (; w; w = wn) {
		wn = w->next;
		for (c = f->waiting.head; c; c = next) {
			next = c->next;
			if (strcmp(c->o->fkey, w->fkey) == 0) {
				list_del(&f->waiting, c);
				to_jobs(f, c, K_CHECK);
			}
		}
		free(w);
	}
	if (abort_all) {
		while ((c = f->calling.head)) {
			list_del(&f->calling, c);
			curl_multi_remove_handle(f->multi, up_call_handle(c->up));
			to_jobs(f, c, K_ABORT);
		}
		while ((c = f->retrying.head)) {
			list_del(&f->retrying, c);
			to_jobs(f, c, K_ABORT);
		}
		while ((c = f->waiting.head)) {
			list_del(&f->waiting, c);
			to_jobs(f, c, K_ABORT);
		}
	}
}

static void finished_transfers(struct inflight *f, long long now)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(f->multi, &left))) {
		struct conn *c = NULL;
		long long wait;
		CURLcode cc = m->data.result;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		curl_multi_remove_handle(f->multi, m->easy_handle);
		list_del(&f->calling, c);
		if ((wait = up_call_attempt_done(c->up, cc)) > 0) {
			c->due_ms = now + wait;
			list_add(&f->retrying, c);
		} else {
			to_jobs(f, c, K_DONE);
		}
	}
}

/* Fire due timers; returns ms until the next one (at most max). */
static long long timers(struct inflight *f, long long now, long long max)
{
	struct conn *c, *next;
	long long next_due = now + max;

	for (c = f->retrying.head; c; c = next) {
		next = c->next;
		if (c->due_ms <= now) {
			list_del(&f->retrying, c);
			attempt(f, c);
		} else if (c->due_ms < next_due) {
			next_due = c->due_ms;
		}
	}
	for (c = f->waiting.head; c; c = next) {
		next = c->next;
		if (c->due_ms <= now) {
			list_del(&f->waiting, c);
			to_jobs(f, c, K_CHECK);
		} else if (c->due_ms < next_due) {
			next_due = c->due_ms;
		}
	}
	return next_due - now;
}

/* curl tells the loop which of its sockets to watch for what (loop thread). */
static int on_socket(CURL *easy, curl_socket_t sock, int what, void *userp, void *socketp)
{
	struct inflight *f = userp;
	struct epoll_event ev = { 0 };

	(void)easy;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(f->ep, EPOLL_CTL_DEL, sock, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	ev.data.fd = sock;
	if (epoll_ctl(f->ep, EPOLL_CTL_MOD, sock, &ev) < 0 &&
	    (errno != ENOENT || epoll_ctl(f->ep, EPOLL_CTL_ADD, sock, &ev) < 0)) {
		log_error("inflight", "epoll_ctl on an upstream socket: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* curl's single timer (loop thread). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct inflight *f = userp;

	(void)multi;
	f->curl_due = timeout_ms < 0 ? -1 : qc_mono_ms() + timeout_ms;
	return 0;
}

/* The loop: epoll over curl's sockets and the wakeup eventfd, so a wake
 * costs what happened, not every call in flight (curl_multi_poll and
 * curl_multi_perform walk all of them: at 250 calls per process, poll()
 * was 42 % of the workers' CPU). */
static void *loop_main(void *arg)
{
	struct inflight *f = arg;
	struct epoll_event evs[64];

	for (;;) {
		long long now = qc_mono_ms(), wait;
		int running = 0, stop, n;

		take_inbox(f, now);
		if (f->curl_due >= 0 && f->curl_due <= now) {
			f->curl_due = -1;
			curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		}
		now = qc_mono_ms();
		finished_transfers(f, now);
		wait = timers(f, now, 1000);
		pthread_mutex_lock(&f->mu);
		stop = f->stop && !f->inbox && !f->wakes;
		pthread_mutex_unlock(&f->mu);
		if (stop && !f->calling.head && !f->retrying.head && !f->waiting.head)
			break;
		if (f->curl_due >= 0 && f->curl_due - now < wait)
			wait = f->curl_due - now;
		n = epoll_wait(f->ep, evs, (int)(sizeof evs / sizeof evs[0]), wait > 0 ? (int)wait : 0);
		for (int i = 0; i < n; i++) {
			int flags = 0;
			if (evs[i].data.fd == f->efd) {
				uint64_t v;
				ssize_t r = read(f->efd, &v, sizeof v);
				(void)r;
				continue;
			}
			if (evs[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(f->multi, evs[i].data.fd, flags, &running);
		}
	}
	return NULL;
}

/* --- life cycle ---------------------------------------------------------- */

struct inflight *inflight_new(const struct config *cfg, struct dbpool *pool,
			      unsigned completion_threads, inflight_respond_fn respond)
{
	struct inflight *f = calloc(1, sizeof *f);

	if (!f)
		return NULL;
	f->cfg = cfg;
	f->pool = pool;
	f->respond = respond;
	f->nthreads = completion_threads ? completion_threads : 1;
	f->gap_us = 1000000;   /* jobs are not known to come fast until they do */
	pthread_mutex_init(&f->mu, NULL);
	{   /* the jobs' wait is timed on the monotonic clock */
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&f->jobs_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	f->ep = f->efd = -1;
	f->curl_due = -1;
	if (!(f->tids = calloc(f->nthreads, sizeof *f->tids)) || !(f->multi = curl_multi_init()) ||
	    (f->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		inflight_free(f);
		return NULL;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = f->efd };
		if (epoll_ctl(f->ep, EPOLL_CTL_ADD, f->efd, &ev) < 0) {
			inflight_free(f);
			return NULL;
		}
	}
	/* many calls to one upstream: keep their connections for reuse */
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_inflight);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	return f;
}

int inflight_start(struct inflight *f)
{
	if (pthread_create(&f->loop_tid, NULL, loop_main, f) != 0)
		return -1;
	for (unsigned i = 0; i < f->nthreads; i++)
		if (pthread_create(&f->tids[i], NULL, completion_main, f) != 0) {
			f->nthreads = i;
			f->started = 1;
			inflight_stop(f, 0);
			return -1;
		}
	f->started = 1;
	return 0;
}

void inflight_stop(struct inflight *f, long long grace_ms)
{
	long long until = qc_mono_ms() + grace_ms;
	struct timespec ts = { 0, 20 * 1000000L };

	if (!f->started)
		return;
	atomic_store(&f->draining, 1);
	while (atomic_load(&f->admitted) > 0 && qc_mono_ms() < until)
		nanosleep(&ts, NULL);
	if (atomic_load(&f->admitted) > 0) {
		log_warn("inflight", "%ld generation(s) still in flight after %lld ms; releasing them",
			 (long)atomic_load(&f->admitted), grace_ms);
		pthread_mutex_lock(&f->mu);
		f->abort_all = 1;
		pthread_mutex_unlock(&f->mu);
		loop_wakeup(f);
		until = qc_mono_ms() + 10000;
		while (atomic_load(&f->admitted) > 0 && qc_mono_ms() < until)
			nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&f->mu);
	f->stop = 1;
	pthread_cond_broadcast(&f->jobs_cv);
	pthread_mutex_unlock(&f->mu);
	loop_wakeup(f);
	pthread_join(f->loop_tid, NULL);
	for (unsigned i = 0; i < f->nthreads; i++)
		pthread_join(f->tids[i], NULL);
	f->started = 0;
}

void inflight_free(struct inflight *f)
{
	if (!f)
		return;
	if (f->multi)
		curl_multi_cleanup(f->multi);
	if (f->efd >= 0)
		close(f->efd);
	if (f->ep >= 0)
		close(f->ep);
	free(f->tids);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->jobs_cv);
	free(f);
}

void inflight_gauges(struct inflight *f, long long *calls, long long *waiters)
{
	*calls = atomic_load(&f->calls);
	*waiters = atomic_load(&f->waiters);
}
