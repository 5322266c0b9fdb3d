/*
 * test_gather.c - how an idle completion thread gathers a batch
 * (inflight_gather_us, inflight_next_gap): it waits for more jobs only
 * while the next is due before batch_wait_ms runs out, and another
 * generation than those queued could send it.
 */
#include <stdio.h>

#include "inflight.h"
#include "tap.h"

int main(void)
{
	const long long t = 5000000;   /* "now", µs */
	long long gap;

	/* jobs 1 ms apart, the head queued just now, 8 ms to wait */
	CHECK(inflight_gather_us(1, 32, t, 1000, 8, t) == 8000, "a lone job waits for the next, due in 1 ms");
	CHECK(inflight_gather_us(7, 32, t - 3000, 1000, 8, t) == 5000,
	      "7 queued, the head 3 ms old: the 5 ms left (%lld)", inflight_gather_us(7, 32, t - 3000, 1000, 8, t));
	CHECK(inflight_gather_us(INFLIGHT_GATHER, 32, t, 1000, 8, t) == 0, "8 queued: taken at once");
	CHECK(inflight_gather_us(20, 32, t, 1000, 8, t) == 0, "more than 8 queued: taken at once");
	CHECK(inflight_gather_us(3, 32, t - 8000, 1000, 8, t) == 0, "the head waited batch_wait_ms: taken");
	CHECK(inflight_gather_us(3, 32, t - 9000, 1000, 8, t) == 0, "the head waited longer: taken");
	CHECK(inflight_gather_us(1, 32, t, 1000, 0, t) == 0, "batch_wait_ms = 0: never waits");
	/* every generation the process holds has its job queued: none can come
	 * but a new request's (a lone client's next miss waits for this one) */
	CHECK(inflight_gather_us(1, 1, t, 1000, 8, t) == 0, "a lone generation held: taken at once");
	CHECK(inflight_gather_us(5, 5, t, 1000, 8, t) == 0, "all 5 held are queued: taken at once");
	CHECK(inflight_gather_us(5, 6, t, 1000, 8, t) == 8000, "5 of 6 held queued: waits for the sixth");
	/* the next job is not due before the wait ends: no wait at all */
	CHECK(inflight_gather_us(1, 32, t, 9000, 8, t) == 0, "jobs 9 ms apart, 8 ms to wait: taken at once");
	CHECK(inflight_gather_us(2, 32, t - 6000, 3000, 8, t) == 0, "jobs 3 ms apart, 2 ms left: taken");
	CHECK(inflight_gather_us(2, 32, t - 5000, 3000, 8, t) == 3000, "jobs 3 ms apart, 3 ms left: waits them");

	/* the average gap: the first job tells nothing, then a moving average of 8 */
	CHECK(inflight_next_gap(1000000, 0, t) == 1000000, "the first job leaves the gap as it was");
	CHECK(inflight_next_gap(8000, t - 16000, t) == 9000, "a 16 ms gap moves 8 ms 1/8 of the way (%lld)",
	      inflight_next_gap(8000, t - 16000, t));
	gap = 1000000;   /* as a worker starts: jobs are not known to come fast */
	CHECK(inflight_gather_us(1, 32, t, gap, 8, t) == 0, "a worker's first jobs are taken at once");
	for (int i = 1; i <= 60; i++)
		gap = inflight_next_gap(gap, t + (i - 1) * 1000, t + i * 1000);
	CHECK(gap < 2000 && gap >= 1000, "60 jobs 1 ms apart: the gap comes down to ~1 ms (%lld)", gap);
	CHECK(inflight_gather_us(1, 32, t, gap, 8, t) > 0, "then a lone job waits for the next");
	gap = inflight_next_gap(gap, t, t + 2000000);   /* 2 s without a job */
	CHECK(gap > 8000, "after 2 s without a job the gap is long (%lld)", gap);
	CHECK(inflight_gather_us(1, 32, t, gap, 8, t) == 0, "and the next lone job is taken at once");
	return TAP_DONE();
}
