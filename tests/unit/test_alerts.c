/* test_alerts.c - the pure parts of the level-crossing webhook: which
 * windows a status stands for, the retry delays, the delivery id and the
 * JSON body. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "alerts.h"
#include "tap.h"

static void fill(struct quota_status *st, long long day_used, long long day_lim, long long month_used,
		 long long month_lim, long long calls, long long hour_lim, time_t now)
{
	memset(st, 0, sizeof *st);
	st->user_id = 42;
	snprintf(st->plan, sizeof st->plan, "freemium");
	quota_window_fill(&st->w[QUOTA_DAY], QUOTA_DAY, now, day_used, 0, day_lim);
	quota_window_fill(&st->w[QUOTA_MONTH], QUOTA_MONTH, now, month_used, 0, month_lim);
	quota_window_fill(&st->w[QUOTA_HOUR], QUOTA_HOUR, now, calls, 0, hour_lim);
	quota_overall(st);
}

static const char *str(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

static long long num(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : -999;
}

int main(void)
{
	time_t now = 1795000000;   /* 2026-11-18T... UTC */
	struct quota_status st;
	struct alert_crossing c[QUOTA_NKINDS];
	char id[96];

	fill(&st, 7000, 10000, 7000, 100000, 3, 100, now);
	CHECK(alerts_crossings(&st, now, c) == 0, "below 75 %% everywhere: no crossing");
	fill(&st, 7500, 10000, 7500, 100000, 3, 100, now);
	CHECK(alerts_crossings(&st, now, c) == 1 && c[0].kind == QUOTA_DAY && c[0].level == QUOTA_WARNING &&
	      c[0].used == 7500 && c[0].limit == 10000 && c[0].user_id == 42 && strcmp(c[0].plan, "freemium") == 0 &&
	      c[0].window_start == quota_window_start(QUOTA_DAY, now) && c[0].at == now,
	      "75 %% of the daily limit: one warning crossing of the daily window");
	fill(&st, 9500, 10000, 80000, 100000, 3, 100, now);
	CHECK(alerts_crossings(&st, now, c) == 1 && c[0].kind == QUOTA_DAY && c[0].level == QUOTA_CRITICAL,
	      "month at warning, day at critical: only the worst window (the overall level)");
	fill(&st, 10000, 10000, 100000, 100000, 100, 100, now);
	CHECK(alerts_crossings(&st, now, c) == 3 && c[0].level == QUOTA_EXCEEDED && c[1].kind == QUOTA_MONTH &&
	      c[2].kind == QUOTA_HOUR && c[2].used == 100,
	      "every window exceeded: three crossings, the hour counts calls");
	fill(&st, 50, -1, 50, -1, 1, -1, now);
	CHECK(alerts_crossings(&st, now, c) == 0, "unlimited windows never cross");
	fill(&st, 0, 0, 0, -1, 0, -1, now);
	CHECK(alerts_crossings(&st, now, c) == 1 && c[0].level == QUOTA_EXCEEDED,
	      "a limit of 0 is exceeded at once");
	/* reserved tokens count as admitted */
	memset(&st, 0, sizeof st);
	quota_window_fill(&st.w[QUOTA_DAY], QUOTA_DAY, now, 4000, 5000, 10000);
	quota_window_fill(&st.w[QUOTA_MONTH], QUOTA_MONTH, now, 0, 0, -1);
	quota_window_fill(&st.w[QUOTA_HOUR], QUOTA_HOUR, now, 0, 0, -1);
	quota_overall(&st);
	CHECK(alerts_crossings(&st, now, c) == 1 && c[0].level == QUOTA_CRITICAL && c[0].used == 9000,
	      "used + reserved is what crosses (9,000 of 10,000: critical)");

	/* backoff */
	CHECK(alerts_backoff_ms(200, 1, 0) == 200 && alerts_backoff_ms(200, 2, 0) == 400 &&
	      alerts_backoff_ms(200, 4, 0) == 1600, "backoff doubles from the base");
	CHECK(alerts_backoff_ms(1000, 40, 0) == 300000, "backoff stops at 5 minutes");
	CHECK(alerts_backoff_ms(1000, 1, RAND_MAX) <= 1100 && alerts_backoff_ms(1000, 1, RAND_MAX) >= 1000,
	      "jitter adds at most 10 %%");
	CHECK(alerts_backoff_ms(0, 1, 0) >= 1, "a zero base still waits");

	/* id and body */
	fill(&st, 7600, 10000, 7600, 100000, 3, 100, now);
	alerts_crossings(&st, now, c);
	alerts_id(&c[0], id);
	{
		char want[96];
		snprintf(want, sizeof want, "42:daily:%lld:warning", (long long)quota_window_start(QUOTA_DAY, now));
		CHECK_STR(id, want, "delivery id: user, window, window start, level");
	}
	snprintf(c[0].plan, sizeof c[0].plan, "pl\"an<b>\\");
	char *body = alerts_payload(&c[0], 3);
	json_object *o = body ? json_tokener_parse(body) : NULL;
	char ws[32], rs[32], at[32];
	qc_iso8601(quota_window_start(QUOTA_DAY, now), ws);
	qc_iso8601(quota_window_reset(QUOTA_DAY, now), rs);
	qc_iso8601(now, at);
	CHECK(o && json_object_is_type(o, json_type_object), "the body is one JSON object");
	CHECK_STR(str(o, "event"), "quota.level_crossing", "event");
	CHECK_STR(str(o, "id"), id, "id");
	CHECK(num(o, "user_id") == 42 && num(o, "used") == 7600 && num(o, "limit") == 10000 &&
	      num(o, "percent") == 76 && num(o, "attempt") == 3, "user_id, used, limit, percent, attempt");
	CHECK_STR(str(o, "plan"), "pl\"an<b>\\", "a plan name with quotes and markup survives intact");
	CHECK_STR(str(o, "window"), "daily", "window");
	CHECK_STR(str(o, "level"), "warning", "level");
	CHECK(tap_streq(str(o, "window_start"), ws) && tap_streq(str(o, "resets_at"), rs) &&
	      tap_streq(str(o, "time"), at), "window_start, resets_at and time in UTC");
	json_object_put(o);
	free(body);

	/* the signature: HMAC-SHA256 of "T." + body, as Python's hmac computes it */
	{
		char sig[96];
		CHECK(alerts_signature("s3cret", 1700000000LL, "{\"event\":\"quota.level_crossing\"}", sig) == 0,
		      "a body is signed");
		CHECK_STR(sig, "t=1700000000,v1=387d45b9c47806844a478db6d4cf45b6e1fb2364c56d54e2afb06ca504fe2209",
			  "the signature is t=T,v1=HMAC-SHA256(secret, \"T.\" + body) in hex");
		CHECK(alerts_signature("s3cret", 1700000001LL, "{\"event\":\"quota.level_crossing\"}", sig) == 0 &&
		      strcmp(sig, "t=1700000001,v1=387d45b9c47806844a478db6d4cf45b6e1fb2364c56d54e2afb06ca504fe2209") != 0,
		      "another time signs differently (a replayed body with a new time does not verify)");
	}

	/* without a running sender, observing does nothing (the CLI, tests):
	 * run here so that the sanitizers see the path */
	fill(&st, 10000, 10000, 0, -1, 0, -1, now);
	alerts_observe(&st, now);
	return TAP_DONE();
}
