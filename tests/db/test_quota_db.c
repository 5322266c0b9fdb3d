/* test_quota_db.c - the quota module against the test MariaDB with a
 * settable clock: commit/release/expiry arithmetic, overruns, overrides and
 * their expiry, window rollover, enterprise never refused. */
#include <string.h>

#include "dbtest.h"
#include "quota.h"
#include "tap.h"

static long long day_admitted(struct db *db, long long u, time_t now)
{
	struct quota_status st;
	if (quota_status_get(db, u, NULL, 0, now, &st) != QC_OK)
		return -1;
	return st.w[QUOTA_DAY].used + st.w[QUOTA_DAY].reserved;
}

int main(void)
{
	struct db *db = dbt_open();
	struct quota_status st;
	char id[QUOTA_ID_LEN + 1], id2[QUOTA_ID_LEN + 1], state[16];
	time_t exp, now = dbt_utc(2026, 3, 10, 12, 0, 0);
	long long est;
	long long u = dbt_user(db, "freemium");

	/* estimates: table value, default, prompt rule */
	CHECK(quota_reserve(db, u, "cv_drafting", 0, now, 600, id, &exp, &st) == QC_OK &&
	      st.estimate == 4000, "cv_drafting reserves its table estimate (4000)");
	CHECK(strlen(id) == 32 && exp == now + 600, "id is 32 hex, expiry = now + ttl");
	CHECK(st.w[QUOTA_DAY].reserved == 4000 && st.w[QUOTA_MONTH].reserved == 4000 &&
	      st.w[QUOTA_HOUR].used == 1, "reservation held in day, month and one call in hour");
	CHECK(strcmp(st.plan, "freemium") == 0, "plan reported");

	/* commit less than the estimate frees the difference */
	CHECK(quota_settle(db, u, id, 2500, now + 1, state, &est) == QC_OK &&
	      strcmp(state, "committed") == 0 && est == 4000, "commit 2500 of 4000");
	CHECK(quota_status_get(db, u, NULL, 0, now + 1, &st) == QC_OK &&
	      st.w[QUOTA_DAY].used == 2500 && st.w[QUOTA_DAY].reserved == 0 &&
	      st.w[QUOTA_MONTH].used == 2500, "used 2500, nothing reserved");
	CHECK(quota_settle(db, u, id, 100, now + 2, state, NULL) == QC_ECONFLICT &&
	      strcmp(state, "committed") == 0, "double commit is a conflict");
	CHECK(quota_settle(db, u, id, -1, now + 2, state, NULL) == QC_ECONFLICT, "release after commit refused");
	CHECK(day_admitted(db, u, now + 2) == 2500, "refused settles change nothing");

	/* release frees everything */
	CHECK(quota_reserve(db, u, "unknown_task", 0, now + 3, 600, id, &exp, &st) == QC_OK &&
	      st.estimate == 1500, "unknown task uses the default estimate 1500");
	CHECK(quota_settle(db, u, id, -1, now + 4, state, NULL) == QC_OK &&
	      strcmp(state, "released") == 0, "release");
	CHECK(day_admitted(db, u, now + 4) == 2500, "release gave all 1500 back");
	CHECK(quota_settle(db, u, id, 10, now + 5, state, NULL) == QC_ECONFLICT &&
	      strcmp(state, "released") == 0, "commit after release refused");

	/* another user's reservation is not found */
	long long other = dbt_user(db, "freemium");
	CHECK(quota_reserve(db, u, "extraction", 0, now + 6, 600, id, &exp, &st) == QC_OK, "reserve 2000");
	CHECK(quota_settle(db, other, id, 1, now + 7, state, NULL) == QC_ENOTFOUND,
	      "another user cannot commit it (not found)");
	CHECK(quota_settle(db, u, "00000000000000000000000000000000", 1, now + 7, state, NULL) == QC_ENOTFOUND,
	      "unknown id not found");

	/* expiry with the settable clock: status stops counting it at once,
	 * the next reserve settles it for good */
	CHECK(day_admitted(db, u, now + 6 + 599) == 4500, "before expiry the 2000 are held");
	CHECK(day_admitted(db, u, now + 6 + 600) == 2500, "at expiry status no longer counts them");
	CHECK(quota_reserve(db, u, "x", 0, now + 700, 600, id2, &exp, &st) == QC_OK &&
	      st.w[QUOTA_DAY].reserved == 1500, "a later reserve expired the stale reservation");
	CHECK(quota_settle(db, u, id, 2000, now + 701, state, NULL) == QC_OK &&
	      strcmp(state, "committed") == 0, "a commit after the expiry still records the actual tokens");
	CHECK(day_admitted(db, u, now + 701) == 6000, "... 2500 + 2000 used, 1500 reserved");
	CHECK(quota_settle(db, u, id, 2000, now + 701, state, NULL) == QC_ECONFLICT &&
	      strcmp(state, "committed") == 0, "a second commit of it changes nothing");
	CHECK(quota_settle(db, u, id2, 1500, now + 702, state, NULL) == QC_OK, "commit the new one fully");
	CHECK(day_admitted(db, u, now + 702) == 6000, "used 6000 of 10000");

	/* actual > estimate is recorded and the next reserve is refused */
	CHECK(quota_reserve(db, u, "x", 0, now + 800, 600, id, &exp, &st) == QC_OK, "reserve 1500");
	CHECK(quota_settle(db, u, id, 7000, now + 801, state, NULL) == QC_OK, "commit 7000 (> estimate)");
	CHECK(day_admitted(db, u, now + 801) == 13000, "the overrun is recorded honestly (13000)");
	CHECK(quota_status_get(db, u, NULL, 0, now + 801, &st) == QC_OK &&
	      st.w[QUOTA_DAY].level == QUOTA_EXCEEDED && st.w[QUOTA_DAY].remaining == 0, "daily exceeded");
	CHECK(quota_reserve(db, u, "x", 0, now + 802, 600, id, &exp, &st) == QC_EQUOTA &&
	      st.w[QUOTA_DAY].over && !st.w[QUOTA_MONTH].over, "next reserve refused by the daily window");
	CHECK(id[0] == 0, "a refusal hands out no id");

	/* the next UTC day is a new window; the month remembers */
	time_t tomorrow = dbt_utc(2026, 3, 11, 0, 0, 5);
	CHECK(quota_reserve(db, u, "x", 0, tomorrow, 600, id, &exp, &st) == QC_OK &&
	      st.w[QUOTA_DAY].used == 0 && st.w[QUOTA_MONTH].used == 13000, "new day window, month carries");
	quota_settle(db, u, id, -1, tomorrow + 1, state, NULL);

	/* overrides: take effect, lapse at expires_at */
	long long v = dbt_user(db, "freemium");
	CHECK(quota_override_set(db, v, 50000, -2, -2, tomorrow + 3600, "support grant") == QC_OK,
	      "set a daily override until +1h");
	CHECK(quota_status_get(db, v, NULL, 0, tomorrow, &st) == QC_OK &&
	      st.w[QUOTA_DAY].limit == 50000 && st.w[QUOTA_MONTH].limit == 100000, "override replaces only the daily limit");
	int ok = 0;
	for (int i = 0; i < 12; i++)
		ok += quota_reserve(db, v, "cv_drafting", 0, tomorrow + 10, 600, id, &exp, &st) == QC_OK &&
		      quota_settle(db, v, id, 4000, tomorrow + 11, state, NULL) == QC_OK;
	CHECK(ok == 12, "12 x 4000 admitted and committed under the 50000 override");
	CHECK(quota_status_get(db, v, NULL, 0, tomorrow + 3600, &st) == QC_OK &&
	      st.w[QUOTA_DAY].limit == 10000, "override lapsed at expires_at: plan limit again");
	CHECK(quota_reserve(db, v, "x", 0, tomorrow + 3601, 600, id, &exp, &st) == QC_EQUOTA,
	      "after the lapse the plan limit refuses");
	CHECK(quota_override_set(db, v, -1, -1, -1, 0, "unlimited") == QC_OK, "unlimited override");
	CHECK(quota_reserve(db, v, "x", 0, tomorrow + 3602, 600, id, &exp, &st) == QC_OK &&
	      st.w[QUOTA_DAY].limit == -1, "unlimited override admits");
	CHECK(quota_override_clear(db, v) == QC_OK, "override cleared");
	CHECK(quota_override_clear(db, v) == QC_ENOTFOUND, "clearing twice: not found");
	CHECK(quota_override_set(db, 999999999, 1, -2, -2, 0, "") == QC_ENOTFOUND, "override for no user");

	/* hourly calls */
	long long w = dbt_user(db, "freemium");
	quota_override_set(db, w, -1, -1, 3, 0, "three calls");
	ok = 0;
	for (int i = 0; i < 5; i++)
		ok += quota_reserve(db, w, "x", 0, now, 600, id, &exp, &st) == QC_OK;
	CHECK(ok == 3 && st.w[QUOTA_HOUR].over, "call limit 3: third admitted, fourth refused by the hour");
	CHECK(quota_reserve(db, w, "x", 0, now + 3600, 600, id, &exp, &st) == QC_OK,
	      "next hour admits again");

	/* enterprise is never refused */
	long long e = dbt_user(db, "enterprise");
	ok = 0;
	for (int i = 0; i < 20; i++)
		ok += quota_reserve(db, e, "cv_drafting", 1000000000, now, 600, id, &exp, &st) == QC_OK;
	CHECK(ok == 20 && st.w[QUOTA_DAY].limit == -1 && st.overall == QUOTA_OK,
	      "enterprise: 20 reservations of 1e9 tokens admitted");

	/* plan change applies to the next reserve */
	CHECK(users_set_plan(db, u, "payg") == QC_OK, "upgrade to payg");
	CHECK(quota_reserve(db, u, "x", 0, now + 900, 600, id, &exp, &st) == QC_OK &&
	      st.w[QUOTA_DAY].limit == 50000 && strcmp(st.plan, "payg") == 0, "payg limit admits again");
	CHECK(quota_reserve(db, 999999999, "x", 0, now, 600, id, &exp, &st) == QC_ENOTFOUND, "reserve for no user");
	unsigned long long pruned = 0;
	CHECK(quota_prune(db, dbt_utc(2000, 1, 1, 0, 0, 0), &pruned) == QC_OK, "prune runs");
	dbt_close(db);
	return TAP_DONE();
}
