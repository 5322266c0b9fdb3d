/*
 * orchestrator.h - POST /api/v1/generate as plain C (SPEC §5): cache lookup
 * -> quota reservation -> single flight -> upstream -> cache store ->
 * commit -> usage event.  No FastCGI inside; the handler only maps JSON.
 *
 * Every exit path settles what it started: a reservation is committed or
 * released, a flight row is deleted, nothing half-written stays cached.
 */
#ifndef QC_ORCHESTRATOR_H
#define QC_ORCHESTRATOR_H

#include <stddef.h>
#include <time.h>

#include "auth.h"
#include "cache.h"
#include "qc.h"
#include "quota.h"

struct config;
struct db;
struct upstream;

#define ORCH_PROMPT_MAX (512 * 1024)
#define ORCH_MODEL_MAX 64

struct gen_request {
	const char *task;
	const char *prompt;
	size_t prompt_len;
	const char *system_prompt_key;   /* NULL: none */
	size_t spk_len;
	const char *cache_key;           /* NULL: derived from task, model, prompt */
	size_t ck_len;
	enum cache_tier tier;            /* CACHE_SESSION or CACHE_CONTENT */
	long long max_tokens;            /* 0: not given */
	const char *model;               /* NULL: the configured model */
};

struct gen_result {
	char *content;                   /* owned; release with gen_result_release */
	size_t content_len;
	int cached;
	enum cache_tier tier;
	long long prompt_tokens, completion_tokens;
	long long cost_micro;
	long long latency_ms;
	char model[ORCH_MODEL_MAX + 1];
	char cache_key[65];              /* the derived key (hex) when none was given */
	int upstream_calls;
	char error[200];                 /* on failure: what failed, safe for clients */
	struct quota_status quota;       /* on QC_EQUOTA */
};

/* 1 if model is a usable model name: 1..64 of [A-Za-z0-9._:/-]. */
int orch_model_ok(const char *model, size_t len);

/* The default cache key: SHA-256 hex of task, model, system prompt key
 * (may be NULL) and prompt. */
void orch_default_key(const char *task, const char *model, const char *spk, size_t spk_len,
		      const char *prompt, size_t prompt_len, char out[65]);

/*
 * Run one generation for user.  QC_OK fills r.  Errors: QC_EINPUT (unknown
 * system prompt key: r->error), QC_EQUOTA (r->quota), QC_EUPSTREAM,
 * QC_ETIMEOUT, QC_EDBDOWN, QC_EDB.
 */
enum qc_err orch_generate(struct db *db, struct upstream *up, const struct config *cfg,
			  const struct auth_user *user, time_t now,
			  const struct gen_request *in, struct gen_result *r);
void gen_result_release(struct gen_result *r);

#endif
