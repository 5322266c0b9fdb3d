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

/* Print a failure of what to stderr; returns the exit status 1. */
int ctl_fail(enum qc_err rc, struct db *db, const char *what);
/* User id from --id N or --email E; 0 (with a message) if none. */
long long ctl_user_arg(struct db *db, int argc, char **argv);

/* Commands beyond migrate/user/key (quota, cache): exit status, or -1 if
 * argv[0] is not one of them. */
int ctl_more(struct db *db, const struct config *cfg, int argc, char **argv);
/* Usage lines of those commands. */
void ctl_usage_more(void);

#endif
