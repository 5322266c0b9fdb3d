/*
 * ctl_users.c - quotacachectl: users, their keys, and the audit log.  Every
 * change goes through admin.c, which writes its audit row (actor "cli:" and
 * the login that ran the command).
 *   user add --email E --plan P [--admin] [--key-expires T]
 *   user list | user show (--id N|--email E) | user set-plan (--id N|--email E) --plan P
 *   user disable|enable (--id N|--email E)
 *   key add (--id N|--email E) [--expires T] | key revoke PREFIX-OR-KEY | key list [--id N|--email E]
 *   audit [--action A] [--actor S] [--id N|--email E] [--limit N]
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "admin.h"
#include "ctl.h"
#include "db.h"
#include "users.h"

static int flag(int argc, char **argv, const char *name)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

static void print_rows(const struct db_rows *r, const char *const *head)
{
	for (unsigned c = 0; c < r->ncols; c++)
		printf("%s%s", c ? "\t" : "", head[c]);
	printf("\n");
	for (unsigned i = 0; i < r->nrows; i++) {
		for (unsigned c = 0; c < r->ncols; c++) {
			const char *v = db_cell(r, i, c);
			printf("%s%s", c ? "\t" : "", v ? v : "-");
		}
		printf("\n");
	}
}

/* --key-expires / --expires: 0 absent, 1 set (*t), -1 malformed (said) */
static int time_opt(int argc, char **argv, const char *name, long long *t)
{
	const char *s = ctl_opt(argc, argv, name);

	*t = 0;
	if (!s)
		return 0;
	if (qc_parse_iso8601(s, t) < 0 || *t <= time(NULL)) {
		fprintf(stderr, "quotacachectl: %s takes a future time YYYY-MM-DDTHH:MM:SSZ\n", name);
		return -1;
	}
	return 1;
}

int ctl_user(struct db *db, int argc, char **argv)
{
	char key[AUTH_KEY_LEN + 1];
	struct db_rows *r = NULL;
	struct admin_actor actor;
	enum qc_err rc;

	admin_cli_actor(&actor);
	if (argc >= 1 && strcmp(argv[0], "add") == 0) {
		const char *email = ctl_opt(argc, argv, "--email"), *plan = ctl_opt(argc, argv, "--plan");
		long long id, exp;
		if (!email || !plan) {
			fprintf(stderr, "usage: quotacachectl user add --email E --plan P [--admin] [--key-expires T]\n");
			return 2;
		}
		if (time_opt(argc, argv, "--key-expires", &exp) < 0)
			return 2;
		rc = admin_user_create(db, &actor, email, plan, flag(argc, argv, "--admin"), (time_t)exp, time(NULL),
				       &id, key);
		if (rc == QC_EINPUT) {
			fprintf(stderr, "quotacachectl: bad email or unknown plan '%s'\n", plan);
			return 1;
		}
		if (rc == QC_ECONFLICT) {
			fprintf(stderr, "quotacachectl: a user with email %s exists\n", email);
			return 1;
		}
		if (rc != QC_OK)
			return ctl_fail(rc, db, "user add");
		fprintf(stderr, "created user %lld (%s, plan %s); the key is shown once:\n", id, email, plan);
		printf("%s\n", key);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		static const char *const head[] = { "id", "email", "plan", "role", "created_at", "keys" };
		if ((rc = users_list(db, &r)) != QC_OK)
			return ctl_fail(rc, db, "user list");
		print_rows(r, head);
		db_rows_free(r);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "set-plan") == 0) {
		const char *plan = ctl_opt(argc, argv, "--plan");
		long long uid = ctl_user_arg(db, argc, argv);
		if (!uid || !plan)
			return 2;
		rc = admin_user_set_plan(db, &actor, uid, plan, time(NULL));
		if (rc == QC_EINPUT) {
			fprintf(stderr, "quotacachectl: unknown plan '%s'\n", plan);
			return 1;
		}
		if (rc != QC_OK)
			return ctl_fail(rc, db, "user set-plan");
		printf("user %lld is now on plan %s\n", uid, plan);
		return 0;
	}
	if (argc >= 1 && (strcmp(argv[0], "disable") == 0 || strcmp(argv[0], "enable") == 0)) {
		int off = argv[0][0] == 'd';
		long long uid = ctl_user_arg(db, argc, argv);
		if (!uid)
			return 2;
		if ((rc = admin_user_set_disabled(db, &actor, uid, off, time(NULL))) != QC_OK)
			return ctl_fail(rc, db, argv[0]);
		printf("user %lld %s\n", uid, off ? "disabled: their keys no longer authenticate" : "enabled");
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "show") == 0) {
		json_object *o = NULL;
		long long uid = ctl_user_arg(db, argc, argv);
		if (!uid)
			return 2;
		if ((rc = admin_user_json(db, uid, &o)) != QC_OK)
			return ctl_fail(rc, db, "user show");
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
		return 0;
	}
	fprintf(stderr, "usage: quotacachectl user add|list|show|set-plan|disable|enable ...\n");
	return 2;
}

int ctl_key(struct db *db, int argc, char **argv)
{
	char key[AUTH_KEY_LEN + 1], prefix[AUTH_KEY_DISPLAY_LEN + 1];
	struct db_rows *r = NULL;
	struct admin_actor actor;
	enum qc_err rc;

	admin_cli_actor(&actor);
	if (argc >= 1 && strcmp(argv[0], "add") == 0) {
		long long uid = ctl_user_arg(db, argc, argv), exp;
		if (!uid || time_opt(argc, argv, "--expires", &exp) < 0)
			return 2;
		if ((rc = admin_key_issue(db, &actor, uid, (time_t)exp, time(NULL), key, prefix)) != QC_OK)
			return ctl_fail(rc, db, "key add");
		fprintf(stderr, "new key for user %lld; it is shown once:\n", uid);
		printf("%s\n", key);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[0], "revoke") == 0) {
		if ((rc = admin_key_revoke(db, &actor, argv[1], time(NULL))) != QC_OK)
			return ctl_fail(rc, db, "key revoke");
		printf("revoked\n");
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		static const char *const head[] = { "id", "user_id", "prefix", "created_at", "revoked_at" };
		long long uid = 0;
		if (ctl_opt(argc, argv, "--id") || ctl_opt(argc, argv, "--email"))
			if (!(uid = ctl_user_arg(db, argc, argv)))
				return 2;
		if ((rc = keys_list(db, uid, &r)) != QC_OK)
			return ctl_fail(rc, db, "key list");
		print_rows(r, head);
		db_rows_free(r);
		return 0;
	}
	fprintf(stderr, "usage: quotacachectl key add|revoke|list ...\n");
	return 2;
}

int ctl_audit(struct db *db, int argc, char **argv)
{
	const char *action = ctl_opt(argc, argv, "--action"), *who = ctl_opt(argc, argv, "--actor");
	long long uid = 0, limit;
	json_object *o = NULL, *arr;
	enum qc_err rc;

	if ((ctl_opt(argc, argv, "--id") || ctl_opt(argc, argv, "--email")) && !(uid = ctl_user_arg(db, argc, argv)))
		return 2;
	if (ctl_int_opt(argc, argv, "--limit", 1, 200, 50, &limit) < 0)
		return 2;
	if ((rc = admin_audit_json(db, action, who, uid, 0, 0, 1, limit, &o)) != QC_OK)
		return ctl_fail(rc, db, "audit");
	printf("id\tat\tactor\taction\tuser\ttarget\tbefore\tafter\n");
	arr = json_object_object_get(o, "entries");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i), *b, *a;
		b = json_object_object_get(e, "before");
		a = json_object_object_get(e, "after");
		printf("%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
		       (long long)json_object_get_int64(json_object_object_get(e, "id")),
		       json_object_get_string(json_object_object_get(e, "at")),
		       json_object_get_string(json_object_object_get(e, "actor")),
		       json_object_get_string(json_object_object_get(e, "action")),
		       json_object_object_get(e, "target_user") ?
		       json_object_get_string(json_object_object_get(e, "target_user")) : "-",
		       json_object_get_string(json_object_object_get(e, "target")),
		       b ? json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN) : "-",
		       a ? json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN) : "-");
	}
	json_object_put(o);
	return 0;
}

void ctl_usage_users(void)
{
	fprintf(stderr,
		"  user add --email E --plan P [--admin] [--key-expires T]  create a user, print its key once\n"
		"  user list                                 list users\n"
		"  user show (--id N|--email E)              a user with keys and override (JSON)\n"
		"  user set-plan (--id N|--email E) --plan P change a user's plan\n"
		"  user disable|enable (--id N|--email E)    stop or restore a user's keys\n"
		"  key add (--id N|--email E) [--expires T]  new key for a user, printed once\n"
		"  key revoke KEY-OR-PREFIX                  revoke a key\n"
		"  key list [--id N|--email E]               list keys (prefixes only)\n"
		"  audit [--action A] [--actor S] [--id N|--email E] [--limit N]  changes, newest first\n"
		"        (T: YYYY-MM-DDTHH:MM:SSZ)\n");
}
