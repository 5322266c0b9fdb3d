/*
 * h_cache.c - HTTP handlers of /api/v1/cache/...: tier and key rules, the
 * system tier's admin-only writes, value/metadata shaping, statistics.
 * Another user's entry is never visible: every lookup is keyed by the
 * caller's id (or 0 for the system tier), so it is a miss, not a 403.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "app.h"
#include "warming.h"
#include "cache.h"
#include "jsonu.h"

#define CACHE_TTL_MAX (366LL * 86400)

long long app_saving_micro(const struct app *app, enum cache_tier t)
{
	const char *s = t == CACHE_SYSTEM ? app->cfg.cache_saving_system
		      : t == CACHE_CONTENT ? app->cfg.cache_saving_content
		      : app->cfg.cache_saving_session;
	long long v = cache_parse_micro(s);
	return v < 0 ? 0 : v;
}

/* Parse {tier}/{key} of the path; answers the error itself (returns -1). */
static int tier_key(struct http_req *req, enum cache_tier *tier, const char **key, size_t *klen)
{
	if (cache_tier_parse(req->match.params[0], tier) < 0) {
		api_error(req, QC_EINPUT, "tier must be one of system, session, content, extraction");
		return -1;
	}
	*key = req->match.params[1];
	*klen = req->match.lens[1];
	if (!cache_key_ok(*key, *klen)) {
		api_error(req, QC_EINPUT, "the key must be 1-255 bytes without control characters");
		return -1;
	}
	return 0;
}

static json_object *time_or_null(time_t t)
{
	char iso[32];
	if (!t)
		return NULL;
	qc_iso8601(t, iso);
	return json_object_new_string(iso);
}

void h_cache_get(struct app *app, struct http_req *req)
{
	struct cache_entry e;
	enum cache_tier tier;
	const char *key;
	size_t klen;
	long long owner;
	enum qc_err rc;
	json_object *o, *v;

	if (tier_key(req, &tier, &key, &klen) < 0)
		return;
	owner = tier == CACHE_SYSTEM ? 0 : req->user.id;
	rc = cache_get(app->db, owner, tier, key, klen, req->now, &e);
	if (rc == QC_ENOTFOUND) {
		cache_note_miss(req->user.id, tier, req->user.plan, req->now);
		http_problem(req, 404, "cache-miss", "Not Found", "no live entry for this key", NULL);
		return;
	}
	if (rc != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	cache_note_hit(e.id, req->user.id, tier, req->user.plan, req->now, app_saving_micro(app, tier));
	o = json_object_new_object();
	json_object_object_add(o, "key", json_object_new_string_len(key, (int)klen));
	json_object_object_add(o, "tier", json_object_new_string(cache_tier_name(tier)));
	v = e.value_is_json ? json_tokener_parse(e.value)
			    : json_object_new_string_len(e.value, (int)e.value_len);
	json_object_object_add(o, "value", v);
	json_object_object_add(o, "metadata", e.metadata ? json_tokener_parse(e.metadata) : NULL);
	json_object_object_add(o, "created_at", time_or_null(e.created_at));
	json_object_object_add(o, "expires_at", time_or_null(e.expires_at));
	json_object_object_add(o, "access_count", json_object_new_int64(e.access_count + 1));
	cache_entry_release(&e);
	http_send_json(req, 200, o);
	json_object_put(o);
}

void h_cache_put(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "value", "metadata", "ttl_seconds", NULL };
	enum cache_tier tier;
	enum cache_put_outcome outcome;
	const char *key, *value, *meta = NULL;
	size_t klen, vlen, mlen = 0;
	long long ttl = 0;
	time_t expires;
	char err[256];
	json_object *jv, *jm, *o, *before = NULL;
	enum qc_err rc;
	int is_json;

	if (tier_key(req, &tier, &key, &klen) < 0)
		return;
	if (tier == CACHE_SYSTEM && !req->user.is_admin) {
		api_error(req, QC_EFORBIDDEN, "only admins write the system tier");
		return;
	}
	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    jsonu_get_int(req->json, "ttl_seconds", 0, 1, CACHE_TTL_MAX, &ttl, err, sizeof err) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (!json_object_object_get_ex(req->json, "value", &jv) || json_object_is_type(jv, json_type_null)) {
		api_error(req, QC_EINPUT, "field 'value' is required (a string or any JSON value)");
		return;
	}
	is_json = !json_object_is_type(jv, json_type_string);
	if (is_json) {
		value = json_object_to_json_string_length(jv, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE, &vlen);
	} else {
		value = json_object_get_string(jv);
		vlen = (size_t)json_object_get_string_len(jv);
	}
	if (json_object_object_get_ex(req->json, "metadata", &jm) && !json_object_is_type(jm, json_type_null)) {
		if (!json_object_is_type(jm, json_type_object)) {
			api_error(req, QC_EINPUT, "field 'metadata' must be a JSON object");
			return;
		}
		meta = json_object_to_json_string_length(jm, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE, &mlen);
	}
	if (!value || (long long)(vlen + mlen) > app->cfg.cache_max_entry) {
		char d[128];
		snprintf(d, sizeof d, "the entry is %zu bytes; the maximum is %lld", vlen + mlen,
			 app->cfg.cache_max_entry);
		http_problem(req, 413, "entry-too-large", http_reason(413), d, NULL);
		return;
	}
	if (tier == CACHE_SYSTEM && (before = admin_system_snapshot(app->db, key, req->now, &rc), rc != QC_OK)) {
		api_error(req, rc, NULL);
		return;
	}
	rc = cache_put(app->db, tier == CACHE_SYSTEM ? 0 : req->user.id, tier, key, klen, value, vlen,
		       is_json, meta, mlen, ttl, req->now, app->cfg.cache_user_max_bytes, &outcome, &expires);
	if (rc != QC_OK) {
		json_object_put(before);
		api_error(req, rc, NULL);
		return;
	}
	if (tier == CACHE_SYSTEM) {   /* the system tier's changes are audited (SPEC §14) */
		struct admin_actor actor;
		admin_api_actor(&actor, &req->user);
		admin_audit(app->db, &actor, "system.put", 0, key,
			    before, admin_system_snapshot(app->db, key, req->now, &rc), req->now);
	}
	if (outcome == CACHE_FULL) {
		char d[160];
		snprintf(d, sizeof d, "your cache holds at most %lld bytes; delete entries or wait "
			 "for them to expire", app->cfg.cache_user_max_bytes);
		http_problem(req, 507, "cache-full", http_reason(507), d, NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "key", json_object_new_string_len(key, (int)klen));
	json_object_object_add(o, "tier", json_object_new_string(cache_tier_name(tier)));
	json_object_object_add(o, "cached", json_object_new_boolean(outcome == CACHE_STORED));
	if (outcome == CACHE_SKIPPED_PLAN) {
		json_object_object_add(o, "reason", json_object_new_string("plan"));
	} else {
		json_object_object_add(o, "expires_at", time_or_null(expires));
		json_object_object_add(o, "size_bytes", json_object_new_int64((long long)(vlen + mlen)));
	}
	http_send_json(req, 200, o);
	json_object_put(o);
}

void h_cache_delete(struct app *app, struct http_req *req)
{
	enum cache_tier tier;
	const char *key;
	size_t klen;
	enum qc_err rc;

	if (tier_key(req, &tier, &key, &klen) < 0)
		return;
	if (tier == CACHE_SYSTEM && !req->user.is_admin) {
		api_error(req, QC_EFORBIDDEN, "only admins delete from the system tier");
		return;
	}
	if (tier == CACHE_SYSTEM) {   /* through admin.c: audited */
		struct admin_actor actor;
		admin_api_actor(&actor, &req->user);
		rc = admin_system_delete(app->db, &actor, key, req->now);
	} else {
		rc = cache_delete(app->db, req->user.id, tier, key, klen);
	}
	if (rc == QC_ENOTFOUND) {
		http_problem(req, 404, "cache-miss", "Not Found", "no entry for this key", NULL);
		return;
	}
	if (rc != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	http_send(req, 204, "application/json", "", 0);
}

void h_cache_hash(struct app *app, struct http_req *req)
{
	static const char *const allowed[] = { "url", "text", NULL };
	const char *url = NULL, *text = NULL;
	size_t ulen = 0, tlen = 0, nlen = 0;
	char err[256], hex[65];
	int hu, ht;
	char *norm;
	json_object *o;

	(void)app;
	if (jsonu_only_fields(req->json, allowed, err, sizeof err) < 0 ||
	    (hu = jsonu_get_str(req->json, "url", 0, (size_t)-1, 0, &url, &ulen, err, sizeof err)) < 0 ||
	    (ht = jsonu_get_str(req->json, "text", 0, (size_t)-1, 0, &text, &tlen, err, sizeof err)) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (hu + ht != 1) {
		api_error(req, QC_EINPUT, "give exactly one of 'url' or 'text'");
		return;
	}
	norm = hu ? cache_normalize_url(url, ulen, &nlen) : cache_normalize_text(text, tlen, &nlen);
	if (!norm) {
		api_error(req, QC_ENOMEM, NULL);
		return;
	}
	qc_sha256_hex(norm, nlen, hex);
	o = json_object_new_object();
	json_object_object_add(o, "hash", json_object_new_string(hex));
	json_object_object_add(o, "kind", json_object_new_string(hu ? "url" : "text"));
	json_object_object_add(o, "normalized", json_object_new_string_len(norm, (int)nlen));
	free(norm);
	http_send_json(req, 200, o);
	json_object_put(o);
}

static double usd(long long micro)
{
	return (double)micro / 1e6;
}

static json_object *tier_stats(long long hits, long long misses, long long entries,
			       long long bytes, long long saved)
{
	json_object *t = json_object_new_object();
	json_object_object_add(t, "hits", json_object_new_int64(hits));
	json_object_object_add(t, "misses", json_object_new_int64(misses));
	json_object_object_add(t, "hit_ratio", json_object_new_double(hits + misses ?
				(double)hits / (double)(hits + misses) : 0.0));
	json_object_object_add(t, "entries", json_object_new_int64(entries));
	json_object_object_add(t, "bytes", json_object_new_int64(bytes));
	json_object_object_add(t, "saved_usd", json_object_new_double(usd(saved)));
	return t;
}

static int row_tier(const struct db_rows *r, unsigned i)
{
	enum cache_tier t;
	return cache_tier_parse(db_cell(r, i, 0), &t) < 0 ? -1 : (int)t;
}

void h_cache_stats(struct app *app, struct http_req *req)
{
	long long hits[CACHE_NTIERS] = { 0 }, misses[CACHE_NTIERS] = { 0 }, saved[CACHE_NTIERS] = { 0 };
	long long entries[CACHE_NTIERS] = { 0 }, bytes[CACHE_NTIERS] = { 0 };
	long long th = 0, tm = 0, ts = 0, te = 0, tb = 0;
	struct db_rows *h = NULL, *e = NULL, *pl = NULL, *top = NULL, *ttl = NULL, *val = NULL, *reg = NULL;
	struct db_rows *wrm = NULL;
	long long evicted = 0;
	int global = req->user.is_admin;
	json_object *o, *tiers;
	enum qc_err rc;

	cache_flush(app->db);   /* this worker's own recent hits count at once */
	if ((rc = cache_stats_hits(app->db, req->user.id, global, &h)) != QC_OK ||
	    (rc = cache_stats_entries(app->db, req->user.id, global, req->now, &e)) != QC_OK ||
	    (rc = cache_stats_ttl(app->db, req->user.id, global, req->now, &ttl)) != QC_OK ||
	    (rc = cache_stats_value(app->db, req->user.id, global, req->now,
				    app->cfg.cache_value_window_s, &val, &evicted)) != QC_OK ||
	    (rc = cache_stats_regions(app->db, req->user.id, global, req->now, &reg)) != QC_OK ||
	    (global && (rc = cache_stats_plans(app->db, &pl)) != QC_OK) ||
	    (global && (rc = cache_stats_top(app->db, 10, req->now, &top)) != QC_OK) ||
	    (global && (rc = cache_stats_warming(app->db, &wrm)) != QC_OK)) {
		api_error(req, rc, NULL);
		goto out;
	}
	for (unsigned i = 0; i < h->nrows; i++) {
		int t = row_tier(h, i);
		if (t < 0)
			continue;
		hits[t] = db_cell_ll(h, i, 1);
		misses[t] = db_cell_ll(h, i, 2);
		saved[t] = db_cell_ll(h, i, 3);
	}
	for (unsigned i = 0; i < e->nrows; i++) {
		int t = row_tier(e, i);
		if (t < 0)
			continue;
		entries[t] = db_cell_ll(e, i, 1);
		bytes[t] = db_cell_ll(e, i, 2);
	}
	o = json_object_new_object();
	json_object_object_add(o, "scope", json_object_new_string(global ? "global" : "user"));
	tiers = json_object_new_object();
	for (int t = 0; t < CACHE_NTIERS; t++) {
		json_object_object_add(tiers, cache_tier_name((enum cache_tier)t),
				       tier_stats(hits[t], misses[t], entries[t], bytes[t], saved[t]));
		th += hits[t], tm += misses[t], ts += saved[t], te += entries[t], tb += bytes[t];
	}
	json_object_object_add(o, "tiers", tiers);
	json_object_object_add(o, "total", tier_stats(th, tm, te, tb, ts));
	{   /* live entries by effective TTL (SPEC §13: adaptive TTL) */
		json_object *arr = json_object_new_array();
		long long n[CACHE_TTL_BUCKETS] = { 0 }, a[CACHE_TTL_BUCKETS] = { 0 };
		for (unsigned i = 0; i < ttl->nrows; i++) {
			long long b = db_cell_ll(ttl, i, 0);
			if (b >= 0 && b < CACHE_TTL_BUCKETS) {
				n[b] = db_cell_ll(ttl, i, 1);
				a[b] = db_cell_ll(ttl, i, 2);
			}
		}
		for (int b = 0; b < CACHE_TTL_BUCKETS; b++) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "ttl_up_to", json_object_new_string(cache_ttl_bucket_names[b]));
			json_object_object_add(x, "entries", json_object_new_int64(n[b]));
			json_object_object_add(x, "adaptive", json_object_new_int64(a[b]));
			json_object_array_add(arr, x);
		}
		json_object_object_add(o, "effective_ttl", arr);
	}
	{   /* what cost-aware caching learns (SPEC §13) */
		json_object *arr = json_object_new_array();
		for (unsigned i = 0; i < val->nrows; i++) {
			json_object *x = json_object_new_object();
			long long hh = db_cell_ll(val, i, 2), st = db_cell_ll(val, i, 3);
			json_object_object_add(x, "task", json_object_new_string(db_cell(val, i, 0)));
			json_object_object_add(x, "tier", json_object_new_string(db_cell(val, i, 1)));
			json_object_object_add(x, "hits", json_object_new_int64(hh));
			json_object_object_add(x, "stores", json_object_new_int64(st));
			json_object_object_add(x, "hits_per_store",
					       st ? json_object_new_double((double)hh / (double)st) : NULL);
			json_object_array_add(arr, x);
		}
		json_object_object_add(o, "task_value", arr);
		json_object_object_add(o, "evicted", json_object_new_int64(evicted));
	}
	{   /* per region (SPEC §13): null is no region (the shared system tier) */
		json_object *arr = json_object_new_array();
		for (unsigned i = 0; i < reg->nrows; i++) {
			json_object *x = tier_stats(db_cell_ll(reg, i, 1), db_cell_ll(reg, i, 2),
						    db_cell_ll(reg, i, 4), db_cell_ll(reg, i, 5),
						    db_cell_ll(reg, i, 3));
			const char *rn = db_cell(reg, i, 0);
			json_object_object_add(x, "region", *rn ? json_object_new_string(rn) : NULL);
			json_object_array_add(arr, x);
		}
		json_object_object_add(o, "regions", arr);
		json_object_object_add(o, "worker_region",
				       app->cfg.region[0] ? json_object_new_string(app->cfg.region) : NULL);
	}
	if (global) {
		json_object *plans = json_object_new_object(), *arr = json_object_new_array();
		for (unsigned i = 0; i < pl->nrows; i++)
			json_object_object_add(plans, db_cell(pl, i, 0),
					       tier_stats(db_cell_ll(pl, i, 1), db_cell_ll(pl, i, 2),
							  db_cell_ll(pl, i, 4), db_cell_ll(pl, i, 5),
							  db_cell_ll(pl, i, 3)));
		json_object_object_add(o, "plans", plans);
		for (unsigned i = 0; i < top->nrows; i++) {
			json_object *k = json_object_new_object();
			json_object_object_add(k, "key", json_object_new_string_len(db_cell(top, i, 0),
						(int)db_cell_len(top, i, 0)));
			json_object_object_add(k, "tier", json_object_new_string(db_cell(top, i, 1)));
			json_object_object_add(k, "user_id", json_object_new_int64(db_cell_ll(top, i, 2)));
			json_object_object_add(k, "hits", json_object_new_int64(db_cell_ll(top, i, 3)));
			json_object_array_add(arr, k);
		}
		json_object_object_add(o, "top_keys", arr);
		arr = json_object_new_object();   /* predictive warming's spend per plan */
		for (unsigned i = 0; i < wrm->nrows; i++) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "calls", json_object_new_int64(db_cell_ll(wrm, i, 1)));
			json_object_object_add(x, "refused_by_budget", json_object_new_int64(db_cell_ll(wrm, i, 2)));
			json_object_object_add(x, "tokens", json_object_new_int64(db_cell_ll(wrm, i, 3)));
			json_object_object_add(x, "cost_usd", json_object_new_double((double)db_cell_ll(wrm, i, 4) / 1e6));
			json_object_object_add(arr, db_cell(wrm, i, 0), x);
		}
		json_object_object_add(o, "warming", arr);
	}
	http_send_json(req, 200, o);
	json_object_put(o);
out:
	db_rows_free(h);
	db_rows_free(e);
	db_rows_free(pl);
	db_rows_free(top);
	db_rows_free(ttl);
	db_rows_free(val);
	db_rows_free(reg);
	db_rows_free(wrm);
}

void h_cache_timeseries(struct app *app, struct http_req *req)
{
	char buf[32];
	long long hours = 24;
	struct db_rows *r = NULL;
	time_t end = req->now - req->now % 3600, since;
	json_object *o, *arr;
	enum qc_err rc;
	unsigned j = 0;

	if (http_query_param(req, "hours", buf, sizeof buf)) {
		char *x;
		hours = strtoll(buf, &x, 10);
		if (*x || !*buf || hours < 1 || hours > 168) {
			api_error(req, QC_EINPUT, "query parameter 'hours' must be an integer from 1 to 168");
			return;
		}
	}
	since = end - (hours - 1) * 3600;
	cache_flush(app->db);
	if ((rc = cache_stats_series(app->db, req->user.id, req->user.is_admin, since, &r)) != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	o = json_object_new_object();
	arr = json_object_new_array();
	json_object_object_add(o, "scope", json_object_new_string(req->user.is_admin ? "global" : "user"));
	json_object_object_add(o, "hours", json_object_new_int64(hours));
	for (time_t b = since; b <= end; b += 3600) {
		json_object *p = json_object_new_object();
		long long hh = 0, mm = 0, ss = 0;
		char iso[32];
		while (j < r->nrows && db_cell_ll(r, j, 0) < b)
			j++;
		if (j < r->nrows && db_cell_ll(r, j, 0) == b) {
			hh = db_cell_ll(r, j, 1);
			mm = db_cell_ll(r, j, 2);
			ss = db_cell_ll(r, j, 3);
		}
		qc_iso8601(b, iso);
		json_object_object_add(p, "hour", json_object_new_string(iso));
		json_object_object_add(p, "hits", json_object_new_int64(hh));
		json_object_object_add(p, "misses", json_object_new_int64(mm));
		json_object_object_add(p, "saved_usd", json_object_new_double(usd(ss)));
		json_object_array_add(arr, p);
	}
	json_object_object_add(o, "buckets", arr);
	db_rows_free(r);
	http_send_json(req, 200, o);
	json_object_put(o);
}

void h_cache_cleanup(struct app *app, struct http_req *req)
{
	unsigned long long n = 0;
	enum qc_err rc = cache_cleanup(app->db, req->now, &n);
	json_object *o;

	if (rc != QC_OK) {
		api_error(req, rc, NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "deleted", json_object_new_int64((long long)n));
	http_send_json(req, 200, o);
	json_object_put(o);
}

/* POST /api/v1/admin/warming/run (admin): the refresh-ahead sweep now, at the
 * request's clock, in this worker's region; how many regenerations started. */
void h_warming_run(struct app *app, struct http_req *req)
{
	int n = warm_sweep(app->db, req->now, 100);
	json_object *o;

	if (n < 0) {
		api_error(req, QC_EDB, NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "started", json_object_new_int(n));
	http_send_json(req, 200, o);
	json_object_put(o);
}
