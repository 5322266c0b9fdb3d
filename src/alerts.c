/*
 * alerts.c - the webhook on a user's quota level crossing: which windows a
 * status stands for (pure), the JSON body (json-c), and the worker's sender
 * thread, which claims crossings in alert_crossings and posts them (libcurl).
 * Invariants: a crossing row is inserted once (primary key + NOT EXISTS of
 * the same window at this level or higher); a row is posted only by the
 * holder of its unexpired lease, and marked sent only with that lease.
 * Shared state (struct sender S): see alerts.h.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <mysql.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "alerts.h"
#include "db.h"
#include "dbpool.h"
#include "log.h"
#include "metrics.h"
#include "settings.h"
#include "upstream.h"

#define QUEUE_CAP 1024         /* crossings seen, not yet claimed */
#define SEEN_SLOTS 4096        /* crossings this process handled (direct-mapped) */
#define BATCH 8                /* rows taken under one lease */
#define SWEEP_MS 5000          /* look for rows of other workers this often */
#define BACKOFF_CAP_MS 300000

/* --- pure ------------------------------------------------------------- */

int alerts_crossings(const struct quota_status *st, time_t now,
		     struct alert_crossing out[QUOTA_NKINDS])
{
	int n = 0;

	if (st->overall < QUOTA_WARNING)
		return 0;
	for (int i = 0; i < QUOTA_NKINDS; i++) {
		const struct quota_window *w = &st->w[i];
		struct alert_crossing *c = &out[n];
		if (w->limit < 0 || w->level != st->overall)
			continue;
		memset(c, 0, sizeof *c);
		c->user_id = st->user_id;
		c->kind = (enum quota_kind)i;
		c->window_start = w->start;
		c->level = w->level;
		snprintf(c->plan, sizeof c->plan, "%s", st->plan);
		c->used = w->used + w->reserved;
		c->limit = w->limit;
		c->at = now;
		n++;
	}
	return n;
}

long long alerts_backoff_ms(long long base_ms, int n, int rnd)
{
	long long d = base_ms < 1 ? 1 : base_ms;

	for (int i = 1; i < n && d < BACKOFF_CAP_MS; i++)
		d *= 2;
	if (d > BACKOFF_CAP_MS)
		d = BACKOFF_CAP_MS;
	return d + (long long)((double)d * 0.1 * ((double)(rnd < 0 ? 0 : rnd) / ((double)RAND_MAX + 1.0)));
}

void alerts_id(const struct alert_crossing *c, char out[96])
{
	snprintf(out, 96, "%lld:%s:%lld:%s", c->user_id, quota_kind_name(c->kind),
		 (long long)c->window_start, quota_level_name(c->level));
}

char *alerts_payload(const struct alert_crossing *c, int attempt)
{
	json_object *o = json_object_new_object();
	char id[96], ws[32], reset[32], at[32];
	char *out = NULL;
	int pct = 0;
	int bad = 0;

	if (!o)
		return NULL;
	alerts_id(c, id);
	qc_iso8601((long long)c->window_start, ws);
	qc_iso8601((long long)quota_window_reset(c->kind, c->window_start), reset);
	qc_iso8601((long long)c->at, at);
	quota_level_of(c->used, c->limit, &pct);
	bad |= json_object_object_add(o, "event", json_object_new_string("quota.level_crossing"));
	bad |= json_object_object_add(o, "id", json_object_new_string(id));
	bad |= json_object_object_add(o, "user_id", json_object_new_int64(c->user_id));
	bad |= json_object_object_add(o, "plan", json_object_new_string(c->plan));
	bad |= json_object_object_add(o, "window", json_object_new_string(quota_kind_name(c->kind)));
	bad |= json_object_object_add(o, "level", json_object_new_string(quota_level_name(c->level)));
	bad |= json_object_object_add(o, "used", json_object_new_int64(c->used));
	bad |= json_object_object_add(o, "limit", json_object_new_int64(c->limit));
	bad |= json_object_object_add(o, "percent", json_object_new_int(pct));
	bad |= json_object_object_add(o, "window_start", json_object_new_string(ws));
	bad |= json_object_object_add(o, "resets_at", json_object_new_string(reset));
	bad |= json_object_object_add(o, "time", json_object_new_string(at));
	bad |= json_object_object_add(o, "attempt", json_object_new_int(attempt));
	if (!bad) {
		const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		out = s ? strdup(s) : NULL;
	}
	json_object_put(o);
	return out;
}

/* --- the sender --------------------------------------------------------- */

struct seen { long long user; long long start; int kind, level, set; };

static struct sender {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	struct alert_crossing queue[QUEUE_CAP];
	unsigned nq;
	struct seen seen[SEEN_SLOTS];
	int stopping;
	unsigned long dropped;
	/* written before the thread starts, then read-only */
	const struct config *cfg;
	struct dbpool *pool;
	pthread_t tid;
} S = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static atomic_int running;     /* observe() queues only while 1 */
static atomic_int cut_short;   /* a post in progress gives up (stopping) */

static const char *const kind_sql[] = { "day", "month", "hour" };

static const char SQL_CLAIM[] =
	"INSERT IGNORE INTO alert_crossings (user_id, window_kind, window_start, level, plan, used, lim,"
	" crossed_at, next_at_ms) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? FROM DUAL WHERE NOT EXISTS"
	" (SELECT 1 FROM alert_crossings WHERE user_id = ? AND window_kind = ? AND window_start = ?"
	" AND level >= ?)";
static const char SQL_PICK[] =
	"UPDATE alert_crossings SET lease = ?, lease_until_ms = ?, attempts = attempts + 1"
	" WHERE state = 'pending' AND next_at_ms <= ? AND lease_until_ms < ?"
	" ORDER BY next_at_ms LIMIT 8";
static const char SQL_LEASED[] =
	"SELECT user_id, window_kind, window_start, level, plan, used, lim, crossed_at, attempts"
	" FROM alert_crossings WHERE lease = ? AND state = 'pending'";
static const char SQL_SENT[] =
	"UPDATE alert_crossings SET state = 'sent', sent_at = ?, lease = NULL, lease_until_ms = 0,"
	" last_error = '' WHERE user_id = ? AND window_kind = ? AND window_start = ? AND level = ?"
	" AND lease = ?";
static const char SQL_RETRY[] =
	"UPDATE alert_crossings SET state = IF(attempts >= ?, 'failed', 'pending'), next_at_ms = ?,"
	" lease = NULL, lease_until_ms = 0, last_error = ? WHERE user_id = ? AND window_kind = ?"
	" AND window_start = ? AND level = ? AND lease = ?";
static const char SQL_UNLEASE[] =
	"UPDATE alert_crossings SET lease = NULL, lease_until_ms = 0, attempts = attempts - 1"
	" WHERE lease = ? AND state = 'pending'";
static const char SQL_NEXT[] =
	"SELECT MIN(GREATEST(next_at_ms, lease_until_ms)) FROM alert_crossings WHERE state = 'pending'";

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned seen_slot(const struct alert_crossing *c)
{
	unsigned long long h = (unsigned long long)c->user_id * 0x9e3779b97f4a7c15ULL;

	h ^= (unsigned long long)c->window_start + 0x632be59bd9b4e019ULL + (h << 6) + (h >> 2);
	h ^= (unsigned long long)(c->kind * 4 + c->level) * 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 31;
	return (unsigned)(h % SEEN_SLOTS);
}

static int seen_is(const struct seen *s, const struct alert_crossing *c)
{
	return s->set && s->user == c->user_id && s->start == (long long)c->window_start &&
	       s->kind == (int)c->kind && s->level == (int)c->level;
}

void alerts_observe(const struct quota_status *st, time_t now)
{
	struct alert_crossing c[QUOTA_NKINDS];
	int n, queued = 0;

	if (!atomic_load(&running) || st->overall < QUOTA_WARNING)
		return;
	if ((n = alerts_crossings(st, now, c)) == 0)
		return;
	pthread_mutex_lock(&S.mu);
	for (int i = 0; i < n; i++) {
		struct seen *s = &S.seen[seen_slot(&c[i])];
		if (seen_is(s, &c[i]))
			continue;
		if (S.nq == QUEUE_CAP) {
			S.dropped++;
			continue;
		}
		*s = (struct seen){ c[i].user_id, (long long)c[i].window_start, (int)c[i].kind,
				    (int)c[i].level, 1 };
		S.queue[S.nq++] = c[i];
		queued = 1;
	}
	if (queued)
		pthread_cond_signal(&S.cv);
	pthread_mutex_unlock(&S.mu);
}

/* Put back crossings whose claim failed; those without room are forgotten
 * (a later observation queues them again).  Under no lock on entry. */
static void requeue(const struct alert_crossing *c, unsigned n)
{
	pthread_mutex_lock(&S.mu);
	for (unsigned i = 0; i < n; i++) {
		if (S.nq < QUEUE_CAP) {
			S.queue[S.nq++] = c[i];
		} else {
			struct seen *s = &S.seen[seen_slot(&c[i])];
			if (seen_is(s, &c[i]))
				s->set = 0;
			S.dropped++;
		}
	}
	pthread_mutex_unlock(&S.mu);
}

/* Claim each crossing; returns how many were new, or -1 when the database
 * failed (the unclaimed rest is queued again). */
static int claim(const struct alert_crossing *c, unsigned n)
{
	struct db *db = dbpool_get(S.pool);
	long long t = now_ms();
	int fresh = 0;

	for (unsigned i = 0; i < n; i++) {
		struct db_val p[13] = {
			DB_INT(c[i].user_id), DB_STR(kind_sql[c[i].kind]), DB_INT(c[i].window_start),
			DB_INT(c[i].level), DB_STR(c[i].plan), DB_INT(c[i].used), DB_INT(c[i].limit),
			DB_INT(c[i].at), DB_INT(t),
			DB_INT(c[i].user_id), DB_STR(kind_sql[c[i].kind]), DB_INT(c[i].window_start),
			DB_INT(c[i].level),
		};
		unsigned long long affected = 0;
		if (db_exec(db, SQL_CLAIM, p, 13, &affected) != QC_OK) {
			dbpool_put(S.pool, db);
			log_warn("alerts", "claiming %u crossing(s) failed; kept for the next try", n - i);
			requeue(c + i, n - i);
			return -1;
		}
		if (affected == 1) {
			char labels[32];
			snprintf(labels, sizeof labels, "level=\"%s\"", quota_level_name(c[i].level));
			metrics_count("qc_alert_crossings_total", labels, 1);
			log_info("alerts", "user %lld: %s window at %s", c[i].user_id,
				 quota_kind_name(c[i].kind), quota_level_name(c[i].level));
			fresh++;
		}
	}
	dbpool_put(S.pool, db);
	return fresh;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)ud;
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return atomic_load(&cut_short) ? 1 : 0;
}

int alerts_signature(const char *secret, long long t, const char *body, char out[96])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char head[32];
	int n = snprintf(head, sizeof head, "%lld.", t);
	size_t blen = strlen(body);
	unsigned char *msg = malloc((size_t)n + blen);

	if (!msg)
		return -1;
	memcpy(msg, head, (size_t)n);
	memcpy(msg + n, body, blen);
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, (size_t)n + blen, mac, &maclen) ||
	    maclen != 32) {
		free(msg);
		return -1;
	}
	free(msg);
	n = snprintf(out, 96, "t=%lld,v1=", t);
	qc_hex(mac, maclen, out + n);   /* 26 + 64 + NUL fit in 96 */
	return 0;
}

/* POST body; returns the HTTP status, or -1 with a reason in err. */
static long post(const char *body, const char *id, char *err, size_t errlen)
{
	const struct config *cfg = S.cfg;
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL, *t;
	char idh[128], sig[96], sigh[128];
	long status = -1;
	CURLcode cc;

	snprintf(err, errlen, "out of memory");
	if (!h)
		return -1;
	snprintf(idh, sizeof idh, "X-Quotacache-Delivery: %s", id);
	if (!(t = curl_slist_append(hdrs, "Content-Type: application/json")) || !(hdrs = t) ||
	    !(t = curl_slist_append(hdrs, idh)) || !(hdrs = t) ||
	    !(t = curl_slist_append(hdrs, "Expect:")) || !(hdrs = t))
		goto out;
	if (cfg->alert_webhook_secret && *cfg->alert_webhook_secret) {
		if (alerts_signature(cfg->alert_webhook_secret, (long long)time(NULL), body, sig) < 0) {
			snprintf(err, errlen, "cannot sign the body");
			goto out;
		}
		snprintf(sigh, sizeof sigh, "X-Quotacache-Signature: %s", sig);
		if (!(t = curl_slist_append(hdrs, sigh)) || !(hdrs = t))
			goto out;
	}
	curl_easy_setopt(h, CURLOPT_URL, cfg->alert_webhook_url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, upstream_open_high);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->alert_webhook_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)cfg->alert_webhook_timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "quotacache/" QC_VERSION);
	if ((cc = curl_easy_perform(h)) != CURLE_OK) {
		/* curl's text names no URL, so no token in it reaches a log */
		snprintf(err, errlen, "%s", curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	snprintf(err, errlen, "http %ld", status);
out:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return status;
}

static int kind_of(const char *s)
{
	for (int k = 0; k < QUOTA_NKINDS; k++)
		if (strcmp(s, kind_sql[k]) == 0)
			return k;
	return -1;
}

/* Post one leased row and record the outcome under the lease. */
static void deliver(struct db_rows *r, unsigned i, const char *lease)
{
	const struct config *cfg = S.cfg;
	struct alert_crossing c;
	char id[96], err[128];
	int attempt = (int)db_cell_ll(r, i, 8), kind = kind_of(db_cell(r, i, 1));
	char *body;
	long status = -1;
	struct db *db;
	enum qc_err rc;

	memset(&c, 0, sizeof c);
	c.user_id = db_cell_ll(r, i, 0);
	c.kind = (enum quota_kind)(kind < 0 ? 0 : kind);
	c.window_start = (time_t)db_cell_ll(r, i, 2);
	c.level = (enum quota_level)db_cell_ll(r, i, 3);
	if (c.level < QUOTA_WARNING || c.level > QUOTA_EXCEEDED)
		c.level = QUOTA_EXCEEDED;
	snprintf(c.plan, sizeof c.plan, "%s", db_cell(r, i, 4) ? db_cell(r, i, 4) : "");
	c.used = db_cell_ll(r, i, 5);
	c.limit = db_cell_ll(r, i, 6);
	c.at = (time_t)db_cell_ll(r, i, 7);
	alerts_id(&c, id);
	if (!(body = alerts_payload(&c, attempt)))
		snprintf(err, sizeof err, "out of memory");
	else
		status = post(body, id, err, sizeof err);
	free(body);

	db = dbpool_get(S.pool);
	if (status >= 200 && status < 300) {
		struct db_val p[6] = { DB_INT(time(NULL)), DB_INT(c.user_id), DB_STR(kind_sql[c.kind]),
				       DB_INT(c.window_start), DB_INT(c.level), DB_STR(lease) };
		rc = db_exec(db, SQL_SENT, p, 6, NULL);
		metrics_count("qc_alert_webhooks_total", "outcome=\"sent\"", 1);
		log_info("alerts", "webhook %s delivered (attempt %d)", id, attempt);
	} else {
		int last = attempt >= cfg->alert_webhook_attempts;
		long long next = now_ms() + alerts_backoff_ms(cfg->alert_webhook_backoff_ms, attempt, rand());
		struct db_val p[8] = { DB_INT(cfg->alert_webhook_attempts), DB_INT(next), DB_STR(err),
				       DB_INT(c.user_id), DB_STR(kind_sql[c.kind]), DB_INT(c.window_start),
				       DB_INT(c.level), DB_STR(lease) };
		rc = db_exec(db, SQL_RETRY, p, 8, NULL);
		metrics_count("qc_alert_webhooks_total", last ? "outcome=\"failed\"" : "outcome=\"retried\"", 1);
		if (last)
			log_warn("alerts", "webhook %s given up after %d attempts: %s", id, attempt, err);
		else
			log_info("alerts", "webhook %s attempt %d failed (%s); retrying", id, attempt, err);
	}
	if (rc != QC_OK)   /* the lease runs out and another try follows */
		log_warn("alerts", "recording the outcome of webhook %s failed", id);
	dbpool_put(S.pool, db);
}

/* Take due rows under a lease and post them.  Returns when to look again
 * (epoch ms). */
static long long deliver_due(void)
{
	const struct config *cfg = S.cfg;
	char lease[33];
	struct db_rows *r = NULL;
	long long t = now_ms(), next = t + SWEEP_MS;
	unsigned long long taken = 0;
	struct db *db;

	if (qc_random_hex(lease, 16) < 0)
		return t + 1000;
	db = dbpool_get(S.pool);
	{
		/* the lease outlives a whole batch of posts */
		struct db_val p[4] = { DB_STR(lease), DB_INT(t + (BATCH + 1) * cfg->alert_webhook_timeout_ms + 30000),
				       DB_INT(t), DB_INT(t) };
		struct db_val q[1] = { DB_STR(lease) };
		if (db_exec(db, SQL_PICK, p, 4, &taken) != QC_OK ||
		    (taken && db_query(db, SQL_LEASED, q, 1, &r) != QC_OK)) {
			dbpool_put(S.pool, db);
			return t + 1000;
		}
	}
	dbpool_put(S.pool, db);
	for (unsigned i = 0; r && i < r->nrows; i++) {
		if (atomic_load(&cut_short)) {
			/* stopping: hand the rest back to the other workers at once */
			struct db_val q[1] = { DB_STR(lease) };
			db = dbpool_get(S.pool);
			db_exec(db, SQL_UNLEASE, q, 1, NULL);
			dbpool_put(S.pool, db);
			break;
		}
		deliver(r, i, lease);
	}
	db_rows_free(r);
	if (taken >= BATCH)
		return 0;
	db = dbpool_get(S.pool);
	if (db_query(db, SQL_NEXT, NULL, 0, &r) == QC_OK) {
		if (r->nrows == 1 && !db_cell_null(r, 0, 0) && db_cell_ll(r, 0, 0) < next)
			next = db_cell_ll(r, 0, 0);
		db_rows_free(r);
	}
	dbpool_put(S.pool, db);
	t = now_ms();
	return next < t + 50 ? t + 50 : next;
}

static void *sender_main(void *arg)
{
	struct alert_crossing *batch = malloc(sizeof S.queue);
	long long next_poll = 0, claim_after = 0;

	(void)arg;
	mysql_thread_init();
	pthread_mutex_lock(&S.mu);
	for (;;) {
		unsigned n;
		int stop;

		for (;;) {
			long long t = now_ms(), until;
			struct timespec ts;
			if (S.stopping || (S.nq && t >= claim_after) || t >= next_poll)
				break;
			until = next_poll;
			if (S.nq && claim_after < until)
				until = claim_after;
			if (until > t + 1000)
				until = t + 1000;
			ts.tv_sec = (time_t)(until / 1000);
			ts.tv_nsec = (long)(until % 1000) * 1000000L;
			pthread_cond_timedwait(&S.cv, &S.mu, &ts);
		}
		stop = S.stopping;
		n = 0;
		if (batch && S.nq && (stop || now_ms() >= claim_after)) {
			n = S.nq;
			memcpy(batch, S.queue, n * sizeof *batch);
			S.nq = 0;
		}
		pthread_mutex_unlock(&S.mu);
		if (n) {
			int fresh = claim(batch, n);
			if (fresh < 0)
				claim_after = now_ms() + 1000;
			else if (fresh > 0)
				next_poll = 0;
		}
		if (stop)
			break;
		if (now_ms() >= next_poll)
			next_poll = deliver_due();
		pthread_mutex_lock(&S.mu);
	}
	free(batch);
	mysql_thread_end();
	return NULL;
}

int alerts_start(const struct config *cfg, struct dbpool *pool)
{
	if (!cfg->alert_webhook_url || !*cfg->alert_webhook_url)
		return 0;
	if (strncmp(cfg->alert_webhook_url, "http://", 7) != 0 &&
	    strncmp(cfg->alert_webhook_url, "https://", 8) != 0) {
		log_error("alerts", "alert_webhook_url must be an http:// or https:// URL");
		return -1;
	}
	S.cfg = cfg;
	S.pool = pool;
	S.stopping = 0;
	atomic_store(&cut_short, 0);
	if (pthread_create(&S.tid, NULL, sender_main, NULL) != 0)
		return -1;
	atomic_store(&running, 1);
	log_info("alerts", "level-crossing webhook on (%lld attempts, backoff from %lld ms)",
		 cfg->alert_webhook_attempts, cfg->alert_webhook_backoff_ms);
	return 0;
}

void alerts_stop(void)
{
	unsigned long dropped;

	if (!atomic_load(&running))
		return;
	atomic_store(&running, 0);
	atomic_store(&cut_short, 1);
	pthread_mutex_lock(&S.mu);
	S.stopping = 1;
	dropped = S.dropped;
	pthread_cond_signal(&S.cv);
	pthread_mutex_unlock(&S.mu);
	pthread_join(S.tid, NULL);
	if (dropped)
		log_warn("alerts", "%lu crossing(s) dropped: the queue was full", dropped);
}

enum qc_err alerts_prune(struct db *db, time_t now, unsigned long long *deleted)
{
	static const char sql[] =
		"DELETE FROM alert_crossings WHERE state <> 'pending' AND window_start + 32 * 86400 < ?";
	struct db_val p[1] = { DB_INT(now) };

	return db_exec(db, sql, p, 1, deleted);
}
