/*
 * ctl_experiment.c - quotacachectl experiment ...: A/B experiments with and
 * without caching (SPEC §13), through the same experiment.c functions as the
 * admin routes.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "admin.h"
#include "ctl.h"
#include "db.h"
#include "experiment.h"

static void print_one(json_object *e)
{
	json_object *arms = json_object_object_get(e, "arms");

	printf("%lld\t%s\t%s\tcontrol %d%%\n", (long long)json_object_get_int64(json_object_object_get(e, "id")),
	       json_object_get_string(json_object_object_get(e, "name")),
	       json_object_get_string(json_object_object_get(e, "state")),
	       json_object_get_int(json_object_object_get(e, "control_pct")));
	json_object_object_foreach(arms, arm, a) {
		printf("  %-9s requests %lld  hits %lld (%.1f%%)  upstream calls %lld  mean latency %.0f ms"
		       "  billed $%.6f  saved $%.6f\n", arm,
		       (long long)json_object_get_int64(json_object_object_get(a, "requests")),
		       (long long)json_object_get_int64(json_object_object_get(a, "hits")),
		       100.0 * json_object_get_double(json_object_object_get(a, "hit_ratio")),
		       (long long)json_object_get_int64(json_object_object_get(a, "upstream_calls")),
		       json_object_get_double(json_object_object_get(a, "latency_ms_mean")),
		       json_object_get_double(json_object_object_get(a, "billed_usd")),
		       json_object_get_double(json_object_object_get(a, "saved_usd")));
	}
}

static int show(struct db *db, long long id)
{
	json_object *o = NULL;
	enum qc_err rc = exp_json(db, id, &o);

	if (rc != QC_OK)
		return ctl_fail(rc, db, "experiment");
	if (id) {
		print_one(o);
	} else {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			print_one(json_object_array_get_idx(o, i));
	}
	json_object_put(o);
	return 0;
}

int ctl_experiment(struct db *db, int argc, char **argv)
{
	long long id = 0, pct = 50;
	struct admin_actor actor;
	enum qc_err rc;

	admin_cli_actor(&actor);
	if (argc >= 2 && strcmp(argv[0], "create") == 0) {
		const char *desc = ctl_opt(argc, argv, "--description");
		if (ctl_int_opt(argc, argv, "--control-pct", 1, 99, 50, &pct) < 0)
			return 2;
		if (!exp_name_ok(argv[1], strlen(argv[1]))) {
			fprintf(stderr, "quotacachectl: experiment names are 1-64 characters of A-Z a-z 0-9 _ . -\n");
			return 2;
		}
		if ((rc = admin_experiment_create(db, &actor, argv[1], desc, (int)pct, time(NULL), &id)) != QC_OK)
			return ctl_fail(rc, db, rc == QC_ECONFLICT ? "create (the name is taken)" : "create");
		return show(db, id);
	}
	if (argc >= 2 && (strcmp(argv[0], "start") == 0 || strcmp(argv[0], "stop") == 0 ||
			  strcmp(argv[0], "show") == 0)) {
		int start = strcmp(argv[0], "start") == 0, stop = strcmp(argv[0], "stop") == 0;
		if ((rc = exp_find(db, argv[1], &id)) != QC_OK)
			return ctl_fail(rc, db, "experiment");
		rc = start || stop ? admin_experiment_run(db, &actor, id, start, time(NULL)) : QC_OK;
		if (rc != QC_OK)
			return ctl_fail(rc, db, rc != QC_ECONFLICT ? argv[0]
					: start ? "start (only a draft starts, while no other runs)"
					: "stop (only a running experiment stops)");
		return show(db, id);
	}
	if (argc >= 1 && strcmp(argv[0], "list") == 0)
		return show(db, 0);
	fprintf(stderr, "usage: quotacachectl experiment create|start|stop|show|list ...\n");
	return 2;
}

void ctl_usage_experiment(void)
{
	fprintf(stderr,
		"  experiment create NAME [--control-pct N] [--description TEXT]\n"
		"                                            a draft A/B test: control arm without the cache\n"
		"  experiment start|stop|show ID-OR-NAME     run it (one at a time), end it, its arms\n"
		"  experiment list                           every experiment with its arms' figures\n");
}
