/*
 * qc.c - error strings and the single error -> HTTP status mapping.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "qc.h"

const char *qc_strerror(enum qc_err e)
{
	switch (e) {
	case QC_OK:         return "ok";
	case QC_ENOMEM:     return "out of memory";
	case QC_EDB:        return "database error";
	case QC_EDBDOWN:    return "database unavailable";
	case QC_EINPUT:     return "invalid input";
	case QC_EAUTH:      return "authentication required";
	case QC_EFORBIDDEN: return "forbidden";
	case QC_ENOTFOUND:  return "not found";
	case QC_ECONFLICT:  return "conflict";
	case QC_EQUOTA:     return "quota exceeded";
	case QC_ETOOBIG:    return "payload too large";
	case QC_EUPSTREAM:  return "upstream failure";
	case QC_ETIMEOUT:   return "upstream timeout";
	case QC_ECONFIG:    return "configuration error";
	case QC_EIO:        return "i/o error";
	case QC_ESTORAGE:   return "storage quota exhausted";
	case QC_EBUSY:      return "too many generations in flight in this worker";
	case QC_EUSERBUSY:  return "too many generations in flight for this user";
	}
	return "unknown error";
}

int qc_http_status(enum qc_err e)
{
	switch (e) {
	case QC_OK:         return 200;
	case QC_EINPUT:     return 400;
	case QC_EAUTH:      return 401;
	case QC_EFORBIDDEN: return 403;
	case QC_ENOTFOUND:  return 404;
	case QC_ECONFLICT:  return 409;
	case QC_ETOOBIG:    return 413;
	case QC_EQUOTA:     return 429;
	case QC_EUPSTREAM:  return 502;
	case QC_EDBDOWN:    return 503;
	case QC_ETIMEOUT:   return 504;
	case QC_ESTORAGE:   return 507;
	case QC_EBUSY:      return 503;
	case QC_EUSERBUSY:  return 429;
	case QC_ENOMEM: case QC_EDB: case QC_ECONFIG: case QC_EIO:
		break;
	}
	return 500;
}

void qc_iso8601(long long t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}

int qc_parse_iso8601(const char *s, long long *t)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof tm);
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end || strcmp(end, "Z") != 0)
		return -1;
	*t = (long long)timegm(&tm);
	return 0;
}

void qc_hex(const unsigned char *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = 0;
}

/* SHA-256 fetched once for the process: EVP_sha256() makes every digest
 * look the algorithm up again (a locked provider query; 5 % of a worker's
 * CPU on the authenticated routes, which hash the key on every request).
 * Written once under pthread_once, read-only afterwards; never freed (the
 * process's, like OpenSSL's own tables). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void qc_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	pthread_once(&sha256_once, sha256_fetch);
	EVP_Digest(data, len, md, &mdlen, sha256_md ? sha256_md : EVP_sha256(), NULL);
	qc_hex(md, 32, out);
}

int qc_random_hex(char *out, size_t nbytes)
{
	unsigned char raw[32];

	if (nbytes > sizeof raw || RAND_bytes(raw, (int)nbytes) != 1)
		return -1;
	qc_hex(raw, nbytes, out);
	return 0;
}

char *qc_read_file(const char *path, long long max, size_t *len)
{
	FILE *f = fopen(path, "rbe");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n <= max &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
		if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = 0;
			*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

int qc_flush_due(unsigned n, unsigned max, time_t since, time_t now)
{
	long long left;

	if (!n)
		return -1;
	if (n >= QC_FLUSH_BATCH || n > max * 3 / 4)
		return 0;
	left = 1 - (long long)(now - since);
	return left < 0 ? 0 : (int)left;
}

void qc_copy_utf8(char *dst, size_t dstsz, const char *src)
{
	size_t n = strlen(src);

	if (n >= dstsz) {
		n = dstsz - 1;
		/* back off continuation bytes, then the lead byte they belong to */
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = 0;
}

long long qc_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long long qc_mono_ms(void)
{
	return qc_mono_us() / 1000;
}
