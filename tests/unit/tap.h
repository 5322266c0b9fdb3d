/*
 * tap.h - a minimal TAP producer for the unit tests: each check prints
 * "ok N - name" or "not ok N - name"; tests/run_all.sh counts the lines.
 */
#ifndef QC_TAP_H
#define QC_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

/* cond is evaluated exactly once */
#define CHECK(cond, ...) do { \
	int tap_ok_ = (cond) ? 1 : 0; \
	tap_n++; \
	if (tap_ok_) { printf("ok %d - ", tap_n); } \
	else { tap_failed++; printf("not ok %d - ", tap_n); } \
	printf(__VA_ARGS__); \
	if (!tap_ok_) printf("  [%s:%d: %s]", __FILE__, __LINE__, #cond); \
	printf("\n"); \
	fflush(stdout); \
} while (0)

static inline int tap_streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}
#define CHECK_STR(a, b, ...) CHECK(tap_streq((a), (b)), __VA_ARGS__)

#define TAP_DONE() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)

#endif
