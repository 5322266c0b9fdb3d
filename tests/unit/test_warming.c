/*
 * test_warming.c - the pure part of predictive warming: which task follows
 * which (learned from ledger sequences) and when an entry is due for
 * refresh-ahead.
 */
#include <stdio.h>
#include <string.h>

#include "warming.h"
#include "tap.h"

int main(void)
{
	static struct warm_model m;
	/* user 1: extraction -> cv -> letter; user 2: extraction -> cv; user 3:
	 * extraction, then cv two hours later (not a follow-up within the
	 * gap); user 4: extraction -> extraction -> letter */
	const struct warm_event ev[] = {
		{ 1, "extraction", 1000 }, { 1, "cv", 1100 }, { 1, "letter", 1300 },
		{ 2, "extraction", 5000 }, { 2, "cv", 5400 },
		{ 3, "extraction", 100 }, { 3, "cv", 100 + 7200 },
		{ 4, "extraction", 50 }, { 4, "extraction", 60 }, { 4, "letter", 70 },
	};

	/* the sequences repeated until every task has been seen often enough */
	static struct warm_event evs[10 * WARM_MIN_SAMPLES];
	size_t nev = 0;
	for (int k = 0; k < WARM_MIN_SAMPLES; k++)
		for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
			evs[nev] = ev[i];
			evs[nev].user += 10 * k;   /* other users each round */
			nev++;
		}
	warm_learn(ev, sizeof ev / sizeof ev[0], 3600, &m);
	CHECK(m.n[0] == 5 && warm_next_prob(&m, "extraction", "cv") == 0,
	      "5 extractions are too few to say anything (fewer than %d)", WARM_MIN_SAMPLES);
	warm_learn(evs, nev, 3600, &m);
	CHECK(m.ntasks == 3, "three tasks seen (%u)", m.ntasks);
	/* extraction: 5 calls; followed by cv twice (users 1, 2), by extraction
	 * once (user 4); user 3's cv came too late; the last of user 2 is cv */
	CHECK(warm_next_prob(&m, "extraction", "cv") == 2.0 / 5.0, "P(cv | extraction) = 2/5");
	CHECK(warm_next_prob(&m, "extraction", "extraction") == 1.0 / 5.0, "P(extraction | extraction) = 1/5");
	CHECK(warm_next_prob(&m, "cv", "letter") == 1.0 / 3.0, "P(letter | cv) = 1/3 (user 1 of 3 cv calls)");
	CHECK(m.n[0] == 5 * WARM_MIN_SAMPLES, "every round counted");
	CHECK(warm_next_prob(&m, "letter", "cv") == 0, "nothing follows a letter");
	CHECK(warm_next_prob(&m, "interview", "cv") == 0 && warm_next_prob(&m, "cv", "interview") == 0,
	      "an unseen task: probability 0");
	/* another user's call is never a follow-up, however close in time */
	{
		const struct warm_event two[] = { { 1, "a", 10 }, { 2, "b", 11 } };
		warm_learn(two, 2, 3600, &m);
		CHECK(m.ntasks == 2 && m.n[0] == 1 && m.next[0][1] == 0,
		      "a different user's next call does not count");
	}
	warm_learn(ev, 0, 3600, &m);
	CHECK(m.ntasks == 0 && warm_next_prob(&m, "a", "b") == 0, "no events: nothing learned");
	/* tasks past the table's size are ignored, not overflowed */
	{
		static struct warm_event many[WARM_MAX_TASKS + 10];
		static char names[WARM_MAX_TASKS + 10][16];
		for (int i = 0; i < WARM_MAX_TASKS + 10; i++) {
			snprintf(names[i], sizeof names[i], "t%d", i);
			many[i] = (struct warm_event){ 9, names[i], i };
		}
		warm_learn(many, WARM_MAX_TASKS + 10, 3600, &m);
		CHECK(m.ntasks == WARM_MAX_TASKS && m.next[0][1] == 1 && m.n[WARM_MAX_TASKS - 1] == 1,
		      "at most %d tasks are learned", WARM_MAX_TASKS);
	}

	/* refresh-ahead: hot enough and expiring within the window */
	CHECK(warm_refresh_due(3, 3, 1300, 1000, 300), "3 hits of 3, expiring in 300 s of a 300 s window: due");
	CHECK(!warm_refresh_due(2, 3, 1300, 1000, 300), "2 hits of 3: not hot enough");
	CHECK(!warm_refresh_due(5, 3, 1301, 1000, 300), "expiring in 301 s: not yet");
	CHECK(!warm_refresh_due(5, 3, 1000, 1000, 300), "already expired: not refreshed");
	CHECK(!warm_refresh_due(5, 3, 0, 1000, 300), "an entry that never expires needs no refresh");
	return TAP_DONE();
}
