/*
 * qc.c - error strings and the single error -> HTTP status mapping.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

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
