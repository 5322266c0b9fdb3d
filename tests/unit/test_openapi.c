/* test_openapi.c - every route the router knows is in openapi.yaml, and
 * every path + method there is a route (read line by line: our file keeps
 * paths at two spaces and methods at four). */
#include <stdio.h>
#include <stdlib.h>

#include "app.h"
#include "tap.h"

#define MAXOPS 128

int main(void)
{
	char path[512], line[1024], cur[256] = "", ops[MAXOPS][300];
	int nops = 0, in_paths = 0;
	FILE *f;

	snprintf(path, sizeof path, "%s/openapi.yaml", QC_SRCDIR);
	f = fopen(path, "r");
	CHECK(f != NULL, "openapi.yaml found");
	if (!f)
		return TAP_DONE();
	while (fgets(line, sizeof line, f)) {
		char m[16];
		if (strncmp(line, "paths:", 6) == 0) { in_paths = 1; continue; }
		if (in_paths && line[0] != ' ' && line[0] != '\n') in_paths = 0;
		if (!in_paths)
			continue;
		if (line[0] == ' ' && line[1] == ' ' && line[2] == '/') {
			if (sscanf(line + 2, "%255[^:]:", cur) != 1)
				cur[0] = 0;
			continue;
		}
		if (line[4] != ' ' && sscanf(line, "    %15[a-z]:", m) == 1 &&
		    (!strcmp(m, "get") || !strcmp(m, "put") || !strcmp(m, "post") || !strcmp(m, "delete") ||
		     !strcmp(m, "patch")) && nops < MAXOPS) {
			for (char *c = m; *c; c++) *c = (char)(*c - 32);
			snprintf(ops[nops++], sizeof ops[0], "%s %s", m, cur);
		}
	}
	fclose(f);
	CHECK(nops > 0, "openapi.yaml lists operations (%d)", nops);
	for (size_t i = 0; i < api_nroutes; i++) {
		char want[300];
		int found = 0;
		snprintf(want, sizeof want, "%s %s", api_routes[i].method, api_routes[i].pattern);
		for (int j = 0; j < nops; j++)
			found |= strcmp(ops[j], want) == 0;
		CHECK(found, "route %s is described", want);
	}
	for (int j = 0; j < nops; j++) {
		int found = 0;
		for (size_t i = 0; i < api_nroutes; i++) {
			char have[300];
			snprintf(have, sizeof have, "%s %s", api_routes[i].method, api_routes[i].pattern);
			found |= strcmp(ops[j], have) == 0;
		}
		CHECK(found, "described operation %s is a route", ops[j]);
	}
	return TAP_DONE();
}
