/*
 * route.c - route matching, a pure function over the table: no FastCGI and
 * no I/O, so tests/unit/test_route.c calls it directly.
 */
#include <stdlib.h>
#include <string.h>

#include "route.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

char *route_pct_decode(const char *src, size_t len, size_t *outlen, int *bad)
{
	char *out = malloc(len + 1);
	size_t o = 0;

	*bad = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= len)
				goto bad;
			h = hexval(src[i + 1]);
			l = hexval(src[i + 2]);
			if (h < 0 || l < 0) goto bad;
			c = (unsigned char)(h * 16 + l);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			goto bad;
		out[o++] = (char)c;
	}
	out[o] = 0;
	*outlen = o;
	return out;
bad:
	free(out);
	*bad = 1;
	return NULL;
}

/* Does pattern match path?  Returns 1/0; on 1 with m, fills params. */
static int match_one(const char *pattern, const char *path, struct route_match *m,
		     int *nomem, int *badpath)
{
	const char *p = pattern, *s = path;
	unsigned np = 0;

	while (*p && *s) {
		if (*p != '/' || *s != '/')
			return 0;
		p++, s++;
		const char *pe = strchr(p, '/'), *se = strchr(s, '/');
		size_t pl = pe ? (size_t)(pe - p) : strlen(p);
		size_t sl = se ? (size_t)(se - s) : strlen(s);
		if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
			if (sl == 0 || np >= ROUTE_MAX_PARAMS)
				return 0;
			if (m) {
				int bad;
				size_t ol;
				char *d = route_pct_decode(s, sl, &ol, &bad);
				if (!d) {
					*nomem = !bad;
					*badpath = bad;
					return 0;
				}
				m->params[np] = d;
				m->lens[np] = ol;
			}
			np++;
		} else if (pl != sl || memcmp(p, s, pl) != 0) {
			return 0;
		}
		p += pl;
		s += sl;
	}
	if (*p || *s)
		return 0;
	if (m)
		m->nparams = np;
	return 1;
}

static void clear_params(struct route_match *m)
{
	for (unsigned i = 0; i < ROUTE_MAX_PARAMS; i++) {
		free(m->params[i]);
		m->params[i] = NULL;
		m->lens[i] = 0;
	}
	m->nparams = 0;
}

enum route_result route_match(const struct route *table, size_t n,
			      const char *method, const char *path,
			      struct route_match *m)
{
	int any = 0;
	size_t alen = 0;

	memset(m, 0, sizeof *m);
	if (!path || path[0] != '/' || strlen(path) > ROUTE_MAX_PATH)
		return ROUTE_BAD_PATH;
	for (const char *c = path; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return ROUTE_BAD_PATH;
	for (size_t i = 0; i < n; i++) {
		int nomem = 0, badpath = 0;
		if (strcmp(table[i].method, method) != 0)
			continue;
		if (match_one(table[i].pattern, path, m, &nomem, &badpath)) {
			m->route = &table[i];
			return ROUTE_FOUND;
		}
		clear_params(m);
		if (nomem)
			return ROUTE_NOMEM;
		if (badpath)
			return ROUTE_BAD_PATH;
	}
	/* no route for this method: which methods would match the path? */
	for (size_t i = 0; i < n; i++) {
		int nomem = 0, badpath = 0;
		if (!match_one(table[i].pattern, path, NULL, &nomem, &badpath))
			continue;
		size_t ml = strlen(table[i].method);
		/* skip duplicates */
		int dup = 0;
		for (const char *a = m->allow; *a;) {
			const char *e = strchr(a, ',');
			size_t l = e ? (size_t)(e - a) : strlen(a);
			if (l == ml && memcmp(a, table[i].method, ml) == 0)
				dup = 1;
			a += l;
			while (*a == ',' || *a == ' ')
				a++;
		}
		if (dup || alen + ml + 3 >= sizeof m->allow)
			continue;
		if (any) {
			memcpy(m->allow + alen, ", ", 2);
			alen += 2;
		}
		memcpy(m->allow + alen, table[i].method, ml);
		alen += ml;
		m->allow[alen] = 0;
		any = 1;
	}
	return any ? ROUTE_BAD_METHOD : ROUTE_NOT_FOUND;
}

void route_match_release(struct route_match *m)
{
	clear_params(m);
	m->route = NULL;
}
