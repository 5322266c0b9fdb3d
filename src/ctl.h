/*
 * ctl.h - pieces of quotacachectl shared between its command files.
 */
#ifndef QC_CTL_H
#define QC_CTL_H

#include "settings.h"
#include "qc.h"

struct db;

/* The value after option name in argv ("" if it is last), or NULL. */
const char *ctl_opt(int argc, char **argv, const char *name);

/* Option name as a whole decimal integer in [min, max] (no trailing
 * garbage: "12abc" is refused).  1 found (*v set), 0 absent (*v = def),
 * -1 malformed (a message is printed). */
int ctl_int_opt(int argc, char **argv, const char *name, long long min, long long max,
		long long def, long long *v);

/* Print a failure of what to stderr; returns the exit status 1. */
int ctl_fail(enum qc_err rc, struct db *db, const char *what);
/* User id from --id N or --email E; 0 (with a message) if none. */
long long ctl_user_arg(struct db *db, int argc, char **argv);

/* Commands beyond migrate/user/key (quota, cache): exit status, or -1 if
 * argv[0] is not one of them. */
int ctl_more(struct db *db, const struct config *cfg, int argc, char **argv);
/* quotacachectl experiment ... (ctl_experiment.c): exit status. */
int ctl_experiment(struct db *db, int argc, char **argv);
/* Usage lines of those commands. */
void ctl_usage_more(void);

#endif
