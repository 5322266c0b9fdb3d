/*
 * alerts.h - the webhook on a user's quota level crossing (SPEC §14).
 *
 * A crossing is a window of a user (kind + start: one window instance)
 * reaching warning, critical or exceeded while it is the user's worst
 * window, i.e. the overall level rose to it.  Each crossing is posted once
 * (JSON, libcurl) to alert_webhook_url, off the request path, signed with
 * alert_webhook_secret when one is set (alerts_signature):
 *
 *   request thread: alerts_observe() looks at the levels a reservation or a
 *     status read has already computed (no database round trip), and queues
 *     a crossing it has not seen yet in this process (memory only);
 *   sender thread (one per worker process): claims queued crossings in
 *     alert_crossings (sql/012_alerts.sql: a row per crossing, the primary
 *     key makes one claim win on any number of workers and web nodes), then
 *     takes due rows under a lease, posts them, marks them sent on a 2xx or
 *     retries with exponential backoff up to alert_webhook_attempts.
 *
 * Shared state: the queue, the "seen" table and the stop flag, all under
 * one mutex (a leaf lock: nothing else is taken while it is held); the
 * on/off flag is an atomic written once before the sender starts.  The
 * configuration and the pool are borrowed and must outlive alerts_stop().
 * Without alerts_start() (the CLI, tests) alerts_observe() does nothing.
 */
#ifndef QC_ALERTS_H
#define QC_ALERTS_H

#include <stddef.h>
#include <time.h>

#include "quota.h"

struct config;
struct db;
struct dbpool;

struct alert_crossing {
	long long user_id;
	enum quota_kind kind;
	time_t window_start;
	enum quota_level level;       /* QUOTA_WARNING .. QUOTA_EXCEEDED */
	char plan[33];
	long long used;               /* used + reserved tokens; calls for the hour */
	long long limit;
	time_t at;                    /* the request's clock when it was seen */
};

/* --- pure ------------------------------------------------------------- */

/*
 * The crossings st stands for, into out: every limited window whose level
 * is the overall level, when that is warning or worse (0 to 3 of them).
 * Returns how many.  This function can't fail.
 */
int alerts_crossings(const struct quota_status *st, time_t now,
		     struct alert_crossing out[QUOTA_NKINDS]);

/* Delay before attempt n + 1 after n failed attempts (n >= 1): base_ms
 * doubled each time, at most 5 minutes, plus up to 10 % jitter from rnd
 * (0..RAND_MAX).  This function can't fail. */
long long alerts_backoff_ms(long long base_ms, int n, int rnd);

/* Delivery id of c: "<user>:<window>:<window start>:<level>" (at most 96 bytes). */
void alerts_id(const struct alert_crossing *c, char out[96]);

/*
 * The JSON body posted for c on attempt n (json-c): event, id, user_id,
 * plan, window, level, used, limit, percent, window_start, resets_at, time,
 * attempt.  Returns a new string (caller frees), NULL on ENOMEM.
 */
char *alerts_payload(const struct alert_crossing *c, int attempt);

/*
 * The X-Quotacache-Signature value of body sent at unix time t, signed with
 * secret: "t=T,v1=HEX", HEX the HMAC-SHA256 (libcrypto) of "T." followed by
 * the body (a receiver recomputes it and refuses old T against replays).
 * Returns 0, or -1 if libcrypto fails.
 */
int alerts_signature(const char *secret, long long t, const char *body, char out[96]);

/* --- housekeeping -------------------------------------------------------- */

/* Delete delivered or given-up crossings of windows that began more than 32
 * days before now (history only), as sql/012's hourly EVENT does where the
 * event scheduler is off (quotacachectl quota prune-alerts).  *deleted gets
 * the row count.  QC_OK or the database error. */
enum qc_err alerts_prune(struct db *db, time_t now, unsigned long long *deleted);

/* --- the process's sender ----------------------------------------------- */

/*
 * Start the sender thread when cfg->alert_webhook_url is set (otherwise do
 * nothing and return 0).  cfg and pool are borrowed.  Returns 0, or -1 when
 * the thread cannot be started.
 */
int alerts_start(const struct config *cfg, struct dbpool *pool);

/* Record the crossings of a freshly computed status of st->user_id (any
 * thread; cheap: no database, no I/O, a short lock only when a window is at
 * warning or worse).  Does nothing while the sender is not running. */
void alerts_observe(const struct quota_status *st, time_t now);

/* Stop the sender: queued crossings are claimed (one try), a post in
 * progress is cut short, rows left pending are delivered by another worker
 * or after a restart.  No-op if not started. */
void alerts_stop(void);

#endif
