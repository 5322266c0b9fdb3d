/*
 * qc.h - the one error enum of quotacache, shared by every module.
 *
 * Functions that can fail return enum qc_err (QC_OK == 0).  The mapping from
 * an error to an HTTP status lives in one place: qc_http_status().
 */
#ifndef QC_QC_H
#define QC_QC_H

#include <stddef.h>
#include <time.h>

/* QC_VERSION comes from AC_INIT in configure.ac, the one place the version is
 * written (configure passes it as -DQC_VERSION="..."). */
#ifndef QC_VERSION
#error "QC_VERSION is not defined: build through configure (it passes AC_INIT's version)"
#endif

enum qc_err {
	QC_OK = 0,
	QC_ENOMEM,      /* allocation failed */
	QC_EDB,         /* database error (bad statement, constraint, ...) */
	QC_EDBDOWN,     /* database unreachable: connection lost or refused */
	QC_EINPUT,      /* caller's input is invalid */
	QC_EAUTH,       /* missing or invalid credentials */
	QC_EFORBIDDEN,  /* authenticated but not allowed */
	QC_ENOTFOUND,   /* no such object (or not the caller's) */
	QC_ECONFLICT,   /* object in a state that forbids the operation */
	QC_EQUOTA,      /* quota exceeded */
	QC_ETOOBIG,     /* payload over a limit */
	QC_EUPSTREAM,   /* upstream LLM failed */
	QC_ETIMEOUT,    /* upstream timed out */
	QC_ECONFIG,     /* configuration invalid */
	QC_EIO,         /* file or system call failed */
	QC_ESTORAGE,    /* storage quota exhausted */
	QC_EBUSY,       /* too many calls in flight in this process (503) */
	QC_EUSERBUSY    /* too many calls in flight for this user (429) */
};

/* Short lowercase description of an error code; never NULL. */
const char *qc_strerror(enum qc_err e);

/* HTTP status that answers a request failing with e. */
int qc_http_status(enum qc_err e);

/* t as "YYYY-MM-DDTHH:MM:SSZ" into out (at least 21 bytes; 32 is safe). */
void qc_iso8601(long long t, char out[32]);
/* Parse "YYYY-MM-DDTHH:MM:SSZ" (UTC).  0 and *t, or -1. */
int qc_parse_iso8601(const char *s, long long *t);

/*
 * When a worker's accumulator of n of at most max entries, pending since
 * `since`, must be written: -1 if empty, 0 if now (a second has passed, it
 * holds QC_FLUSH_BATCH records, or it is three quarters full), else the
 * seconds left.  The batch rule spreads a busy worker's writes over its
 * timer ticks (every 250 ms) instead of one large write a second that the
 * requests of that moment wait behind.
 */
#define QC_FLUSH_BATCH 128
int qc_flush_due(unsigned n, unsigned max, time_t since, time_t now);

/* Copy src into dst (size dstsz >= 1), cut at a UTF-8 character boundary
 * when it does not fit (never half a character in a bounded column). */
void qc_copy_utf8(char *dst, size_t dstsz, const char *src);

/* in[0..n) as 2*n lowercase hex characters + NUL in out. */
void qc_hex(const unsigned char *in, size_t n, char *out);

/* SHA-256 of data[0..len) as 64 lowercase hex characters + NUL (libcrypto). */
void qc_sha256_hex(const void *data, size_t len, char out[65]);

/* nbytes (at most 32) random bytes from libcrypto as 2*nbytes hex + NUL.
 * Returns 0, or -1 if the generator failed (out is then unusable). */
int qc_random_hex(char *out, size_t nbytes);

/* The monotonic clock (CLOCK_MONOTONIC), in microseconds and milliseconds:
 * for durations and deadlines, never for times stored or shown. */
long long qc_mono_us(void);
long long qc_mono_ms(void);

/* Read a whole file of at most max bytes into a new NUL-terminated buffer
 * (caller frees); *len gets its size.  NULL if unreadable or larger. */
char *qc_read_file(const char *path, long long max, size_t *len);

#endif
