/*
 * ctl_quota.c - quotacachectl commands for quota administration (changes go
 * through admin.c, audited):
 *   quota status (--id N | --email E)
 *   quota set-override (--id N | --email E) [--day N|unlimited] [--month ..]
 *         [--hour ..] [--expires YYYY-MM-DDTHH:MM:SSZ] [--reason TEXT]
 *   quota clear-override (--id N | --email E)
 *   quota nearest [--limit N]       users nearest their daily limit
 *   quota expire                    settle stale reservations now
 *   quota prune [--days N]          drop counter windows that ended more than N days ago
 *   quota prune-alerts              drop delivered webhook crossings of windows > 32 days old
 *   quota expiring [--days N]       overrides that end within N days
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "alerts.h"
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

int ctl_quota(struct db *db, int argc, char **argv)
{
	struct admin_actor actor;

	time_t now = time(NULL);
	struct db_rows *r = NULL;
	enum qc_err rc;
	long long uid;

	admin_cli_actor(&actor);
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
		if ((rc = admin_override_set(db, &actor, uid, d, m, h, (time_t)exp, reason ? reason : "", now)) != QC_OK)
			return ctl_fail(rc, db, "quota set-override");
		printf("override set for user %lld\n", uid);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "clear-override") == 0) {
		if (!(uid = ctl_user_arg(db, argc, argv)))
			return 2;
		if ((rc = admin_override_clear(db, &actor, uid, now)) != QC_OK)
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
	if (argc >= 1 && strcmp(argv[0], "prune-alerts") == 0) {
		unsigned long long n = 0;
		if ((rc = alerts_prune(db, now, &n)) != QC_OK)
			return ctl_fail(rc, db, "quota prune-alerts");
		printf("pruned %llu level crossing(s) of windows that began more than 32 days ago\n", n);
		return 0;
	}
	fprintf(stderr, "usage: quotacachectl quota status|set-override|clear-override|nearest|expiring|expire|prune|"
		"prune-alerts ...\n");
	return 2;
}

void ctl_usage_quota(void)
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
		"  quota prune-alerts                        drop sent or failed webhook crossings > 32 days old\n");
}
