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

/* The commands by concern (argv after the command word): exit status. */
int ctl_user(struct db *db, int argc, char **argv);     /* ctl_users.c */
int ctl_key(struct db *db, int argc, char **argv);
int ctl_audit(struct db *db, int argc, char **argv);
int ctl_quota(struct db *db, int argc, char **argv);    /* ctl_quota.c */
int ctl_cache(struct db *db, const struct config *cfg, int argc, char **argv);   /* ctl_cache.c */
int ctl_experiment(struct db *db, int argc, char **argv);   /* ctl_experiment.c */
/* Their usage lines. */
void ctl_usage_users(void);
void ctl_usage_quota(void);
void ctl_usage_cache(void);
void ctl_usage_experiment(void);

#endif
