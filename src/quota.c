/*
 * quota.c - quota windows and levels (pure), and the calls into the quota
 * procedures of sql/002_quota.sql.  Each database function is one round
 * trip.  Invariant kept by the database: for every window, used + reserved
 * <= limit whenever every commit had actual <= estimate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "alerts.h"
#include "db.h"
#include "quota.h"

/* --- pure ------------------------------------------------------------- */

time_t quota_window_start(enum quota_kind kind, time_t t)
{
	struct tm tm;

	switch (kind) {
	case QUOTA_HOUR:
		return t - (t % 3600 + 3600) % 3600;
	case QUOTA_DAY:
		return t - (t % 86400 + 86400) % 86400;
	case QUOTA_MONTH:
		gmtime_r(&t, &tm);
		tm.tm_mday = 1;
		tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
		return timegm(&tm);
	}
	return t;
}

time_t quota_window_reset(enum quota_kind kind, time_t t)
{
	struct tm tm;
	time_t s = quota_window_start(kind, t);

	switch (kind) {
	case QUOTA_HOUR:
		return s + 3600;
	case QUOTA_DAY:
		return s + 86400;
	case QUOTA_MONTH:
		gmtime_r(&s, &tm);
		tm.tm_mon += 1;     /* timegm normalises December + 1 */
		return timegm(&tm);
	}
	return t;
}

enum quota_level quota_level_of(long long admitted, long long limit, int *pct)
{
	long long p;

	if (limit < 0) {
		if (pct)
			*pct = 0;
		return QUOTA_OK;
	}
	if (limit == 0)
		p = 100;
	else
		p = admitted >= limit ? 100 * (admitted / limit) + (100 * (admitted % limit)) / limit
				      : (100 * admitted) / limit;
	if (p > 1000000)
		p = 1000000;
	if (pct)
		*pct = (int)p;
	if (p >= 100) return QUOTA_EXCEEDED;
	if (p >= 90) return QUOTA_CRITICAL;
	if (p >= 75) return QUOTA_WARNING;
	return QUOTA_OK;
}

const char *quota_level_name(enum quota_level l)
{
	static const char *const n[] = { "ok", "warning", "critical", "exceeded" };
	return n[l];
}

const char *quota_kind_name(enum quota_kind k)
{
	static const char *const n[] = { "daily", "monthly", "hourly_calls" };
	return n[k];
}

const char *quota_policy_name(enum quota_kind k)
{
	static const char *const n[] = { "daily", "monthly", "hourly" };
	return n[k];
}

void quota_window_fill(struct quota_window *w, enum quota_kind kind, time_t now,
		       long long used, long long reserved, long long limit)
{
	long long admitted = used + reserved;

	memset(w, 0, sizeof *w);
	w->used = used;
	w->reserved = reserved;
	w->limit = limit;
	w->remaining = limit < 0 ? -1 : (admitted >= limit ? 0 : limit - admitted);
	w->level = quota_level_of(admitted, limit, &w->percent);
	w->start = quota_window_start(kind, now);
	w->resets_at = quota_window_reset(kind, now);
}

void quota_overall(struct quota_status *st)
{
	st->overall = QUOTA_OK;
	for (int i = 0; i < QUOTA_NKINDS; i++)
		if (st->w[i].level > st->overall)
			st->overall = st->w[i].level;
}

long long quota_prompt_min(const char *prompt, size_t len, long long max_tokens)
{
	long long chars = 0;

	for (size_t i = 0; prompt && i < len; i++)
		if (((unsigned char)prompt[i] & 0xc0) != 0x80)   /* not a continuation byte */
			chars++;
	return chars / 4 + (max_tokens > 0 ? max_tokens : 0);
}

int quota_tightest(const struct quota_status *st)
{
	int best = -1;
	double best_share = 2.0;

	for (int i = 0; i < QUOTA_NKINDS; i++) {
		const struct quota_window *w = &st->w[i];
		double share;
		if (w->limit < 0)
			continue;
		share = w->limit ? (double)w->remaining / (double)w->limit : 0.0;
		if (share < best_share) {
			best_share = share;
			best = i;
		}
	}
	return best;
}

int quota_refusing(const struct quota_status *st)
{
	int best = -1;

	for (int i = 0; i < QUOTA_NKINDS; i++)
		if (st->w[i].over && (best < 0 || st->w[i].resets_at > st->w[best].resets_at))
			best = i;
	return best;
}

int quota_task_ok(const char *task, size_t len)
{
	if (len == 0 || len > QUOTA_TASK_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = task[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

int quota_ratelimit_headers(const struct quota_status *st, time_t now, char *policy,
			    char *current, char *limit, char *remaining, char *reset)
{
	size_t off = 0;
	int t = quota_tightest(st);

	policy[0] = 0;
	if (t < 0)
		return -1;
	for (int i = 0; i < QUOTA_NKINDS; i++) {
		const struct quota_window *w = &st->w[i];
		if (w->limit < 0)
			continue;
		off += (size_t)snprintf(policy + off, 256 - off, "%s\"%s\";q=%lld;w=%lld",
					off ? ", " : "", quota_policy_name((enum quota_kind)i),
					w->limit, (long long)(w->resets_at - w->start));
	}
	const struct quota_window *w = &st->w[t];
	long long secs = (long long)(w->resets_at - now);
	if (secs < 0)
		secs = 0;
	snprintf(current, 256, "\"%s\";r=%lld;t=%lld", quota_policy_name((enum quota_kind)t),
		 w->remaining, secs);
	snprintf(limit, 256, "%lld", w->limit);
	snprintf(remaining, 256, "%lld", w->remaining);
	snprintf(reset, 256, "%lld", secs);
	return 0;
}

int quota_id_ok(const char *id, size_t len)
{
	if (len != QUOTA_ID_LEN)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	return 1;
}

/* --- database ----------------------------------------------------------- */

/* One status query in two forms: with and without the estimate of a task.
 * The last column is the earliest expiry of the user's active reservations:
 * when it has passed, they are settled first (rare) and the query repeated. */
#define STATUS_HEAD \
	"SELECT u.plan," \
	" IF(o.tokens_per_day IS NULL, p.tokens_per_day, NULLIF(o.tokens_per_day, -1))," \
	" IF(o.tokens_per_month IS NULL, p.tokens_per_month, NULLIF(o.tokens_per_month, -1))," \
	" IF(o.calls_per_hour IS NULL, p.calls_per_hour, NULLIF(o.calls_per_hour, -1))," \
	" COALESCE(d.used, 0), COALESCE(d.reserved, 0), COALESCE(m.used, 0), COALESCE(m.reserved, 0)," \
	" COALESCE(h.calls, 0)," \
	" (SELECT MIN(r.expires_at) FROM quota_reservations r WHERE r.user_id = u.id AND r.state = 'active')," \
	" o.user_id IS NOT NULL,"
#define STATUS_TAIL \
	" FROM users u JOIN plans p ON p.name = u.plan" \
	" LEFT JOIN quota_overrides o ON o.user_id = u.id" \
	"   AND (o.expires_at IS NULL OR o.expires_at > ?)" \
	" LEFT JOIN quota_counters d ON d.user_id = u.id AND d.window_kind = 'day' AND d.window_start = ?" \
	" LEFT JOIN quota_counters m ON m.user_id = u.id AND m.window_kind = 'month' AND m.window_start = ?" \
	" LEFT JOIN quota_counters h ON h.user_id = u.id AND h.window_kind = 'hour' AND h.window_start = ?" \
	" WHERE u.id = ?"
static const char SQL_STATUS[] = STATUS_HEAD " 0" STATUS_TAIL;
static const char SQL_STATUS_EST[] = STATUS_HEAD
	" GREATEST(COALESCE((SELECT tokens FROM task_estimates WHERE task = ?),"
	"   (SELECT tokens FROM task_estimates WHERE task = 'default'), 1500), ?)" STATUS_TAIL;
static const char SQL_EXPIRE_USER[] = "CALL qc_expire_user(?, ?)";
static const char SQL_RESERVE[] = "CALL qc_reserve(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char SQL_SETTLE[] = "CALL qc_settle(?, ?, ?, ?, ?, ?)";
static const char SQL_USER_PLAN[] = "SELECT plan FROM users WHERE id = ?";
static const char SQL_OVR_SET[] =
	"INSERT INTO quota_overrides (user_id, tokens_per_day, tokens_per_month, calls_per_hour,"
	" expires_at, reason) VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
	" tokens_per_day = VALUES(tokens_per_day), tokens_per_month = VALUES(tokens_per_month),"
	" calls_per_hour = VALUES(calls_per_hour), expires_at = VALUES(expires_at),"
	" reason = VALUES(reason), created_at = CURRENT_TIMESTAMP";
static const char SQL_OVR_DEL[] = "DELETE FROM quota_overrides WHERE user_id = ?";
static const char SQL_OVR_GET[] =
	"SELECT tokens_per_day, tokens_per_month, calls_per_hour, expires_at, reason"
	" FROM quota_overrides WHERE user_id = ?";
static const char SQL_PLANS[] =
	"SELECT name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
	" session_ttl_seconds, content_ttl_seconds FROM plans ORDER BY sort_order, name";
/* only windows that ENDED before the cut (a month ends at most 31 days after
 * its start), and never one that still holds reserved tokens */
static const char SQL_PRUNE[] =
	"DELETE FROM quota_counters WHERE reserved = 0 AND ("
	" (window_kind = 'hour' AND window_start + 3600 <= ?)"
	" OR (window_kind = 'day' AND window_start + 86400 <= ?)"
	" OR (window_kind = 'month' AND window_start + 31 * 86400 <= ?))";
static const char SQL_EXPIRE_ALL[] = "CALL qc_expire_all(?)";
static const char SQL_NEAREST[] =
	"SELECT id, email, plan, admitted, lim, FLOOR(100 * admitted / lim), has_o, o_exp FROM ("
	" SELECT u.id, u.email, u.plan, c.used + c.reserved AS admitted,"
	"  IF(o.tokens_per_day IS NULL, p.tokens_per_day, NULLIF(o.tokens_per_day, -1)) AS lim,"
	"  o.user_id IS NOT NULL AS has_o, o.expires_at AS o_exp"
	" FROM quota_counters c JOIN users u ON u.id = c.user_id JOIN plans p ON p.name = u.plan"
	" LEFT JOIN quota_overrides o ON o.user_id = u.id AND (o.expires_at IS NULL OR o.expires_at > ?)"
	" WHERE c.window_kind = 'day' AND c.window_start = ?) x"
	" WHERE lim > 0 ORDER BY admitted / lim DESC, id LIMIT ?";

static long long cell_limit_at(const struct db_rows *r, unsigned row, unsigned col)
{
	return db_cell_null(r, row, col) ? -1 : db_cell_ll(r, row, col);
}

static long long cell_limit(const struct db_rows *r, unsigned col)
{
	return cell_limit_at(r, 0, col);
}

enum qc_err quota_status_get(struct db *db, long long user, const char *task,
			     long long min, time_t now, struct quota_status *st)
{
	time_t day = quota_window_start(QUOTA_DAY, now), month = quota_window_start(QUOTA_MONTH, now);
	time_t hour = quota_window_start(QUOTA_HOUR, now);
	struct db_val p[7];
	unsigned np = 0;
	struct db_rows *r = NULL;
	enum qc_err rc;

	memset(st, 0, sizeof *st);
	if (task) {
		p[np++] = DB_STR(task);
		p[np++] = DB_INT(min);
	}
	p[np++] = DB_INT(now);
	p[np++] = DB_INT(day);
	p[np++] = DB_INT(month);
	p[np++] = DB_INT(hour);
	p[np++] = DB_INT(user);
	for (int pass = 0;; pass++) {
		if ((rc = db_query(db, task ? SQL_STATUS_EST : SQL_STATUS, p, np, &r)) != QC_OK)
			return rc;
		if (r->nrows != 1) {
			db_rows_free(r);
			return QC_ENOTFOUND;
		}
		/* a reservation past its expiry: give its tokens back, read again */
		if (pass == 0 && !db_cell_null(r, 0, 9) && db_cell_ll(r, 0, 9) <= (long long)now) {
			struct db_val e[2] = { DB_INT(user), DB_INT(now) };
			db_rows_free(r);
			r = NULL;
			if ((rc = db_exec(db, SQL_EXPIRE_USER, e, 2, NULL)) != QC_OK)
				return rc;
			continue;
		}
		break;
	}
	st->user_id = user;
	snprintf(st->plan, sizeof st->plan, "%s", db_cell(r, 0, 0));
	quota_window_fill(&st->w[QUOTA_DAY], QUOTA_DAY, now, db_cell_ll(r, 0, 4),
			  db_cell_ll(r, 0, 5), cell_limit(r, 1));
	quota_window_fill(&st->w[QUOTA_MONTH], QUOTA_MONTH, now, db_cell_ll(r, 0, 6),
			  db_cell_ll(r, 0, 7), cell_limit(r, 2));
	quota_window_fill(&st->w[QUOTA_HOUR], QUOTA_HOUR, now, db_cell_ll(r, 0, 8), 0,
			  cell_limit(r, 3));
	st->override = (int)db_cell_ll(r, 0, 10);
	st->estimate = db_cell_ll(r, 0, 11);
	quota_overall(st);
	db_rows_free(r);
	alerts_observe(st, now);   /* a level reached by a commit shows here first */
	return QC_OK;
}

enum qc_err quota_reserve(struct db *db, long long user, const char *task,
			  long long min, time_t now, long long ttl,
			  char id[QUOTA_ID_LEN + 1], time_t *expires, struct quota_status *st)
{
	return quota_reserve_flight(db, user, task, min, now, ttl, 0, NULL, NULL, 0, id, expires, st, NULL);
}

/* The status in row `row` of a reserve's answer (qc_reserve's columns). */
static void reserve_status(const struct db_rows *r, unsigned row, long long user, time_t now,
			   struct quota_status *st)
{
	st->user_id = user;
	st->estimate = db_cell_ll(r, row, 1);
	quota_window_fill(&st->w[QUOTA_DAY], QUOTA_DAY, now, db_cell_ll(r, row, 2),
			  db_cell_ll(r, row, 3), cell_limit_at(r, row, 7));
	quota_window_fill(&st->w[QUOTA_MONTH], QUOTA_MONTH, now, db_cell_ll(r, row, 4),
			  db_cell_ll(r, row, 5), cell_limit_at(r, row, 8));
	quota_window_fill(&st->w[QUOTA_HOUR], QUOTA_HOUR, now, db_cell_ll(r, row, 6), 0,
			  cell_limit_at(r, row, 9));
	st->w[QUOTA_DAY].over = (int)db_cell_ll(r, row, 10);
	st->w[QUOTA_MONTH].over = (int)db_cell_ll(r, row, 11);
	st->w[QUOTA_HOUR].over = (int)db_cell_ll(r, row, 12);
	quota_overall(st);
	snprintf(st->plan, sizeof st->plan, "%s", db_cell(r, row, 13));
}

enum qc_err quota_reserve_flight(struct db *db, long long user, const char *task,
				 long long min, time_t now, long long ttl, int gen, const char *flight,
				 const char *owner, long long hold_s, char id[QUOTA_ID_LEN + 1],
				 time_t *expires, struct quota_status *st, int *leader)
{
	time_t day = quota_window_start(QUOTA_DAY, now), month = quota_window_start(QUOTA_MONTH, now);
	time_t hour = quota_window_start(QUOTA_HOUR, now);
	struct db_rows *r = NULL;
	struct db_val p[13];
	enum qc_err rc;
	const char *outcome;

	memset(st, 0, sizeof *st);
	if (leader)
		*leader = 0;
	if (qc_random_hex(id, QUOTA_ID_LEN / 2) < 0)
		return QC_EIO;   /* no entropy: never hand out guessable ids */
	*expires = now + ttl;
	p[0] = DB_STR(id);
	p[1] = DB_INT(user);
	p[2] = DB_STR(task);
	p[3] = DB_INT(min);
	p[4] = DB_INT(now);
	p[5] = DB_INT(day);
	p[6] = DB_INT(month);
	p[7] = DB_INT(hour);
	p[8] = DB_INT(*expires);
	p[9] = flight ? DB_STR(flight) : DB_NULLV;
	p[10] = owner ? DB_STR(owner) : DB_NULLV;
	p[11] = DB_INT(hold_s);
	p[12] = DB_INT(gen ? 1 : 0);
	if ((rc = db_query(db, SQL_RESERVE, p, 13, &r)) != QC_OK)
		return rc;
	if (r->nrows != 1 || r->ncols != 15) {
		db_rows_free(r);
		return QC_EDB;
	}
	outcome = db_cell(r, 0, 0);
	if (strcmp(outcome, "nouser") == 0) {
		db_rows_free(r);
		return QC_ENOTFOUND;
	}
	if (strcmp(outcome, "wait") == 0) {   /* another request leads the flight */
		db_rows_free(r);
		id[0] = 0;
		return QC_OK;
	}
	rc = strcmp(outcome, "ok") == 0 ? QC_OK : strcmp(outcome, "busy") == 0 ? QC_EUSERBUSY : QC_EQUOTA;
	reserve_status(r, 0, user, now, st);
	if (leader && rc == QC_OK)
		*leader = db_cell_ll(r, 0, 14) == 1;
	if (rc == QC_EUSERBUSY)
		st->inflight_cap = db_cell_ll(r, 0, 14);
	db_rows_free(r);
	alerts_observe(st, now);   /* a level crossing: queued, posted off this path */
	if (rc != QC_OK)
		id[0] = 0;
	return rc;
}

enum qc_err quota_reserve_batch(struct db *db, long long user, time_t now, long long ttl,
				long long hold_s, struct quota_batch_item *it, unsigned n, int *taken)
{
	static const char sql[] = "CALL qc_reserve_batch(?, ?, ?, ?, ?, ?, ?)";
	json_object *doc;
	const char *text;
	size_t len;
	struct db_rows *r = NULL;
	enum qc_err rc = QC_OK;

	*taken = 0;
	if (n == 0)
		return QC_OK;
	if (n > QUOTA_BATCH_MAX)
		return QC_EINPUT;
	if (!(doc = json_object_new_array()))
		return QC_ENOMEM;
	for (unsigned k = 0; k < n && rc == QC_OK; k++) {
		json_object *e = json_object_new_object();
		if (qc_random_hex(it[k].id, QUOTA_ID_LEN / 2) < 0)
			rc = QC_EIO;   /* no entropy: never hand out guessable ids */
		it[k].expires = now + ttl;
		json_object_object_add(e, "id", json_object_new_string(it[k].id));
		json_object_object_add(e, "task", json_object_new_string(it[k].task));
		json_object_object_add(e, "min", json_object_new_int64(it[k].min));
		json_object_object_add(e, "exp", json_object_new_int64((long long)it[k].expires));
		json_object_object_add(e, "fk", it[k].flight ? json_object_new_string(it[k].flight) : NULL);
		json_object_object_add(e, "ow", it[k].owner ? json_object_new_string(it[k].owner) : NULL);
		json_object_array_add(doc, e);
	}
	if (rc == QC_OK) {
		struct db_val p[7];
		text = json_object_to_json_string_length(doc, JSON_C_TO_STRING_PLAIN, &len);
		p[0] = DB_BLOB(text, len);
		p[1] = DB_INT(user);
		p[2] = DB_INT(now);
		p[3] = DB_INT(quota_window_start(QUOTA_DAY, now));
		p[4] = DB_INT(quota_window_start(QUOTA_MONTH, now));
		p[5] = DB_INT(quota_window_start(QUOTA_HOUR, now));
		p[6] = DB_INT(hold_s);
		rc = db_query(db, sql, p, 7, &r);
	}
	json_object_put(doc);
	if (rc != QC_OK)
		return rc;
	if (r->nrows == n && r->ncols == 15 && strcmp(db_cell(r, 0, 0), "ok") == 0) {
		for (unsigned k = 0; k < n; k++)
			reserve_status(r, k, user, now, &it[k].st);
		alerts_observe(&it[n - 1].st, now);   /* the status after the whole batch */
		*taken = 1;
	} else if (!(r->nrows == 1 && strcmp(db_cell(r, 0, 0), "fallback") == 0)) {
		rc = QC_EDB;
	}
	db_rows_free(r);
	return rc;
}

enum qc_err quota_settle(struct db *db, long long user, const char *id, long long actual,
			 time_t now, char *state, long long *estimate)
{
	return quota_settle_flight(db, user, id, actual, now, NULL, NULL, state, estimate);
}

enum qc_err quota_settle_flight(struct db *db, long long user, const char *id, long long actual,
				time_t now, const char *flight, const char *owner, char *state,
				long long *estimate)
{
	struct db_val p[6] = { DB_STR(id), DB_INT(user),
			       actual >= 0 ? DB_INT(actual) : DB_NULLV, DB_INT(now),
			       flight ? DB_STR(flight) : DB_NULLV, owner ? DB_STR(owner) : DB_NULLV };
	struct db_rows *r = NULL;
	enum qc_err rc;
	const char *outcome;

	state[0] = 0;
	if (!quota_id_ok(id, strlen(id)))
		return QC_ENOTFOUND;
	if ((rc = db_query(db, SQL_SETTLE, p, 6, &r)) != QC_OK)
		return rc;
	/* reserved through another database node a moment ago: look again,
	 * once this node has applied what the cluster committed */
	if (r->nrows == 1 && strcmp(db_cell(r, 0, 0), "notfound") == 0 && db_galera(db)) {
		db_rows_free(r);
		if ((rc = db_query_synced(db, SQL_SETTLE, p, 6, &r)) != QC_OK)
			return rc;
	}
	if (r->nrows != 1) {
		db_rows_free(r);
		return QC_EDB;
	}
	outcome = db_cell(r, 0, 0);
	if (estimate)
		*estimate = db_cell_ll(r, 0, 1);
	snprintf(state, 16, "%s", outcome);
	if (strcmp(outcome, "ok") == 0 || strcmp(outcome, "late") == 0) {
		/* 'late': a commit after the expiry, recorded all the same */
		snprintf(state, 16, "%s", actual >= 0 ? "committed" : "released");
		rc = QC_OK;
	} else if (strcmp(outcome, "notfound") == 0) {
		rc = QC_ENOTFOUND;
	} else {
		rc = QC_ECONFLICT;
	}
	db_rows_free(r);
	return rc;
}

enum qc_err quota_override_set(struct db *db, long long user, long long day,
			       long long month, long long hour, time_t expires,
			       const char *reason)
{
	struct db_rows *r = NULL;
	struct db_val p[6];
	enum qc_err rc;

	p[0] = DB_INT(user);
	if ((rc = db_query(db, SQL_USER_PLAN, p, 1, &r)) != QC_OK)
		return rc;
	int found = r->nrows == 1;
	db_rows_free(r);
	if (!found)
		return QC_ENOTFOUND;
	p[1] = day < -1 ? DB_NULLV : DB_INT(day);
	p[2] = month < -1 ? DB_NULLV : DB_INT(month);
	p[3] = hour < -1 ? DB_NULLV : DB_INT(hour);
	p[4] = expires > 0 ? DB_INT(expires) : DB_NULLV;
	p[5] = DB_STR(reason ? reason : "");
	return db_exec(db, SQL_OVR_SET, p, 6, NULL);
}

enum qc_err quota_override_clear(struct db *db, long long user)
{
	struct db_val p[1] = { DB_INT(user) };
	unsigned long long n = 0;
	enum qc_err rc = db_exec(db, SQL_OVR_DEL, p, 1, &n);

	if (rc != QC_OK)
		return rc;
	return n ? QC_OK : QC_ENOTFOUND;
}

enum qc_err quota_override_get(struct db *db, long long user, struct db_rows **out)
{
	struct db_val p[1] = { DB_INT(user) };
	return db_query(db, SQL_OVR_GET, p, 1, out);
}

enum qc_err quota_plans(struct db *db, struct db_rows **out)
{
	return db_query(db, SQL_PLANS, NULL, 0, out);
}

enum qc_err quota_prune(struct db *db, time_t before, unsigned long long *deleted)
{
	struct db_val p[3] = { DB_INT(before), DB_INT(before), DB_INT(before) };
	return db_exec(db, SQL_PRUNE, p, 3, deleted);
}

enum qc_err quota_expire_all(struct db *db, time_t now)
{
	struct db_val p[1] = { DB_INT(now) };
	return db_exec(db, SQL_EXPIRE_ALL, p, 1, NULL);
}

enum qc_err quota_overrides_expiring(struct db *db, time_t now, long long within_s, long long n,
				     struct db_rows **out)
{
	static const char sql[] =
		"SELECT o.user_id, u.email, u.plan, o.tokens_per_day, o.tokens_per_month, o.calls_per_hour,"
		" o.expires_at, o.reason FROM quota_overrides o JOIN users u ON u.id = o.user_id"
		" WHERE o.expires_at > ? AND o.expires_at <= ? ORDER BY o.expires_at, o.user_id LIMIT ?";
	struct db_val p[3] = { DB_INT(now), DB_INT(now + within_s), DB_INT(n) };
	return db_query(db, sql, p, 3, out);
}

enum qc_err quota_nearest(struct db *db, time_t now, long long n, struct db_rows **out)
{
	struct db_val p[3] = { DB_INT(now), DB_INT(quota_window_start(QUOTA_DAY, now)), DB_INT(n) };
	return db_query(db, SQL_NEAREST, p, 3, out);
}

/* The level of one counter row, as quota_level_of() decides it (limit NULL:
 * unlimited = ok; floor(100 * a / l) >= 90 is 100 * a >= 90 * l). */
#define ROW_ADMITTED "IF(c.window_kind = 'hour', c.calls, c.used + c.reserved)"
#define ROW_LIMIT \
	"CASE c.window_kind" \
	" WHEN 'day' THEN IF(o.tokens_per_day IS NULL, p.tokens_per_day, NULLIF(o.tokens_per_day, -1))" \
	" WHEN 'month' THEN IF(o.tokens_per_month IS NULL, p.tokens_per_month, NULLIF(o.tokens_per_month, -1))" \
	" ELSE IF(o.calls_per_hour IS NULL, p.calls_per_hour, NULLIF(o.calls_per_hour, -1)) END"
static const char SQL_LEVELS[] =
	"SELECT plan, lvl, COUNT(*) FROM ("
	" SELECT u.id, u.plan, MAX(CASE"
	"  WHEN (" ROW_LIMIT ") IS NULL THEN 0"
	"  WHEN " ROW_ADMITTED " >= (" ROW_LIMIT ") THEN 3"
	"  WHEN 100 * " ROW_ADMITTED " >= 90 * (" ROW_LIMIT ") THEN 2"
	"  WHEN 100 * " ROW_ADMITTED " >= 75 * (" ROW_LIMIT ") THEN 1 ELSE 0 END) AS lvl"
	" FROM quota_counters c JOIN users u ON u.id = c.user_id JOIN plans p ON p.name = u.plan"
	" LEFT JOIN quota_overrides o ON o.user_id = u.id AND (o.expires_at IS NULL OR o.expires_at > ?)"
	" WHERE c.window_start IN (?, ?, ?) AND ((c.window_kind = 'day' AND c.window_start = ?)"
	"  OR (c.window_kind = 'month' AND c.window_start = ?) OR (c.window_kind = 'hour' AND c.window_start = ?))"
	" GROUP BY u.id, u.plan) x WHERE lvl > 0 GROUP BY plan, lvl ORDER BY plan, lvl";

enum qc_err quota_levels_by_plan(struct db *db, time_t now, struct db_rows **out)
{
	long long d = quota_window_start(QUOTA_DAY, now), m = quota_window_start(QUOTA_MONTH, now);
	long long h = quota_window_start(QUOTA_HOUR, now);
	struct db_val p[7] = { DB_INT(now), DB_INT(d), DB_INT(m), DB_INT(h), DB_INT(d), DB_INT(m), DB_INT(h) };

	return db_query(db, SQL_LEVELS, p, 7, out);
}
