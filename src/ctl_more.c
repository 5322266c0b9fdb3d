/*
 * ctl_more.c - quotacachectl commands for quota administration:
 *   quota status (--id N | --email E)
 *   quota set-override (--id N | --email E) [--day N|unlimited] [--month ..]
 *         [--hour ..] [--expires YYYY-MM-DDTHH:MM:SSZ] [--reason TEXT]
 *   quota clear-override (--id N | --email E)
 *   quota nearest [--limit N]       users nearest their daily limit
 *   quota expire                    settle stale reservations now
 *   quota prune [--days N]          drop counter windows that ended more than N days ago
 *   cache warm DIR | cache stats | cache cleanup | cache purge (--id N | --email E)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "ctl.h"
#include "db.h"
#include "quota.h"

/* --day etc.: absent -2, "unlimited" -1, else a non-negative integer. */
static int limit_opt(int argc, char **argv, const char *name, long long *v)
{
	const char *s = ctl_opt(argc, argv, name);
	char *end;

	*v = -2;
	if (!s)
		return 0;
	if (strcmp(s, "unlimited") == 0) {
		*v = -1;
		return 1;
	}
	*v = strtoll(s, &end, 10);
	if (!*s || *end || *v < 0) {
		fprintf(stderr, "quotacachectl: %s takes a non-negative integer or 'unlimited'\n", name);
		return -1;
	}
	return 1;
}

static void print_window(const char *name, const struct quota_window *w)
{
	char iso[32];

	qc_iso8601(w->resets_at, iso);
	if (w->limit < 0)
		printf("  %-13s used %lld, reserved %lld, unlimited, resets %s\n", name, w->used,
		       w->reserved, iso);
	else
		printf("  %-13s used %lld, reserved %lld, limit %lld, remaining %lld (%d%%, %s), resets %s\n",
		       name, w->used, w->reserved, w->limit, w->remaining, w->percent,
		       quota_level_name(w->level), iso);
}

static int cmd_quota(struct db *db, int argc, char **argv)
{
	time_t now = time(NULL);
	struct db_rows *r = NULL;
	enum qc_err rc;
	long long uid;

	if (argc >= 1 && strcmp(argv[0], "status") == 0) {
		struct quota_status st;
		if (!(uid = ctl_user_arg(db, argc, argv)))
			return 2;
		if ((rc = quota_status_get(db, uid, NULL, 0, now, &st)) != QC_OK)
			return ctl_fail(rc, db, "quota status");
		printf("user %lld, plan %s, level %s\n", uid, st.plan, quota_level_name(st.overall));
		for (int i = 0; i < QUOTA_NKINDS; i++)
			print_window(quota_kind_name((enum quota_kind)i), &st.w[i]);
		if (quota_override_get(db, uid, &r) == QC_OK && r->nrows) {
			char iso[32] = "never";
			if (db_cell(r, 0, 3))
				qc_iso8601(db_cell_ll(r, 0, 3), iso);
			printf("  override (-1 = unlimited): day %s, month %s, hour %s, expires %s, reason '%s'\n",
			       db_cell(r, 0, 0) ? db_cell(r, 0, 0) : "plan",
			       db_cell(r, 0, 1) ? db_cell(r, 0, 1) : "plan",
			       db_cell(r, 0, 2) ? db_cell(r, 0, 2) : "plan", iso, db_cell(r, 0, 4));
		}
		db_rows_free(r);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "set-override") == 0) {
		long long d, m, h, exp = 0;
		const char *e = ctl_opt(argc, argv, "--expires"), *reason = ctl_opt(argc, argv, "--reason");
		int nd, nm, nh;
		if (!(uid = ctl_user_arg(db, argc, argv)))
			return 2;
		if ((nd = limit_opt(argc, argv, "--day", &d)) < 0 ||
		    (nm = limit_opt(argc, argv, "--month", &m)) < 0 ||
		    (nh = limit_opt(argc, argv, "--hour", &h)) < 0)
			return 2;
		if (!nd && !nm && !nh) {
			fprintf(stderr, "quotacachectl: give at least one of --day, --month, --hour\n");
			return 2;
		}
		if (e && qc_parse_iso8601(e, &exp) < 0) {
			fprintf(stderr, "quotacachectl: --expires takes YYYY-MM-DDTHH:MM:SSZ\n");
			return 2;
		}
		if ((rc = quota_override_set(db, uid, d, m, h, (time_t)exp, reason ? reason : "")) != QC_OK)
			return ctl_fail(rc, db, "quota set-override");
		printf("override set for user %lld\n", uid);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "clear-override") == 0) {
		if (!(uid = ctl_user_arg(db, argc, argv)))
			return 2;
		if ((rc = quota_override_clear(db, uid)) != QC_OK)
			return ctl_fail(rc, db, "quota clear-override");
		printf("override cleared for user %lld\n", uid);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "nearest") == 0) {
		long long n;
		if (ctl_int_opt(argc, argv, "--limit", 1, 10000, 20, &n) < 0)
			return 2;
		if ((rc = quota_nearest(db, now, n, &r)) != QC_OK)
			return ctl_fail(rc, db, "quota nearest");
		printf("id\temail\tplan\ttoday\tdaily_limit\tpercent\toverride_expires\n");
		for (unsigned i = 0; i < r->nrows; i++) {
			/* an override in force: when it ends ("never" without an end) */
			char exp[32] = "-";
			if (db_cell_ll(r, i, 6) == 1) {
				if (db_cell_null(r, i, 7))
					snprintf(exp, sizeof exp, "never");
				else
					qc_iso8601(db_cell_ll(r, i, 7), exp);
			}
			printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", db_cell(r, i, 0), db_cell(r, i, 1),
			       db_cell(r, i, 2), db_cell(r, i, 3), db_cell(r, i, 4), db_cell(r, i, 5), exp);
		}
		db_rows_free(r);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "expiring") == 0) {
		long long days;
		if (ctl_int_opt(argc, argv, "--days", 1, 365, 7, &days) < 0)
			return 2;
		if ((rc = quota_overrides_expiring(db, now, days * 86400, 1000, &r)) != QC_OK)
			return ctl_fail(rc, db, "quota expiring");
		printf("id\temail\tplan\texpires\tday\tmonth\thour\treason\n");
		for (unsigned i = 0; i < r->nrows; i++) {
			char exp[32], lim[3][24];
			qc_iso8601(db_cell_ll(r, i, 6), exp);
			for (unsigned c = 0; c < 3; c++)
				snprintf(lim[c], sizeof lim[c], "%s", db_cell_null(r, i, 3 + c) ? "plan"
					 : db_cell_ll(r, i, 3 + c) < 0 ? "unlimited" : db_cell(r, i, 3 + c));
			printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", db_cell(r, i, 0), db_cell(r, i, 1),
			       db_cell(r, i, 2), exp, lim[0], lim[1], lim[2], db_cell(r, i, 7));
		}
		db_rows_free(r);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "expire") == 0) {
		if ((rc = quota_expire_all(db, now)) != QC_OK)
			return ctl_fail(rc, db, "quota expire");
		printf("stale reservations expired\n");
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "prune") == 0) {
		long long days;
		unsigned long long n = 0;
		if (ctl_int_opt(argc, argv, "--days", 1, 100000, 400, &days) < 0)
			return 2;
		if ((rc = quota_prune(db, now - days * 86400, &n)) != QC_OK)
			return ctl_fail(rc, db, "quota prune");
		printf("pruned %llu counter row(s) of windows that ended more than %lld days ago\n", n, days);
		return 0;
	}
	fprintf(stderr, "usage: quotacachectl quota status|set-override|clear-override|nearest|expiring|expire|prune ...\n");
	return 2;
}

static int cmd_cache(struct db *db, const struct config *cfg, int argc, char **argv)
{
	time_t now = time(NULL);
	unsigned long long n = 0;
	struct db_rows *h = NULL, *e = NULL;
	enum qc_err rc;

	if (argc >= 2 && strcmp(argv[0], "warm") == 0) {
		int loaded = 0, same = 0, skipped = 0;
		if ((rc = cache_warm_dir(db, argv[1], now, cfg->cache_max_entry, &loaded, &same,
					 &skipped)) != QC_OK)
			return ctl_fail(rc, db, "cache warm");
		printf("system tier: %d loaded, %d unchanged, %d skipped\n", loaded, same, skipped);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "cleanup") == 0) {
		if ((rc = cache_cleanup(db, now, &n)) != QC_OK)
			return ctl_fail(rc, db, "cache cleanup");
		printf("removed %llu expired entr%s\n", n, n == 1 ? "y" : "ies");
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "purge") == 0) {
		long long uid = ctl_user_arg(db, argc, argv);
		if (!uid)
			return 2;
		if ((rc = cache_purge_user(db, uid, &n)) != QC_OK)
			return ctl_fail(rc, db, "cache purge");
		printf("removed %llu entr%s of user %lld\n", n, n == 1 ? "y" : "ies", uid);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "stats") == 0) {
		if ((rc = cache_stats_hits(db, 0, 1, &h)) != QC_OK ||
		    (rc = cache_stats_entries(db, 0, 1, now, &e)) != QC_OK) {
			db_rows_free(h);
			return ctl_fail(rc, db, "cache stats");
		}
		printf("tier\thits\tmisses\tsaved_usd\tentries\tbytes\n");
		for (int t = 0; t < CACHE_NTIERS; t++) {
			const char *name = cache_tier_name((enum cache_tier)t);
			long long hits = 0, misses = 0, saved = 0, entries = 0, bytes = 0;
			for (unsigned i = 0; i < h->nrows; i++)
				if (strcmp(db_cell(h, i, 0), name) == 0) {
					hits = db_cell_ll(h, i, 1);
					misses = db_cell_ll(h, i, 2);
					saved = db_cell_ll(h, i, 3);
				}
			for (unsigned i = 0; i < e->nrows; i++)
				if (strcmp(db_cell(e, i, 0), name) == 0) {
					entries = db_cell_ll(e, i, 1);
					bytes = db_cell_ll(e, i, 2);
				}
			printf("%s\t%lld\t%lld\t%.6f\t%lld\t%lld\n", name, hits, misses,
			       (double)saved / 1e6, entries, bytes);
		}
		db_rows_free(h);
		db_rows_free(e);
		return 0;
	}
	fprintf(stderr, "usage: quotacachectl cache warm DIR | stats | cleanup | purge (--id N|--email E)\n");
	return 2;
}

int ctl_more(struct db *db, const struct config *cfg, int argc, char **argv)
{
	if (strcmp(argv[0], "quota") == 0)
		return cmd_quota(db, argc - 1, argv + 1);
	if (strcmp(argv[0], "cache") == 0)
		return cmd_cache(db, cfg, argc - 1, argv + 1);
	if (strcmp(argv[0], "experiment") == 0)
		return ctl_experiment(db, argc - 1, argv + 1);
	return -1;
}

void ctl_usage_more(void)
{
	fprintf(stderr,
		"  quota status (--id N|--email E)           a user's windows and override\n"
		"  quota set-override (--id N|--email E) [--day N|unlimited] [--month ..] [--hour ..]\n"
		"        [--expires YYYY-MM-DDTHH:MM:SSZ] [--reason TEXT]\n"
		"  quota clear-override (--id N|--email E)\n"
		"  quota nearest [--limit N]                 users nearest their daily limit, override expiry\n"
		"  quota expiring [--days N]                 overrides that end within N days (7), soonest first\n"
		"  quota expire                              settle stale reservations now\n"
		"  quota prune [--days N]                    drop windows that ended > N days ago\n"
		"  cache warm DIR                            load DIR's files into the system tier\n"
		"  cache stats                               hits, misses, savings, entries per tier\n"
		"  cache cleanup                             remove expired entries\n"
		"  cache purge (--id N|--email E)            remove every entry of a user\n"
		"  experiment create NAME [--control-pct N] [--description TEXT]\n"
		"                                            a draft A/B test: control arm without the cache\n"
		"  experiment start|stop|show ID-OR-NAME     run it (one at a time), end it, its arms\n"
		"  experiment list                           every experiment with its arms' figures\n");
}
