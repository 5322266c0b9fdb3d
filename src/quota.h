/*
 * quota.h - per-user token and call quotas (SPEC §2, §3).
 *
 * Pure part: UTC calendar windows, warning levels, estimates, RateLimit
 * header text.  Database part: status, dry-run check, reserve, commit and
 * release, overrides.  Admission is decided inside MariaDB in one
 * transaction per call (sql/002_quota.sql), so it is exact across workers
 * and web nodes.  Every function takes `now` so tests can set the clock.
 */
#ifndef QC_QUOTA_H
#define QC_QUOTA_H

#include <stddef.h>
#include <time.h>

#include "qc.h"

struct db;
struct db_rows;

enum quota_kind { QUOTA_DAY = 0, QUOTA_MONTH = 1, QUOTA_HOUR = 2 };
#define QUOTA_NKINDS 3

enum quota_level { QUOTA_OK = 0, QUOTA_WARNING, QUOTA_CRITICAL, QUOTA_EXCEEDED };

#define QUOTA_ID_LEN 32       /* reservation id: 128 random bits as hex */
#define QUOTA_TASK_MAX 64

struct quota_window {
	long long used;       /* tokens committed; calls for the hour window */
	long long reserved;   /* tokens held by active reservations (0: hour) */
	long long limit;      /* -1 = unlimited */
	long long remaining;  /* -1 = unlimited */
	int percent;          /* floor(100 * (used + reserved) / limit) */
	enum quota_level level;
	time_t start, resets_at;
	int over;             /* this window refused the reservation */
};

struct quota_status {
	long long user_id;
	char plan[33];
	struct quota_window w[QUOTA_NKINDS];
	enum quota_level overall;
	long long estimate;   /* of the task asked about (check, reserve) */
	int override;         /* an override replaces some of the plan's limits */
	long long inflight_cap;   /* the plan's cap of generations in flight (on QC_EUSERBUSY) */
};

/* --- pure ------------------------------------------------------------ */

/* Start of the UTC window of kind containing t. */
time_t quota_window_start(enum quota_kind kind, time_t t);
/* Start of the next window (the reset time). */
time_t quota_window_reset(enum quota_kind kind, time_t t);
/* Level for admitted of limit (limit < 0: unlimited => QUOTA_OK); *pct may be NULL. */
enum quota_level quota_level_of(long long admitted, long long limit, int *pct);
const char *quota_level_name(enum quota_level l);
/* "daily", "monthly", "hourly_calls" (JSON members). */
const char *quota_kind_name(enum quota_kind k);
/* "daily", "monthly", "hourly" (RateLimit policy names). */
const char *quota_policy_name(enum quota_kind k);
/* Fill w from raw counters. */
void quota_window_fill(struct quota_window *w, enum quota_kind kind, time_t now,
		       long long used, long long reserved, long long limit);
/* Worst level of the three windows into st->overall. */
void quota_overall(struct quota_status *st);
/*
 * Minimum estimate from the prompt rule: UTF-8 characters / 4 + max_tokens
 * (each part 0 when absent).  The database takes max(task table, this).
 */
long long quota_prompt_min(const char *prompt, size_t len, long long max_tokens);
/* Index of the limited window with the least remaining share, or -1. */
int quota_tightest(const struct quota_status *st);
/* The over window whose reset is latest (when a retry can succeed), or -1. */
int quota_refusing(const struct quota_status *st);
/* 1 if task is a usable task name: 1..64 of [A-Za-z0-9_.-]. */
int quota_task_ok(const char *task, size_t len);
/*
 * Format the IETF RateLimit fields for st into the buffers (each at least
 * 256 bytes): policy ("RateLimit-Policy"), current ("RateLimit") and the
 * older drafts' limit/remaining/reset.  Returns 0, or -1 if every window is
 * unlimited (no headers then).
 */
int quota_ratelimit_headers(const struct quota_status *st, time_t now, char *policy,
			    char *current, char *limit, char *remaining, char *reset);

/* --- database ----------------------------------------------------------- */

/* Current status of user (st->estimate: of task with min).  QC_ENOTFOUND. */
enum qc_err quota_status_get(struct db *db, long long user, const char *task,
			     long long min, time_t now, struct quota_status *st);
/*
 * Reserve the estimate of task (at least min) for user.  QC_OK fills id,
 * *expires and st; QC_EQUOTA fills st with the over windows set.
 */
enum qc_err quota_reserve(struct db *db, long long user, const char *task,
			  long long min, time_t now, long long ttl,
			  char id[QUOTA_ID_LEN + 1], time_t *expires, struct quota_status *st);
/*
 * quota_reserve that also takes the single-flight row flight (64 hex) for
 * owner (32 hex), held hold_s seconds, in the same transaction when the call
 * is admitted: *leader gets 1 if owner holds it.  flight NULL: no flight.
 * When another request leads the flight (live), QC_OK with *leader 0, id
 * empty and st zero: nothing is reserved or locked (sql/018).
 * gen: a generation, to which the plan's cap of calls in flight applies
 * (QC_EUSERBUSY past it, st->inflight_cap set).
 */
enum qc_err quota_reserve_flight(struct db *db, long long user, const char *task,
				 long long min, time_t now, long long ttl, int gen, const char *flight,
				 const char *owner, long long hold_s, char id[QUOTA_ID_LEN + 1],
				 time_t *expires, struct quota_status *st, int *leader);
/*
 * Reserve for n generations of one user at once (sql/020_batch_reserve.sql):
 * it[k] gives task, min and its flight (or NULL) and gets id, expires and
 * st.  All or nothing: *taken 1, every item reserved and leading its
 * flight; *taken 0, nothing held (the database declined the batch: a limit
 * or cap in the way, a flight row there, a window's first use, a stale
 * reservation), so reserve each with quota_reserve_flight.  Another rc: the
 * call failed (QC_EDBDOWN: it may have committed; its reservations lapse).
 */
#define QUOTA_BATCH_MAX 16
struct quota_batch_item {
	const char *task;
	long long min;
	const char *flight, *owner;
	char id[QUOTA_ID_LEN + 1];
	time_t expires;
	struct quota_status st;
};
enum qc_err quota_reserve_batch(struct db *db, long long user, time_t now, long long ttl,
				long long hold_s, struct quota_batch_item *it, unsigned n, int *taken);

/*
 * Commit (actual >= 0) or release (actual < 0) reservation id of user.
 * QC_ENOTFOUND (no such reservation of this user), QC_ECONFLICT (already
 * settled or expired: *state says which, at least 16 bytes).  *estimate may
 * be NULL.
 */
enum qc_err quota_settle(struct db *db, long long user, const char *id, long long actual,
			 time_t now, char *state, long long *estimate);
/* quota_settle that also drops flight row flight of owner in the same
 * transaction when it settles (flight NULL: none). */
enum qc_err quota_settle_flight(struct db *db, long long user, const char *id, long long actual,
				time_t now, const char *flight, const char *owner, char *state,
				long long *estimate);
/* 1 if id has the shape of a reservation id. */
int quota_id_ok(const char *id, size_t len);

/* Override limits: each -2 = keep the plan's, -1 = unlimited, >= 0 = limit.
 * expires 0 = no expiry.  QC_ENOTFOUND if no such user. */
enum qc_err quota_override_set(struct db *db, long long user, long long day,
			       long long month, long long hour, time_t expires,
			       const char *reason);
enum qc_err quota_override_clear(struct db *db, long long user);
/* Rows: tokens_per_day, tokens_per_month, calls_per_hour, expires_at, reason. */
enum qc_err quota_override_get(struct db *db, long long user, struct db_rows **out);
/* Rows of the plans table, in display order. */
enum qc_err quota_plans(struct db *db, struct db_rows **out);
/* Delete counter windows that ended at or before `before` and hold no
 * reservation (history only: current usage is never lost). */
enum qc_err quota_prune(struct db *db, time_t before, unsigned long long *deleted);
/* Expire stale reservations of every user. */
enum qc_err quota_expire_all(struct db *db, time_t now);
/* Users nearest their daily limit: id, email, plan, used+reserved, limit,
 * percent, 1 if an override is in force, its expiry (epoch; NULL: none or never). */
enum qc_err quota_nearest(struct db *db, time_t now, long long n, struct db_rows **out);
/* Overrides still in force that end within within_s of now, soonest first
 * (at most n): user_id, email, plan, tokens_per_day, tokens_per_month,
 * calls_per_hour (NULL: the plan's, -1: unlimited), expires_at, reason. */
enum qc_err quota_overrides_expiring(struct db *db, time_t now, long long within_s, long long n,
				     struct db_rows **out);
/* Users at warning or worse right now (their overall level), counted per
 * plan: rows of plan, level (1 warning, 2 critical, 3 exceeded), count; only
 * users with usage in a current window are read (GET /metrics). */
enum qc_err quota_levels_by_plan(struct db *db, time_t now, struct db_rows **out);

#endif
