/* test_route.c - the pure route matcher: params, 404, 405 + Allow, bad paths. */
#include <stdlib.h>

#include "route.h"
#include "tap.h"

static const struct route t[] = {
	{ "GET", "/api/v1/health", 0, "health", NULL },
	{ "GET", "/api/v1/cache/stats", 0, "stats", NULL },
	{ "GET", "/api/v1/cache/{tier}/{key}", 0, "get", NULL },
	{ "PUT", "/api/v1/cache/{tier}/{key}", 0, "put", NULL },
	{ "DELETE", "/api/v1/cache/{tier}/{key}", 0, "del", NULL },
	{ "POST", "/api/v1/quota/reserve", 0, "reserve", NULL },
};
#define N (sizeof t / sizeof t[0])

int main(void)
{
	struct route_match m;
	enum route_result r;

	r = route_match(t, N, "GET", "/api/v1/health", &m);
	CHECK(r == ROUTE_FOUND && m.route == &t[0] && m.nparams == 0, "literal route found");
	route_match_release(&m);

	r = route_match(t, N, "GET", "/api/v1/cache/stats", &m);
	CHECK(r == ROUTE_FOUND && m.route == &t[1], "literal route wins over pattern");
	route_match_release(&m);

	r = route_match(t, N, "GET", "/api/v1/cache/content/a%2Fb%20c", &m);
	CHECK(r == ROUTE_FOUND && m.route == &t[2] && m.nparams == 2, "pattern route found");
	CHECK_STR(m.params[0], "content", "first param");
	CHECK(m.lens[1] == 5 && memcmp(m.params[1], "a/b c", 5) == 0, "%%2F decoded inside a param");
	route_match_release(&m);

	r = route_match(t, N, "POST", "/api/v1/cache/content/x", &m);
	CHECK(r == ROUTE_BAD_METHOD, "wrong method is 405");
	CHECK_STR(m.allow, "GET, PUT, DELETE", "Allow lists the methods of the path");
	route_match_release(&m);

	r = route_match(t, N, "GET", "/api/v1/quota/reserve", &m);
	CHECK(r == ROUTE_BAD_METHOD && strcmp(m.allow, "POST") == 0, "405 for GET on a POST route");
	route_match_release(&m);

	CHECK(route_match(t, N, "GET", "/api/v1/nope", &m) == ROUTE_NOT_FOUND, "unknown route is 404");
	route_match_release(&m);
	CHECK(route_match(t, N, "GET", "/api/v1/health/", &m) == ROUTE_NOT_FOUND, "trailing slash is 404");
	route_match_release(&m);
	CHECK(route_match(t, N, "GET", "/api/v1/cache/content/", &m) == ROUTE_NOT_FOUND,
	      "empty param segment is 404");
	route_match_release(&m);
	CHECK(route_match(t, N, "GET", "/api/v1/cache/content/a%00b", &m) == ROUTE_BAD_PATH,
	      "%%00 in a param is a bad path");
	route_match_release(&m);
	CHECK(route_match(t, N, "GET", "/api/v1/cache/content/a%zz", &m) == ROUTE_BAD_PATH,
	      "bad percent escape is a bad path");
	route_match_release(&m);
	CHECK(route_match(t, N, "GET", "/api/v1/cache/content/a%4", &m) == ROUTE_BAD_PATH,
	      "truncated percent escape is a bad path");
	route_match_release(&m);
	CHECK(route_match(t, N, "GET", "relative", &m) == ROUTE_BAD_PATH, "path must start with /");
	route_match_release(&m);

	char *longp = malloc(ROUTE_MAX_PATH + 20);
	memset(longp, 'a', ROUTE_MAX_PATH + 19);
	longp[0] = '/';
	longp[ROUTE_MAX_PATH + 19] = 0;
	CHECK(route_match(t, N, "GET", longp, &m) == ROUTE_BAD_PATH, "over-long path refused");
	route_match_release(&m);
	free(longp);

	size_t ol;
	int bad;
	char *d = route_pct_decode("%C3%A9t%C3%A9", 13, &ol, &bad);
	CHECK(d && ol == 5 && memcmp(d, "\xc3\xa9t\xc3\xa9", 5) == 0, "utf-8 percent decoding");
	free(d);
	d = route_pct_decode("a%7Fb", 5, &ol, &bad);
	CHECK(!d && bad, "DEL byte refused");
	return TAP_DONE();
}
