/*
 * route.h - the route table and the pure matcher: method + raw path ->
 * handler and decoded path parameters, or 404 / 405 (with Allow) / 400.
 *
 * Patterns are '/'-separated segments; "{name}" matches one non-empty
 * segment, decoded from %XX (so %2F stays inside the parameter).  The first
 * matching route in table order wins: literal routes go before patterns.
 */
#ifndef QC_ROUTE_H
#define QC_ROUTE_H

#include <stddef.h>

#define ROUTE_MAX_PARAMS 4
#define ROUTE_MAX_PATH 4096

enum route_flags {
	ROUTE_PUBLIC = 0,
	ROUTE_AUTH = 1,      /* needs a valid key */
	ROUTE_ADMIN = 2,     /* needs an admin key (implies ROUTE_AUTH) */
	ROUTE_JSON = 4       /* takes a JSON object body */
};

struct app;
struct http_req;
typedef void (*route_handler)(struct app *, struct http_req *);

struct route {
	const char *method;
	const char *pattern;
	unsigned flags;
	const char *name;        /* handler name, for metrics and logs */
	route_handler handler;   /* never called by the matcher */
};

struct route_match {
	const struct route *route;
	char *params[ROUTE_MAX_PARAMS];   /* owned, NUL-terminated */
	size_t lens[ROUTE_MAX_PARAMS];
	unsigned nparams;
	char allow[96];                   /* for ROUTE_BAD_METHOD */
};

enum route_result {
	ROUTE_FOUND = 0,
	ROUTE_NOT_FOUND,
	ROUTE_BAD_METHOD,
	ROUTE_BAD_PATH,      /* bad %-encoding, NUL or control byte, too long */
	ROUTE_NOMEM
};

/*
 * Match method and raw path (no query string) against table[0..n).
 * Fills m (release with route_match_release even on failure).
 */
enum route_result route_match(const struct route *table, size_t n,
			      const char *method, const char *path,
			      struct route_match *m);
void route_match_release(struct route_match *m);

/*
 * Decode %XX in src[0..len) into a new NUL-terminated string (*outlen bytes).
 * Returns NULL on bad encoding or when the result would contain a byte below
 * 0x20 or 0x7f (and sets *bad to 1), or on ENOMEM (*bad 0).
 */
char *route_pct_decode(const char *src, size_t len, size_t *outlen, int *bad);

#endif
