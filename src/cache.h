/*
 * cache.h - the three-tier cache of LLM inputs and outputs (SPEC §4).
 *
 * Pure part: tier names, key rules, TTL choice, URL/text normalisation and
 * hashing.  Database part: get, put, delete, cleanup, purge, statistics.
 * A hit costs one SELECT; its access count and the hit/miss statistics are
 * accumulated in the worker and written in one statement per table at most
 * every second (cache_flush), never a write per hit.
 */
#ifndef QC_CACHE_H
#define QC_CACHE_H

#include <stddef.h>
#include <time.h>

#include "qc.h"

struct db;
struct db_rows;

enum cache_tier { CACHE_SYSTEM = 0, CACHE_SESSION, CACHE_CONTENT, CACHE_EXTRACTION };
#define CACHE_NTIERS 4
#define CACHE_MAX_KEY 255

struct cache_entry {
	long long id;
	char *value;            /* owned; value_len bytes (+ NUL) */
	size_t value_len;
	int value_is_json;
	char *metadata;         /* owned JSON text or NULL */
	time_t created_at;
	time_t expires_at;      /* 0 = never */
	long long access_count;
	/* what the generation that stored it cost (written only by the
	 * orchestrator's billing transaction; 0 for entries users PUT): the
	 * saving of a hit */
	long long gen_tokens, gen_cost_micro;
};

/* --- pure ------------------------------------------------------------ */

/* Regions (SPEC §13): a worker stores and serves the user tiers' entries of
 * its own region; the system tier is shared ('').  1-16 of a-z 0-9 -, or ''. */
#define CACHE_REGION_MAX 16
int cache_region_ok(const char *r);
/* Set this process's region (once, before threads start): 0, or -1 if r is
 * not a valid region. */
int cache_set_region(const char *r);
/* The region an entry of user is stored under by this process ('' for the
 * system tier, user 0). */
const char *cache_region(long long user);

/* Tier from its name ("system", ...).  0, or -1 if unknown. */
int cache_tier_parse(const char *s, enum cache_tier *t);
const char *cache_tier_name(enum cache_tier t);
/* 1 if key[0..len) is 1..255 bytes without control characters. */
int cache_key_ok(const char *key, size_t len);
/* Saving of one hit in micro-dollars from decimal text ("0.0015" -> 1500);
 * -1 if the text is not a plain non-negative decimal. */
long long cache_parse_micro(const char *dollars);
/*
 * Normalise a URL for hashing: trim, lower-case the scheme and host, drop
 * the fragment.  Returns a new string (caller frees) or NULL (ENOMEM).
 */
char *cache_normalize_url(const char *url, size_t len, size_t *outlen);
/* Normalise text: trim leading/trailing whitespace.  New string or NULL. */
char *cache_normalize_text(const char *text, size_t len, size_t *outlen);

/* 1 if data[0..len) is valid UTF-8 (NUL bytes allowed). */
int cache_utf8_ok(const char *data, size_t len);

/* --- database ----------------------------------------------------------- */

/* Entry of user (0: system) if present and not expired at now.  QC_ENOTFOUND
 * on a miss.  Release e with cache_entry_release. */
enum qc_err cache_get(struct db *db, long long user, enum cache_tier tier,
		      const char *key, size_t klen, time_t now, struct cache_entry *e);
void cache_entry_release(struct cache_entry *e);

enum cache_put_outcome { CACHE_STORED = 0, CACHE_SKIPPED_PLAN, CACHE_FULL };

/*
 * Store an entry for user (0: system, no cap, no plan TTL).  ttl <= 0 means
 * the plan's TTL (system: never expires); a positive ttl can only shorten
 * the plan's.  *outcome says whether it was stored; *expires (0 = never).
 */
enum qc_err cache_put(struct db *db, long long user, enum cache_tier tier,
		      const char *key, size_t klen, const char *value, size_t vlen,
		      int value_is_json, const char *meta, size_t mlen, long long ttl,
		      time_t now, long long cap, enum cache_put_outcome *outcome,
		      time_t *expires);

/* Delete one entry.  QC_ENOTFOUND if there was none. */
enum qc_err cache_delete(struct db *db, long long user, enum cache_tier tier,
			 const char *key, size_t klen);
/* Remove expired entries of every user; *deleted gets the count. */
enum qc_err cache_cleanup(struct db *db, time_t now, unsigned long long *deleted);
/* Remove every entry of one user. */
enum qc_err cache_purge_user(struct db *db, long long user, unsigned long long *deleted);

/*
 * Load every regular file of dir into the system tier (key = file name
 * without its extension), skipping entries whose stored value is already
 * identical.  Files that are not UTF-8 or whose key is invalid are skipped
 * with a warning.  Counts go to *loaded and *unchanged (may be NULL).
 */
enum qc_err cache_warm_dir(struct db *db, const char *dir, time_t now, long long max_entry,
			   int *loaded, int *unchanged, int *skipped);

/*
 * Does plan cache entries of tier (user tiers only)?  Answered from a
 * per-worker copy of the plans table refreshed every 60 s.  1 yes, 0 no,
 * -1 on a database error.
 */
int cache_plan_caches(struct db *db, const char *plan, enum cache_tier tier, time_t now);
/* 1 if plan may use model (plans.models: NULL = every configured model, else
 * a comma-separated list), 0 if not, -1 on a database error.  Read from the
 * same short-lived plans cache. */
int plan_allows_model(struct db *db, const char *plan, const char *model, time_t now);

/* --- cost-aware caching (SPEC §13; plans.cache_policy = 'cost_aware') --- */

/* An answer is worth storing when what it saves on the hits an entry of its
 * task and tier can expect (hits / stores over the learning window) exceeds
 * what it costs to keep: bytes x TTL x price.  Until a task and tier have
 * CACHE_VALUE_MIN_STORES stores in the window it is stored (learning); after
 * that one skipped answer in CACHE_VALUE_EXPLORE (by key hash) is stored
 * anyway, so a task whose hits pick up is noticed. */
#define CACHE_VALUE_MIN_STORES 20
#define CACHE_VALUE_EXPLORE 20
enum cache_worth { CACHE_WORTH_SKIP = 0, CACHE_WORTH_STORE, CACHE_WORTH_LEARN, CACHE_WORTH_EXPLORE };
/* saving_micro: what this answer cost (a hit saves it); price_micro: the
 * storage price in micro-dollars per GiB-hour; key_hash: any hash of the
 * cache key.  Pure. */
enum cache_worth cache_store_worth(long long saving_micro, long long hits, long long stores,
				   long long bytes, long long ttl_s, long long price_micro,
				   unsigned long key_hash);
const char *cache_worth_name(enum cache_worth w);
/* The plan's cache settings for tier from the worker's plans copy: its TTL
 * (0: the plan does not cache the tier) and whether it is cost-aware.
 * 1, 0 if no such plan, -1 on a database error. */
int cache_plan_policy(struct db *db, const char *plan, enum cache_tier tier, time_t now,
		      long long *ttl_s, int *cost_aware);
/* The plan's warming settings (sql/015_warming.sql): daily token budget (0:
 * no warming), hits that make an entry worth refreshing, next-task
 * probability threshold in % (0: next-task warming off).  As above. */
int cache_plan_warming(struct db *db, const char *plan, time_t now, long long *budget,
		       long long *refresh_hits, long long *next_pct);
/* Hits and stores of task in tier over the window_s seconds before now,
 * from the ledger (usage_events), through a per-worker copy refreshed every
 * minute.  0, or -1 on a database error. */
int cache_task_value(struct db *db, const char *task, enum cache_tier tier, time_t now,
		     long long window_s, long long *hits, long long *stores);

/* Record a hit (entry id, saving in micro-dollars) or a miss in the worker's
 * accumulator.  plan is copied.  Never touches the database. */
void cache_note_hit(long long entry_id, long long user, enum cache_tier tier,
		    const char *plan, time_t now, long long saving_micro);
void cache_note_miss(long long user, enum cache_tier tier, const char *plan, time_t now);
/* Seconds until pending counters must be flushed: -1 if nothing pending. */
int cache_flush_in(time_t now);
/* Write pending counters (at most two statements).  On error they are kept. */
enum qc_err cache_flush(struct db *db);
/* Drop pending counters (tests). */
void cache_pending_clear(void);

/* Statistics.  Rows per tier: tier, hits, misses, saved_micro (user 0 and
 * global = 0: everyone). */
enum qc_err cache_stats_hits(struct db *db, long long user, int global, struct db_rows **out);
/* Rows per tier: tier, entries, bytes (not expired at now). */
enum qc_err cache_stats_entries(struct db *db, long long user, int global, time_t now,
				struct db_rows **out);
/* Live entries by effective TTL (expiry minus creation, adaptive TTL
 * included): rows of bucket index, entries, adaptive entries.  Bucket i
 * holds TTLs up to cache_ttl_bucket_names[i] ("longer": over 7 days,
 * "never": no expiry). */
#define CACHE_TTL_BUCKETS 7
extern const char *const cache_ttl_bucket_names[CACHE_TTL_BUCKETS];
enum qc_err cache_stats_ttl(struct db *db, long long user, int global, time_t now,
			    struct db_rows **out);
/* Rows per plan: plan, hits, misses, saved_micro, live entries and bytes of
 * the plan's current users. */
enum qc_err cache_stats_plans(struct db *db, struct db_rows **out);
/* Rows per plan: plan, warming calls, refused by the budget, tokens,
 * cost_micro (the warming spend, billed to no user). */
enum qc_err cache_stats_warming(struct db *db, struct db_rows **out);
/* Rows per region ('' = none: the system tier, or workers without one):
 * region, hits, misses, saved_micro, live entries, bytes. */
enum qc_err cache_stats_regions(struct db *db, long long user, int global, time_t now,
				struct db_rows **out);
/* Rows: task, tier, hits, stores over the window_s seconds before now (what
 * cost-aware caching learns from); *evicted: entries evicted under the cap. */
enum qc_err cache_stats_value(struct db *db, long long user, int global, time_t now,
			      long long window_s, struct db_rows **out, long long *evicted);
/* Rows: cache_key, tier, user_id, access_count (top n by hits). */
enum qc_err cache_stats_top(struct db *db, long long n, time_t now, struct db_rows **out);
/* Rows: bucket, hits, misses, saved_micro for buckets >= since. */
enum qc_err cache_stats_series(struct db *db, long long user, int global, time_t since,
			       struct db_rows **out);

/* The hit and statistics accumulators (accum.h), flushed by the worker. */
struct accum;
extern struct accum cache_hits_accum, cache_stats_accum;

#endif
