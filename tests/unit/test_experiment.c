/*
 * test_experiment.c - the pure part of A/B experiments: arm assignment by
 * hash (deterministic, independent per experiment, close to control_pct)
 * and experiment names.
 */
#include <stdio.h>
#include <string.h>

#include "experiment.h"
#include "tap.h"

int main(void)
{
	int control = 0, same = 1, moved = 0, agree = 0;

	/* deterministic: the same user and experiment, the same arm */
	for (long long u = 1; u <= 1000; u++)
		if (exp_arm_of(u, "cache-ab", 30) != exp_arm_of(u, "cache-ab", 30))
			same = 0;
	CHECK(same, "the same user always falls in the same arm");
	/* the share of control is close to control_pct over 10,000 users */
	for (long long u = 1; u <= 10000; u++)
		control += exp_arm_of(u, "cache-ab", 30) == EXP_CONTROL;
	CHECK(control > 2800 && control < 3200, "control_pct 30: %d of 10,000 users in control", control);
	control = 0;
	for (long long u = 1; u <= 10000; u++)
		control += exp_arm_of(u, "cache-ab", 50) == EXP_CONTROL;
	CHECK(control > 4800 && control < 5200, "control_pct 50: %d of 10,000 in control", control);
	/* another experiment reshuffles the users (independent arms) */
	for (long long u = 1; u <= 10000; u++) {
		enum exp_arm a = exp_arm_of(u, "cache-ab", 50), b = exp_arm_of(u, "cache-ab-2", 50);
		agree += a == b;
	}
	CHECK(agree > 4800 && agree < 5200, "a second experiment's arms are independent of the first's (%d agree)", agree);
	/* raising control_pct only moves users from treatment into control */
	for (long long u = 1; u <= 10000; u++)
		if (exp_arm_of(u, "cache-ab", 30) == EXP_CONTROL && exp_arm_of(u, "cache-ab", 60) != EXP_CONTROL)
			moved++;
	CHECK(moved == 0, "control at 30 %% stays control at 60 %%");
	/* known values (python3: int(sha256(b"cache-ab\x00" + b"1").hexdigest()[:8], 16) % 100
	 * is 91), so the hash cannot change silently between releases, which
	 * would move users between the arms of a running experiment */
	CHECK(exp_arm_of(42, "cache-ab", 50) == exp_arm_of(42, "cache-ab", 50) &&
	      exp_arm_of(1, "cache-ab", 50) == EXP_TREATMENT &&
	      exp_arm_of(1, "cache-ab", 92) == EXP_CONTROL && exp_arm_of(1, "cache-ab", 91) == EXP_TREATMENT,
	      "user 1 of cache-ab at 50 %%: %s",
	      exp_arm_name(exp_arm_of(1, "cache-ab", 50)));
	CHECK(strcmp(exp_arm_name(EXP_CONTROL), "control") == 0 &&
	      strcmp(exp_arm_name(EXP_TREATMENT), "treatment") == 0 && exp_arm_name(EXP_NONE) == NULL,
	      "arm names");

	CHECK(exp_name_ok("cache-ab.2026_q4", 16), "a name of letters, digits, _ . -");
	CHECK(!exp_name_ok("", 0) && !exp_name_ok("a b", 3) && !exp_name_ok("<b>", 3) &&
	      !exp_name_ok("a/b", 3), "empty, space, markup and slash refused");
	{
		char longname[70];
		memset(longname, 'a', sizeof longname);
		CHECK(exp_name_ok(longname, 64) && !exp_name_ok(longname, 65), "64 characters at most");
	}
	return TAP_DONE();
}
