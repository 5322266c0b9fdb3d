/*
 * cache.c - cache entries in MariaDB (one statement or one procedure call
 * per operation) and the worker's accumulator of hit counts and statistics.
 * Invariant of the accumulators: every pending hit/miss is written by the
 * next successful cache_flush, exactly once.
 * Shared state: the two accumulators (each its own lock, accum.h) and the
 * plan TTL read cache (plan_mu).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "accum.h"
#include "cache.h"
#include "db.h"
#include "log.h"

/* --- pure ------------------------------------------------------------- */

static const char *const tier_names[CACHE_NTIERS] = { "system", "session", "content", "extraction" };

int cache_tier_parse(const char *s, enum cache_tier *t)
{
	for (int i = 0; i < CACHE_NTIERS; i++)
		if (strcmp(s, tier_names[i]) == 0) {
			*t = (enum cache_tier)i;
			return 0;
		}
	return -1;
}

const char *cache_tier_name(enum cache_tier t)
{
	return tier_names[t];
}

int cache_key_ok(const char *key, size_t len)
{
	if (len == 0 || len > CACHE_MAX_KEY)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
			return 0;
	return 1;
}

long long cache_parse_micro(const char *s)
{
	long long whole = 0, frac = 0;
	int digits = 0;

	if (!s || !*s)
		return -1;
	for (; isdigit((unsigned char)*s); s++)
		whole = whole * 10 + (*s - '0');
	if (*s == '.')
		for (s++; isdigit((unsigned char)*s); s++)
			if (digits < 6) {
				frac = frac * 10 + (*s - '0');
				digits++;
			}
	if (*s || whole > 1000000)
		return -1;
	while (digits++ < 6)
		frac *= 10;
	return whole * 1000000 + frac;
}

static void trim_span(const char *s, size_t len, size_t *b, size_t *e)
{
	*b = 0;
	*e = len;
	while (*b < *e && isspace((unsigned char)s[*b]))
		(*b)++;
	while (*e > *b && isspace((unsigned char)s[*e - 1]))
		(*e)--;
}

char *cache_normalize_text(const char *text, size_t len, size_t *outlen)
{
	size_t b, e;
	char *out;

	trim_span(text, len, &b, &e);
	if (!(out = malloc(e - b + 1)))
		return NULL;
	memcpy(out, text + b, e - b);
	out[e - b] = 0;
	*outlen = e - b;
	return out;
}

char *cache_normalize_url(const char *url, size_t len, size_t *outlen)
{
	size_t b, e, n;
	char *out, *p, *hash, *host_end;

	trim_span(url, len, &b, &e);
	n = e - b;
	if (!(out = malloc(n + 1)))
		return NULL;
	memcpy(out, url + b, n);
	out[n] = 0;
	/* drop the fragment (memchr: the text may hold NUL bytes) */
	if ((hash = memchr(out, '#', n))) {
		*hash = 0;
		n = (size_t)(hash - out);
	}
	/* lower-case the scheme and the authority (host, port) */
	p = memchr(out, ':', n);
	if (p && p + 2 < out + n && p[1] == '/' && p[2] == '/') {
		for (char *c = out; c < p; c++)
			*c = (char)tolower((unsigned char)*c);
		char *auth = p + 3;
		host_end = auth;
		while (host_end < out + n && *host_end != '/' && *host_end != '?')
			host_end++;
		/* userinfo keeps its case; only what follows '@' is the host */
		char *at = NULL;
		for (char *c = auth; c < host_end; c++)
			if (*c == '@')
				at = c;
		for (char *c = at ? at + 1 : auth; c < host_end; c++)
			*c = (char)tolower((unsigned char)*c);
	}
	*outlen = n;
	return out;
}

int cache_utf8_ok(const char *data, size_t len)
{
	const unsigned char *s = (const unsigned char *)data;
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i], need, min;
		if (c < 0x80) { i++; continue; }
		if ((c & 0xe0) == 0xc0) { need = 1; min = 0x80; c &= 0x1f; }
		else if ((c & 0xf0) == 0xe0) { need = 2; min = 0x800; c &= 0x0f; }
		else if ((c & 0xf8) == 0xf0) { need = 3; min = 0x10000; c &= 0x07; }
		else return 0;
		if (i + need >= len)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			c = (c << 6) | (s[i + k] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* --- entries ------------------------------------------------------------ */

static const char SQL_GET[] =
	"SELECT id, value, value_is_json, metadata, UNIX_TIMESTAMP(created_at),"
	" UNIX_TIMESTAMP(expires_at), access_count, gen_tokens, gen_cost_micro FROM ai_cache"
	" WHERE cache_key = ? AND cache_type = ? AND user_id = ? AND region = ?"
	" AND (expires_at IS NULL OR expires_at > FROM_UNIXTIME(?))";
static const char SQL_PUT[] = "CALL qc_cache_put(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char SQL_DELETE[] = "CALL qc_cache_delete(?, ?, ?, ?)";

/* this process's region: written once by cache_set_region before any thread
 * starts, read-only afterwards */
static char region[CACHE_REGION_MAX + 1];

int cache_region_ok(const char *r)
{
	size_t n = strlen(r);

	if (n > CACHE_REGION_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
			return 0;
	return 1;
}

int cache_set_region(const char *r)
{
	if (!r || !cache_region_ok(r))
		return -1;
	snprintf(region, sizeof region, "%s", r);
	return 0;
}

const char *cache_region(long long user)
{
	return user == 0 ? "" : region;
}
static const char SQL_REMOVE[] = "CALL qc_cache_remove(?, ?, ?)";

/* hits recorded in this worker and not yet flushed (two accumulators) */
#define MAX_PENDING_HITS 512
#define MAX_PENDING_STATS 256

struct pending_hit { long long id, n; time_t last; };
struct pending_stat {
	time_t bucket;
	long long user;
	enum cache_tier tier;
	char plan[33];
	long long hits, misses, saved;
};

static int same_hit(const void *a, const void *b);
static void merge_hit(void *into, const void *from);
static int cmp_hit(const void *a, const void *b);
static enum qc_err write_hits(struct db *db, void *recs, unsigned n);
static int same_stat(const void *a, const void *b);
static void merge_stat(void *into, const void *from);
static int cmp_stat(const void *a, const void *b);
static enum qc_err write_stats(struct db *db, void *recs, unsigned n);

struct accum cache_hits_accum = ACCUM_INIT("cache hits", struct pending_hit, MAX_PENDING_HITS,
					    same_hit, merge_hit, write_hits, cmp_hit);
struct accum cache_stats_accum = ACCUM_INIT("cache stats", struct pending_stat, MAX_PENDING_STATS,
					     same_stat, merge_stat, write_stats, cmp_stat);

static long long pending_for(long long id)
{
	struct pending_hit key = { .id = id }, got;

	return accum_find(&cache_hits_accum, &key, &got) ? got.n : 0;
}

enum qc_err cache_get(struct db *db, long long user, enum cache_tier tier,
		      const char *key, size_t klen, time_t now, struct cache_entry *e)
{
	struct db_val p[5] = { DB_BLOB(key, klen), DB_STR(cache_tier_name(tier)),
			       DB_INT(user), DB_STR(cache_region(user)), DB_INT(now) };
	struct db_rows *r = NULL;
	enum qc_err rc;

	memset(e, 0, sizeof *e);
	if ((rc = db_query(db, SQL_GET, p, 5, &r)) != QC_OK)
		return rc;
	if (r->nrows != 1 && db_galera(db)) {   /* stored through another node a moment ago? */
		db_rows_free(r);
		if ((rc = db_query_synced(db, SQL_GET, p, 5, &r)) != QC_OK)
			return rc;
	}
	if (r->nrows != 1) {
		db_rows_free(r);
		return QC_ENOTFOUND;
	}
	e->id = db_cell_ll(r, 0, 0);
	/* take ownership of the value cell instead of copying it */
	e->value = r->cells[1];
	e->value_len = r->lens[1];
	r->cells[1] = NULL;
	e->value_is_json = (int)db_cell_ll(r, 0, 2);
	if (r->cells[3]) {
		e->metadata = r->cells[3];
		r->cells[3] = NULL;
	}
	e->created_at = (time_t)db_cell_ll(r, 0, 4);
	e->expires_at = db_cell_null(r, 0, 5) ? 0 : (time_t)db_cell_ll(r, 0, 5);
	e->access_count = db_cell_ll(r, 0, 6) + pending_for(e->id);
	e->gen_tokens = db_cell_ll(r, 0, 7);
	e->gen_cost_micro = db_cell_ll(r, 0, 8);
	db_rows_free(r);
	return e->value ? QC_OK : QC_ENOMEM;
}

void cache_entry_release(struct cache_entry *e)
{
	free(e->value);
	free(e->metadata);
	e->value = e->metadata = NULL;
}

enum qc_err cache_put(struct db *db, long long user, enum cache_tier tier,
		      const char *key, size_t klen, const char *value, size_t vlen,
		      int value_is_json, const char *meta, size_t mlen, long long ttl,
		      time_t now, long long cap, enum cache_put_outcome *outcome,
		      time_t *expires)
{
	struct db_val p[10] = {
		DB_INT(user), DB_STR(cache_tier_name(tier)), DB_BLOB(key, klen),
		DB_BLOB(value, vlen), DB_INT(value_is_json),
		meta ? DB_BLOB(meta, mlen) : DB_NULLV,
		ttl > 0 ? DB_INT(ttl) : DB_NULLV, DB_INT(now), DB_INT(cap), DB_STR(cache_region(user)),
	};
	struct db_rows *r = NULL;
	enum qc_err rc;
	const char *o;

	*expires = 0;
	if ((rc = db_query(db, SQL_PUT, p, 10, &r)) != QC_OK)
		return rc;
	if (r->nrows != 1) {
		db_rows_free(r);
		return QC_EDB;
	}
	o = db_cell(r, 0, 0);
	*outcome = strcmp(o, "stored") == 0 ? CACHE_STORED
		 : strcmp(o, "plan") == 0 ? CACHE_SKIPPED_PLAN : CACHE_FULL;
	if (!db_cell_null(r, 0, 1))
		*expires = (time_t)db_cell_ll(r, 0, 1);
	db_rows_free(r);
	return QC_OK;
}

enum qc_err cache_delete(struct db *db, long long user, enum cache_tier tier,
			 const char *key, size_t klen)
{
	struct db_val p[4] = { DB_INT(user), DB_STR(cache_tier_name(tier)), DB_BLOB(key, klen),
			       DB_STR(cache_region(user)) };
	struct db_rows *r = NULL;
	enum qc_err rc;

	if ((rc = db_query(db, SQL_DELETE, p, 4, &r)) != QC_OK)
		return rc;
	rc = db_cell_ll(r, 0, 0) > 0 ? QC_OK : QC_ENOTFOUND;
	db_rows_free(r);
	return rc;
}

static enum qc_err remove_rows(struct db *db, struct db_val *p, unsigned long long *deleted)
{
	struct db_rows *r = NULL;
	enum qc_err rc = db_query(db, SQL_REMOVE, p, 3, &r);

	if (rc == QC_OK && deleted)
		*deleted = (unsigned long long)db_cell_ll(r, 0, 0);
	db_rows_free(r);
	return rc;
}

enum qc_err cache_cleanup(struct db *db, time_t now, unsigned long long *deleted)
{
	struct db_val p[3] = { DB_NULLV, DB_INT(0), DB_INT(now) };
	return remove_rows(db, p, deleted);
}

enum qc_err cache_purge_user(struct db *db, long long user, unsigned long long *deleted)
{
	struct db_val p[3] = { DB_INT(user), DB_INT(1), DB_INT(0) };
	return remove_rows(db, p, deleted);
}

enum qc_err cache_warm_dir(struct db *db, const char *dir, time_t now, long long max_entry,
			   int *loaded, int *unchanged, int *skipped)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	enum qc_err rc = QC_OK;
	int nl = 0, nu = 0, ns = 0;

	if (!d) {
		log_error("cache", "cannot open %s: %s", dir, strerror(errno));
		return QC_EIO;
	}
	while ((de = readdir(d))) {
		char path[4096], key[CACHE_MAX_KEY + 1];
		struct cache_entry e;
		enum cache_put_outcome out;
		size_t len = 0, klen;
		time_t exp;
		char *val, *dot;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		snprintf(key, sizeof key, "%s", de->d_name);
		if ((dot = strrchr(key, '.')) && dot != key)
			*dot = 0;
		klen = strlen(key);
		if (!(val = qc_read_file(path, max_entry, &len)))
			continue;   /* a directory, unreadable or too large */
		if (!cache_key_ok(key, klen) || !cache_utf8_ok(val, len)) {
			log_warn("cache", "warm: skipping %s (bad key or not UTF-8)", de->d_name);
			ns++;
			free(val);
			continue;
		}
		rc = cache_get(db, 0, CACHE_SYSTEM, key, klen, now, &e);
		if (rc == QC_OK && !e.value_is_json && e.value_len == len && memcmp(e.value, val, len) == 0) {
			nu++;
			cache_entry_release(&e);
			free(val);
			continue;
		}
		if (rc == QC_OK)
			cache_entry_release(&e);
		else if (rc != QC_ENOTFOUND)
			goto fail;
		rc = cache_put(db, 0, CACHE_SYSTEM, key, klen, val, len, 0, NULL, 0, 0, now, 0, &out, &exp);
		if (rc != QC_OK)
			goto fail;
		nl++;
		free(val);
		continue;
fail:
		free(val);
		break;
	}
	closedir(d);
	if (rc == QC_ENOTFOUND)
		rc = QC_OK;
	if (loaded) *loaded = nl;
	if (unchanged) *unchanged = nu;
	if (skipped) *skipped = ns;
	return rc;
}

/* plans read cache: a minute; a plan it does not know yet (just created)
 * makes it read the table again at once */
struct plan_info {
	char name[33];
	int session, content, any_model, cost_aware;
	long long session_ttl, content_ttl;
	long long warm_budget, warm_hits, warm_next_pct;   /* warm_next_pct 0: off */
	char models[512];
};
static struct plan_info plan_infos[32];
static unsigned nplan_infos;
static time_t plan_infos_at;
static pthread_mutex_t plan_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards the three above */

/* 1 and *out for plan, 0 if no such plan, -1 on a database error. */
static int plan_lookup(struct db *db, const char *plan, time_t now, struct plan_info *out)
{
	static const char sql[] = "SELECT name, session_ttl_seconds IS NOT NULL,"
				  " content_ttl_seconds IS NOT NULL, models, COALESCE(session_ttl_seconds, 0),"
				  " COALESCE(content_ttl_seconds, 0), cache_policy = 'cost_aware',"
				  " warm_tokens_per_day, warm_refresh_hits, COALESCE(warm_next_pct, 0) FROM plans";
	int found = 0;

	pthread_mutex_lock(&plan_mu);
	for (int pass = 0; pass < 2 && !found; pass++) {
		if (pass == 1 || !nplan_infos || now - plan_infos_at >= 60 || now < plan_infos_at) {
			struct db_rows *r = NULL;
			if (db_query(db, sql, NULL, 0, &r) != QC_OK) {
				pthread_mutex_unlock(&plan_mu);
				return -1;
			}
			nplan_infos = 0;
			for (unsigned i = 0; i < r->nrows && i < 32; i++) {
				struct plan_info *p = &plan_infos[nplan_infos++];
				snprintf(p->name, sizeof p->name, "%s", db_cell(r, i, 0));
				p->session = (int)db_cell_ll(r, i, 1);
				p->content = (int)db_cell_ll(r, i, 2);
				p->any_model = db_cell_null(r, i, 3);
				snprintf(p->models, sizeof p->models, "%s", p->any_model ? "" : db_cell(r, i, 3));
				p->session_ttl = db_cell_ll(r, i, 4);
				p->content_ttl = db_cell_ll(r, i, 5);
				p->cost_aware = (int)db_cell_ll(r, i, 6);
				p->warm_budget = db_cell_ll(r, i, 7);
				p->warm_hits = db_cell_ll(r, i, 8);
				p->warm_next_pct = db_cell_ll(r, i, 9);
			}
			plan_infos_at = now;
			db_rows_free(r);
		}
		for (unsigned i = 0; i < nplan_infos && !found; i++)
			if (strcmp(plan_infos[i].name, plan) == 0) {
				*out = plan_infos[i];
				found = 1;
			}
	}
	pthread_mutex_unlock(&plan_mu);
	return found;
}

int cache_plan_caches(struct db *db, const char *plan, enum cache_tier tier, time_t now)
{
	struct plan_info p;
	int rc = plan_lookup(db, plan, now, &p);

	if (rc <= 0)
		return rc;
	return tier == CACHE_CONTENT ? p.content : p.session;
}

int cache_plan_policy(struct db *db, const char *plan, enum cache_tier tier, time_t now,
		      long long *ttl_s, int *cost_aware)
{
	struct plan_info p;
	int rc = plan_lookup(db, plan, now, &p);

	if (rc <= 0)
		return rc;
	*ttl_s = tier == CACHE_CONTENT ? p.content_ttl : tier == CACHE_SYSTEM ? 0 : p.session_ttl;
	*cost_aware = p.cost_aware;
	return 1;
}

int cache_plan_warming(struct db *db, const char *plan, time_t now, long long *budget,
		       long long *refresh_hits, long long *next_pct)
{
	struct plan_info p;
	int rc = plan_lookup(db, plan, now, &p);

	if (rc <= 0)
		return rc;
	*budget = p.warm_budget;
	*refresh_hits = p.warm_hits;
	*next_pct = p.warm_next_pct;
	return 1;
}

/* --- cost-aware caching ------------------------------------------------- */

enum cache_worth cache_store_worth(long long saving_micro, long long hits, long long stores,
				   long long bytes, long long ttl_s, long long price_micro,
				   unsigned long key_hash)
{
	double expected, cost;

	if (stores < CACHE_VALUE_MIN_STORES)
		return CACHE_WORTH_LEARN;
	expected = (double)(saving_micro > 0 ? saving_micro : 0) * (double)(hits > 0 ? hits : 0) /
		   (double)stores;
	cost = (double)(bytes > 0 ? bytes : 0) / 1073741824.0 * (double)(ttl_s > 0 ? ttl_s : 0) /
	       3600.0 * (double)(price_micro > 0 ? price_micro : 0);
	if (expected > cost)
		return CACHE_WORTH_STORE;
	return key_hash % CACHE_VALUE_EXPLORE == 0 ? CACHE_WORTH_EXPLORE : CACHE_WORTH_SKIP;
}

const char *cache_worth_name(enum cache_worth w)
{
	static const char *const names[] = { "skipped", "stored", "learning", "exploring" };
	return names[w];
}

/* hits and stores per task and tier over the window: a per-worker copy of
 * one grouped read of the ledger, at most a minute old */
#define MAX_TASK_VALUES 256
struct task_value { char task[65]; int tier; long long hits, stores; };
static struct task_value task_values[MAX_TASK_VALUES];
static unsigned ntask_values;
static time_t task_values_at;
static long long task_values_window;
static pthread_mutex_t task_value_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards the four above */

int cache_task_value(struct db *db, const char *task, enum cache_tier tier, time_t now,
		     long long window_s, long long *hits, long long *stores)
{
	static const char sql[] =
		"SELECT task, cache_type, SUM(cached), SUM(stored) FROM usage_events"
		" WHERE created_at >= ? AND created_at <= ? AND cache_type IS NOT NULL"
		" GROUP BY task, cache_type ORDER BY SUM(stored) DESC LIMIT 256";

	*hits = *stores = 0;
	pthread_mutex_lock(&task_value_mu);
	if (!task_values_at || now - task_values_at >= 60 || now < task_values_at ||
	    window_s != task_values_window) {
		struct db_val p[2] = { DB_INT(now - window_s), DB_INT(now) };
		struct db_rows *r = NULL;
		if (db_query(db, sql, p, 2, &r) != QC_OK) {
			pthread_mutex_unlock(&task_value_mu);
			return -1;
		}
		ntask_values = 0;
		for (unsigned i = 0; i < r->nrows && i < MAX_TASK_VALUES; i++) {
			struct task_value *v = &task_values[ntask_values];
			enum cache_tier t;
			if (cache_tier_parse(db_cell(r, i, 1), &t) != 0)
				continue;
			snprintf(v->task, sizeof v->task, "%s", db_cell(r, i, 0));
			v->tier = (int)t;
			v->hits = db_cell_ll(r, i, 2);
			v->stores = db_cell_ll(r, i, 3);
			ntask_values++;
		}
		task_values_at = now;
		task_values_window = window_s;
		db_rows_free(r);
	}
	for (unsigned i = 0; i < ntask_values; i++)
		if (task_values[i].tier == (int)tier && strcmp(task_values[i].task, task) == 0) {
			*hits = task_values[i].hits;
			*stores = task_values[i].stores;
			break;
		}
	pthread_mutex_unlock(&task_value_mu);
	return 0;
}

int plan_allows_model(struct db *db, const char *plan, const char *model, time_t now)
{
	struct plan_info p;
	int rc = plan_lookup(db, plan, now, &p);
	size_t ml = strlen(model);

	if (rc <= 0)
		return rc;
	if (p.any_model)
		return 1;
	for (const char *m = p.models; *m;) {
		const char *comma = strchr(m, ',');
		size_t len = comma ? (size_t)(comma - m) : strlen(m);
		while (len && (*m == ' ')) {
			m++;
			len--;
		}
		while (len && m[len - 1] == ' ')
			len--;
		if (len == ml && strncmp(m, model, ml) == 0)
			return 1;
		if (!comma)
			break;
		m = comma + 1;
	}
	return 0;
}

/* --- accumulator -------------------------------------------------------- */

static int same_hit(const void *a, const void *b)
{
	return ((const struct pending_hit *)a)->id == ((const struct pending_hit *)b)->id;
}

static void merge_hit(void *into, const void *from)
{
	struct pending_hit *t = into;
	const struct pending_hit *f = from;

	t->n += f->n;
	if (f->last > t->last)
		t->last = f->last;
}

static int same_stat(const void *a, const void *b)
{
	const struct pending_stat *x = a, *y = b;
	return x->bucket == y->bucket && x->user == y->user && x->tier == y->tier &&
	       strcmp(x->plan, y->plan) == 0;
}

static void merge_stat(void *into, const void *from)
{
	struct pending_stat *t = into;
	const struct pending_stat *f = from;

	t->hits += f->hits;
	t->misses += f->misses;
	t->saved += f->saved;
}

static void note_stat(long long user, enum cache_tier tier, const char *plan, time_t now,
		      long long hits, long long misses, long long saved)
{
	struct pending_stat s;

	memset(&s, 0, sizeof s);
	s.bucket = now - now % 3600;
	s.user = user;
	s.tier = tier;
	snprintf(s.plan, sizeof s.plan, "%s", plan);
	s.hits = hits;
	s.misses = misses;
	s.saved = saved;
	accum_add(&cache_stats_accum, &s, time(NULL));   /* the flush timer runs on the wall clock */
}

void cache_note_hit(long long entry_id, long long user, enum cache_tier tier,
		    const char *plan, time_t now, long long saving_micro)
{
	struct pending_hit h = { .id = entry_id, .n = 1, .last = now };

	accum_add(&cache_hits_accum, &h, time(NULL));
	note_stat(user, tier, plan, now, 1, 0, saving_micro);
}

void cache_note_miss(long long user, enum cache_tier tier, const char *plan, time_t now)
{
	note_stat(user, tier, plan, now, 0, 1, 0);
}

int cache_flush_in(time_t now)
{
	int a = accum_due(&cache_hits_accum, now), b = accum_due(&cache_stats_accum, now);

	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

void cache_pending_clear(void)
{
	pthread_mutex_lock(&cache_hits_accum.mu);
	cache_hits_accum.n = 0;
	pthread_mutex_unlock(&cache_hits_accum.mu);
	pthread_mutex_lock(&cache_stats_accum.mu);
	cache_stats_accum.n = 0;
	pthread_mutex_unlock(&cache_stats_accum.mu);
}

static int cmp_hit(const void *a, const void *b)
{
	const struct pending_hit *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_stat(const void *a, const void *b)
{
	const struct pending_stat *x = a, *y = b;
	if (x->bucket != y->bucket)
		return x->bucket < y->bucket ? -1 : 1;
	if (x->user != y->user)
		return x->user < y->user ? -1 : 1;
	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	return strcmp(x->plan, y->plan);
}

/* A flush of hit counts, one entry per row: the hits, the latest hit's time
 * (three times), the entry's id. */
static const char SQL_HIT_FLUSH[] =
	"UPDATE ai_cache SET access_count = access_count + ?,"
	" last_accessed_at = GREATEST(COALESCE(last_accessed_at, FROM_UNIXTIME(?)), FROM_UNIXTIME(?)),"
	/* adaptive TTL (sql/010): the plan's TTL from the latest hit, within
	 * the entry's bound; an expiry is never shortened */
	" expires_at = IF(adapt_ttl IS NULL OR expires_at IS NULL, expires_at,"
	" GREATEST(expires_at, LEAST(adapt_until, FROM_UNIXTIME(?) + INTERVAL adapt_ttl SECOND)))"
	" WHERE id = ?";
static const char SQL_STATS_FLUSH[] =
	"INSERT INTO cache_stats (bucket, user_id, cache_type, plan, hits, misses, saved_micro, region)"
	" VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE hits = hits + VALUES(hits),"
	" misses = misses + VALUES(misses), saved_micro = saved_micro + VALUES(saved_micro)";

/* Rows are written in primary-key order (the accumulator sorts them), so
 * flushes of several workers lock shared rows in the same order and do not
 * deadlock each other. */
static enum qc_err write_hits(struct db *db, void *recs, unsigned n)
{
	const struct pending_hit *h = recs;
	struct db_val *p = calloc((size_t)n * 5, sizeof *p);
	enum qc_err rc;

	if (!p)
		return QC_ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		p[5 * i] = DB_INT(h[i].n);
		p[5 * i + 1] = DB_INT(h[i].last);
		p[5 * i + 2] = DB_INT(h[i].last);
		p[5 * i + 3] = DB_INT(h[i].last);
		p[5 * i + 4] = DB_INT(h[i].id);
	}
	rc = db_exec_bulk(db, SQL_HIT_FLUSH, 5, n, p);
	free(p);
	return rc;
}

static enum qc_err write_stats(struct db *db, void *recs, unsigned n)
{
	const struct pending_stat *st = recs;
	struct db_val *p = calloc((size_t)n * 8, sizeof *p);
	enum qc_err rc;

	if (!p)
		return QC_ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		const struct pending_stat *s = &st[i];
		p[8 * i] = DB_INT(s->bucket);
		p[8 * i + 1] = DB_INT(s->user);
		p[8 * i + 2] = DB_STR(cache_tier_name(s->tier));
		p[8 * i + 3] = DB_STR(s->plan);
		p[8 * i + 4] = DB_INT(s->hits);
		p[8 * i + 5] = DB_INT(s->misses);
		p[8 * i + 6] = DB_INT(s->saved);
		p[8 * i + 7] = DB_STR(region);   /* the region of this worker, which counted them */
	}
	rc = db_exec_bulk(db, SQL_STATS_FLUSH, 8, n, p);
	free(p);
	return rc;
}

enum qc_err cache_flush(struct db *db)
{
	enum qc_err a = accum_flush(&cache_hits_accum, db), b = accum_flush(&cache_stats_accum, db);

	return a != QC_OK ? a : b;
}

/* --- statistics ---------------------------------------------------------- */

static const char SQL_ST_HITS[] =
	"SELECT cache_type, SUM(hits), SUM(misses), SUM(saved_micro) FROM cache_stats"
	" WHERE (? = 1 OR user_id = ?) GROUP BY cache_type ORDER BY cache_type";
static const char SQL_ST_ENTRIES[] =
	"SELECT cache_type, COUNT(*), COALESCE(SUM(size_bytes), 0) FROM ai_cache"
	" WHERE (? = 1 OR user_id = ?) AND (expires_at IS NULL OR expires_at > FROM_UNIXTIME(?))"
	" GROUP BY cache_type ORDER BY cache_type";
/* live entries by effective TTL (expiry - creation): bucket index as in
 * cache_ttl_bucket_names, entries, of which adaptive */
static const char SQL_ST_TTL[] =
	"SELECT CASE WHEN expires_at IS NULL THEN 6"
	" WHEN TIMESTAMPDIFF(SECOND, created_at, expires_at) <= 900 THEN 0"
	" WHEN TIMESTAMPDIFF(SECOND, created_at, expires_at) <= 3600 THEN 1"
	" WHEN TIMESTAMPDIFF(SECOND, created_at, expires_at) <= 21600 THEN 2"
	" WHEN TIMESTAMPDIFF(SECOND, created_at, expires_at) <= 86400 THEN 3"
	" WHEN TIMESTAMPDIFF(SECOND, created_at, expires_at) <= 604800 THEN 4 ELSE 5 END AS b,"
	" COUNT(*), SUM(adapt_ttl IS NOT NULL) FROM ai_cache"
	" WHERE (? = 1 OR user_id = ?) AND (expires_at IS NULL OR expires_at > FROM_UNIXTIME(?))"
	" GROUP BY b ORDER BY b";
static const char SQL_ST_PLANS[] =
	"SELECT s.plan, s.hits, s.misses, s.saved, COALESCE(e.n, 0), COALESCE(e.bytes, 0) FROM"
	" (SELECT plan, SUM(hits) AS hits, SUM(misses) AS misses, SUM(saved_micro) AS saved"
	"  FROM cache_stats GROUP BY plan) s LEFT JOIN"
	" (SELECT u.plan, COUNT(*) AS n, SUM(c.size_bytes) AS bytes FROM ai_cache c"
	"  JOIN users u ON u.id = c.user_id"
	"  WHERE c.expires_at IS NULL OR c.expires_at > UTC_TIMESTAMP() GROUP BY u.plan) e"
	" ON e.plan = s.plan ORDER BY s.plan";
static const char SQL_ST_TOP[] =
	"SELECT cache_key, cache_type, user_id, access_count FROM ai_cache"
	" WHERE expires_at IS NULL OR expires_at > FROM_UNIXTIME(?)"
	" ORDER BY access_count DESC, id LIMIT ?";
static const char SQL_ST_SERIES[] =
	"SELECT bucket, SUM(hits), SUM(misses), SUM(saved_micro) FROM cache_stats"
	" WHERE (? = 1 OR user_id = ?) AND bucket >= ? GROUP BY bucket ORDER BY bucket";

/* what cost-aware caching learns, for the stats: per task and tier, hits
 * and stores in the window; and the entries evicted under the cap so far */
static const char SQL_ST_VALUE[] =
	"SELECT task, cache_type, SUM(cached), SUM(stored) FROM usage_events"
	" WHERE (? = 1 OR user_id = ?) AND created_at >= ? AND created_at <= ?"
	" AND cache_type IS NOT NULL GROUP BY task, cache_type ORDER BY task, cache_type LIMIT 100";
static const char SQL_ST_EVICTED[] =
	"SELECT COALESCE(SUM(evicted), 0) FROM cache_usage WHERE (? = 1 OR user_id = ?)";

/* per region: hits, misses, saved (cache_stats, by the counting worker's
 * region) and live entries, bytes (ai_cache, by the storing worker's) */
static const char SQL_ST_REGIONS[] =
	"SELECT r, SUM(h), SUM(m), SUM(s), SUM(n), SUM(b) FROM ("
	" SELECT region AS r, SUM(hits) AS h, SUM(misses) AS m, SUM(saved_micro) AS s, 0 AS n, 0 AS b"
	"  FROM cache_stats WHERE (? = 1 OR user_id = ?) GROUP BY region"
	" UNION ALL SELECT region, 0, 0, 0, COUNT(*), COALESCE(SUM(size_bytes), 0) FROM ai_cache"
	"  WHERE (? = 1 OR user_id = ?) AND (expires_at IS NULL OR expires_at > FROM_UNIXTIME(?))"
	"  GROUP BY region) x GROUP BY r ORDER BY r";

enum qc_err cache_stats_regions(struct db *db, long long user, int global, time_t now,
				struct db_rows **out)
{
	struct db_val p[5] = { DB_INT(global), DB_INT(user), DB_INT(global), DB_INT(user), DB_INT(now) };
	return db_query(db, SQL_ST_REGIONS, p, 5, out);
}

/* the warming spend (sql/015): the warming users' ledger rows, per plan */
static const char SQL_ST_WARMING[] =
	"SELECT plan, SUM(outcome = 'ok'), SUM(outcome = 'quota'), SUM(prompt_tokens + completion_tokens),"
	" SUM(cost_micro) FROM usage_events WHERE task LIKE 'warm:%' GROUP BY plan ORDER BY plan";

enum qc_err cache_stats_warming(struct db *db, struct db_rows **out)
{
	return db_query(db, SQL_ST_WARMING, NULL, 0, out);
}

enum qc_err cache_stats_value(struct db *db, long long user, int global, time_t now,
			      long long window_s, struct db_rows **out, long long *evicted)
{
	struct db_val p[4] = { DB_INT(global), DB_INT(user), DB_INT(now - window_s), DB_INT(now) };
	struct db_rows *r = NULL;
	enum qc_err rc;

	*evicted = 0;
	if ((rc = db_query(db, SQL_ST_EVICTED, p, 2, &r)) != QC_OK)
		return rc;
	*evicted = r->nrows ? db_cell_ll(r, 0, 0) : 0;
	db_rows_free(r);
	return db_query(db, SQL_ST_VALUE, p, 4, out);
}

enum qc_err cache_stats_hits(struct db *db, long long user, int global, struct db_rows **out)
{
	struct db_val p[2] = { DB_INT(global), DB_INT(user) };
	return db_query(db, SQL_ST_HITS, p, 2, out);
}

const char *const cache_ttl_bucket_names[CACHE_TTL_BUCKETS] = {
	"15m", "1h", "6h", "24h", "7d", "longer", "never"
};

enum qc_err cache_stats_ttl(struct db *db, long long user, int global, time_t now,
			    struct db_rows **out)
{
	struct db_val p[3] = { DB_INT(global), DB_INT(user), DB_INT(now) };
	return db_query(db, SQL_ST_TTL, p, 3, out);
}

enum qc_err cache_stats_entries(struct db *db, long long user, int global, time_t now,
				struct db_rows **out)
{
	struct db_val p[3] = { DB_INT(global), DB_INT(user), DB_INT(now) };
	return db_query(db, SQL_ST_ENTRIES, p, 3, out);
}

enum qc_err cache_stats_plans(struct db *db, struct db_rows **out)
{
	return db_query(db, SQL_ST_PLANS, NULL, 0, out);
}

enum qc_err cache_stats_top(struct db *db, long long n, time_t now, struct db_rows **out)
{
	struct db_val p[2] = { DB_INT(now), DB_INT(n) };
	return db_query(db, SQL_ST_TOP, p, 2, out);
}

enum qc_err cache_stats_series(struct db *db, long long user, int global, time_t since,
			       struct db_rows **out)
{
	struct db_val p[3] = { DB_INT(global), DB_INT(user), DB_INT(since) };
	return db_query(db, SQL_ST_SERIES, p, 3, out);
}
