/*
 * experiment.h - A/B experiments with and without caching (SPEC §13).
 *
 * Owns the experiments table: create (draft), start, stop, list with the
 * per-arm figures summed from the ledger (usage_events says the experiment
 * and arm of every call made while one runs).  Users fall in an arm by a hash
 * of the experiment's name and their id, so every worker and web node agrees
 * without asking anyone; the control arm's generations neither read nor
 * write the cache.  At most one experiment runs at a time.
 *
 * Shared state: the running experiment is read through a per-process copy
 * at most EXP_CACHE_S seconds old (wall clock), guarded by its own mutex;
 * everything else is in MariaDB.  The admin routes and quotacachectl call
 * the same functions.
 */
#ifndef QC_EXPERIMENT_H
#define QC_EXPERIMENT_H

#include <stddef.h>
#include <time.h>

#include <json-c/json.h>

#include "qc.h"

struct db;

#define EXP_NAME_MAX 64
#define EXP_DESC_MAX 500
#define EXP_CACHE_S 2

enum exp_arm { EXP_NONE = 0, EXP_CONTROL, EXP_TREATMENT };

struct exp_running {
	long long id;           /* 0: none runs */
	char name[EXP_NAME_MAX + 1];
	int control_pct;
};

/* --- pure ------------------------------------------------------------ */

/* The arm of user in experiment name: control when the first 32 bits of
 * SHA-256("name" NUL "user id") mod 100 fall below control_pct. */
enum exp_arm exp_arm_of(long long user, const char *name, int control_pct);
const char *exp_arm_name(enum exp_arm a);   /* "control", "treatment", NULL */
/* 1 if s[0..len) is a valid name: 1-64 of A-Z a-z 0-9 _ . - */
int exp_name_ok(const char *s, size_t len);

/* --- database ---------------------------------------------------------- */

/* A new draft experiment.  QC_ECONFLICT if the name is taken. */
enum qc_err exp_create(struct db *db, const char *name, const char *description,
		       int control_pct, time_t now, long long *id);
/* Experiment id from "123" or a name.  QC_ENOTFOUND if none. */
enum qc_err exp_find(struct db *db, const char *id_or_name, long long *id);
/* Start a draft (QC_ECONFLICT: not a draft, or another one runs) or stop a
 * running one (QC_ECONFLICT: not running).  QC_ENOTFOUND if no such id. */
enum qc_err exp_start(struct db *db, long long id, time_t now);
enum qc_err exp_stop(struct db *db, long long id, time_t now);
/* The running experiment (out->id 0: none), from the per-process copy. */
enum qc_err exp_running(struct db *db, struct exp_running *out);
/* Forget the per-process copy (after this process started or stopped one). */
void exp_forget(void);
/* The experiments as JSON (id 0: every one, newest first, an array; else
 * the one object), each with its arms' figures.  QC_ENOTFOUND for an id
 * that does not exist. */
enum qc_err exp_json(struct db *db, long long id, json_object **out);

#endif
