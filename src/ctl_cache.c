/*
 * ctl_cache.c - quotacachectl commands for the cache:
 *   cache warm DIR | cache stats | cache cleanup | cache purge (--id N | --email E)
 * A purge goes through admin.c (audited).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "cache.h"
#include "ctl.h"
#include "db.h"

int ctl_cache(struct db *db, const struct config *cfg, int argc, char **argv)
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
		if (loaded) {   /* a change of the system tier: audited */
			struct admin_actor actor;
			json_object *after = json_object_new_object();
			admin_cli_actor(&actor);
			json_object_object_add(after, "loaded", json_object_new_int(loaded));
			json_object_object_add(after, "unchanged", json_object_new_int(same));
			admin_audit(db, &actor, "system.warm", 0, argv[1], NULL, after, now);
		}
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
		struct admin_actor actor;
		if (!uid)
			return 2;
		admin_cli_actor(&actor);
		if ((rc = admin_cache_purge(db, &actor, uid, now, &n)) != QC_OK)
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

void ctl_usage_cache(void)
{
	fprintf(stderr,
		"  cache warm DIR                            load DIR's files into the system tier\n"
		"  cache stats                               hits, misses, savings, entries per tier\n"
		"  cache cleanup                             remove expired entries\n"
		"  cache purge (--id N|--email E)            remove every entry of a user\n");
}
