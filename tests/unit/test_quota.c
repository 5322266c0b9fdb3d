/* test_quota.c - the pure quota parts: UTC windows, levels, estimates,
 * RateLimit header text. */
#include <time.h>

#include "quota.h"
#include "tap.h"

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = s };
	return timegm(&tm);
}

int main(void)
{
	time_t t = utc(2026, 11, 25, 13, 45, 10);

	/* hour / day windows */
	CHECK(quota_window_start(QUOTA_HOUR, t) == utc(2026, 11, 25, 13, 0, 0), "hour start");
	CHECK(quota_window_reset(QUOTA_HOUR, t) == utc(2026, 11, 25, 14, 0, 0), "hour reset");
	CHECK(quota_window_start(QUOTA_HOUR, utc(2026, 11, 25, 13, 0, 0)) == utc(2026, 11, 25, 13, 0, 0),
	      "on the hour boundary the new hour starts");
	CHECK(quota_window_start(QUOTA_HOUR, utc(2026, 11, 25, 12, 59, 59)) == utc(2026, 11, 25, 12, 0, 0),
	      "one second before the hour is the old hour");
	CHECK(quota_window_start(QUOTA_DAY, t) == utc(2026, 11, 25, 0, 0, 0), "day start");
	CHECK(quota_window_reset(QUOTA_DAY, t) == utc(2026, 11, 26, 0, 0, 0), "day reset");
	CHECK(quota_window_reset(QUOTA_DAY, utc(2026, 12, 31, 23, 59, 59)) == utc(2027, 1, 1, 0, 0, 0),
	      "day reset across the year");
	/* months */
	CHECK(quota_window_start(QUOTA_MONTH, t) == utc(2026, 11, 1, 0, 0, 0), "month start");
	CHECK(quota_window_reset(QUOTA_MONTH, t) == utc(2026, 12, 1, 0, 0, 0), "month reset (30-day month)");
	CHECK(quota_window_reset(QUOTA_MONTH, utc(2026, 12, 15, 0, 0, 0)) == utc(2027, 1, 1, 0, 0, 0),
	      "December resets on 1 January");
	CHECK(quota_window_reset(QUOTA_MONTH, utc(2026, 1, 31, 23, 59, 59)) == utc(2026, 2, 1, 0, 0, 0),
	      "31-day month");
	CHECK(quota_window_reset(QUOTA_MONTH, utc(2026, 2, 10, 0, 0, 0)) - utc(2026, 2, 1, 0, 0, 0) == 28 * 86400,
	      "February 2026 has 28 days");
	CHECK(quota_window_reset(QUOTA_MONTH, utc(2028, 2, 29, 12, 0, 0)) == utc(2028, 3, 1, 0, 0, 0),
	      "leap day 2028-02-29 belongs to February, resets 1 March");
	CHECK(quota_window_start(QUOTA_DAY, utc(2028, 2, 29, 12, 0, 0)) == utc(2028, 2, 29, 0, 0, 0),
	      "leap day is its own day window");
	CHECK(quota_window_start(QUOTA_MONTH, utc(2028, 3, 1, 0, 0, 0)) == utc(2028, 3, 1, 0, 0, 0),
	      "midnight of the 1st starts the new month");

	/* levels at the thresholds */
	int pct;
	CHECK(quota_level_of(7400, 10000, &pct) == QUOTA_OK && pct == 74, "74%% ok");
	CHECK(quota_level_of(7500, 10000, &pct) == QUOTA_WARNING && pct == 75, "75%% warning");
	CHECK(quota_level_of(7499, 10000, &pct) == QUOTA_OK && pct == 74, "74.99%% still ok (floor)");
	CHECK(quota_level_of(8900, 10000, &pct) == QUOTA_WARNING, "89%% warning");
	CHECK(quota_level_of(9000, 10000, &pct) == QUOTA_CRITICAL, "90%% critical");
	CHECK(quota_level_of(9999, 10000, &pct) == QUOTA_CRITICAL && pct == 99, "99%% critical");
	CHECK(quota_level_of(10000, 10000, &pct) == QUOTA_EXCEEDED && pct == 100, "100%% exceeded");
	CHECK(quota_level_of(12500, 10000, &pct) == QUOTA_EXCEEDED && pct == 125, "over 100%% exceeded");
	CHECK(quota_level_of(99, 100, &pct) == QUOTA_CRITICAL && pct == 99, "99 of 100 calls");
	CHECK(quota_level_of(5, -1, &pct) == QUOTA_OK && pct == 0, "unlimited is ok");
	CHECK(quota_level_of(0, 0, &pct) == QUOTA_EXCEEDED, "zero limit is exceeded");

	/* window fill, remaining */
	struct quota_window w;
	quota_window_fill(&w, QUOTA_DAY, t, 6000, 2000, 10000);
	CHECK(w.remaining == 2000 && w.percent == 80 && w.level == QUOTA_WARNING, "remaining counts reserved");
	quota_window_fill(&w, QUOTA_DAY, t, 12000, 0, 10000);
	CHECK(w.remaining == 0, "remaining never negative");
	quota_window_fill(&w, QUOTA_DAY, t, 12000, 0, -1);
	CHECK(w.remaining == -1 && w.level == QUOTA_OK, "unlimited remaining");

	/* estimates */
	CHECK(quota_prompt_min(NULL, 0, 0) == 0, "no prompt, no max_tokens");
	CHECK(quota_prompt_min("abcdefgh", 8, 100) == 102, "8 chars / 4 + 100");
	CHECK(quota_prompt_min("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, 0) == 1, "4 two-byte characters count as 4");
	CHECK(quota_task_ok("cv_drafting", 11) && quota_task_ok("x.y-z", 5), "task names ok");
	CHECK(!quota_task_ok("a'b", 3) && !quota_task_ok("", 0) && !quota_task_ok("a b", 3), "bad task names");

	/* tightest / refusing / headers */
	struct quota_status st = { 0 };
	quota_window_fill(&st.w[QUOTA_DAY], QUOTA_DAY, t, 6000, 0, 10000);
	quota_window_fill(&st.w[QUOTA_MONTH], QUOTA_MONTH, t, 6000, 0, 100000);
	quota_window_fill(&st.w[QUOTA_HOUR], QUOTA_HOUR, t, 10, 0, 100);
	CHECK(quota_tightest(&st) == QUOTA_DAY, "tightest window is the daily one");
	char pol[256], cur[256], lim[256], rem[256], rst[256];
	CHECK(quota_ratelimit_headers(&st, t, pol, cur, lim, rem, rst) == 0, "headers built");
	CHECK_STR(pol, "\"daily\";q=10000;w=86400, \"monthly\";q=100000;w=2592000, \"hourly\";q=100;w=3600",
		  "RateLimit-Policy lists every limited window");
	CHECK_STR(cur, "\"daily\";r=4000;t=36890", "RateLimit for the tightest window");
	CHECK_STR(lim, "10000", "RateLimit-Limit");
	CHECK_STR(rem, "4000", "RateLimit-Remaining");
	CHECK_STR(rst, "36890", "RateLimit-Reset seconds to the reset");
	st.w[QUOTA_DAY].over = st.w[QUOTA_MONTH].over = 1;
	CHECK(quota_refusing(&st) == QUOTA_MONTH, "refusing window is the one resetting last");
	struct quota_status un = { 0 };
	for (int i = 0; i < QUOTA_NKINDS; i++)
		quota_window_fill(&un.w[i], (enum quota_kind)i, t, 1, 0, -1);
	CHECK(quota_ratelimit_headers(&un, t, pol, cur, lim, rem, rst) < 0, "no headers when unlimited");
	quota_overall(&st);
	CHECK(st.overall == QUOTA_OK, "overall of ok windows");
	st.w[QUOTA_HOUR].level = QUOTA_CRITICAL;
	quota_overall(&st);
	CHECK(st.overall == QUOTA_CRITICAL, "overall is the worst window");
	CHECK(quota_id_ok("0123456789abcdef0123456789abcdef", 32), "reservation id shape");
	CHECK(!quota_id_ok("0123456789ABCDEF0123456789abcdef", 32), "upper case id refused");
	return TAP_DONE();
}
