/*
 * upstream.h - the OpenAI-compatible chat-completions client (libcurl).
 *
 * One handle per worker, reused across calls (keep-alive, TLS session
 * reuse), TLS verification on.  Retries 429/5xx a bounded number of times
 * with exponential backoff and jitter, honouring Retry-After within the
 * total time budget.  The API key is sent only in the Authorization header
 * and never logged or returned.
 */
#ifndef QC_UPSTREAM_H
#define QC_UPSTREAM_H

#include <stddef.h>

#include <json-c/json.h>

#include "qc.h"

struct config;
struct upstream;

struct upstream_result {
	char *content;              /* owned by the result */
	size_t content_len;
	long long prompt_tokens, completion_tokens;
	int has_usage;              /* 0: the upstream sent no usage block */
	char model[65];             /* as answered (else as asked) */
	int attempts;               /* HTTP attempts made */
	long http_status;           /* last status seen (0: none) */
	char error[160];            /* what failed, safe to show a client */
};

/* New client for cfg (borrowed, must outlive it).  NULL on ENOMEM. */
struct upstream *upstream_new(const struct config *cfg);
void upstream_free(struct upstream *u);

/*
 * POST {base_url}/chat/completions with model, messages (a JSON array,
 * borrowed) and max_tokens (<= 0: not sent).  QC_OK fills r; QC_ETIMEOUT
 * when the time budget ran out; QC_EUPSTREAM for every other failure
 * (refused, 4xx/5xx after retries, non-JSON, no choices, truncated), with
 * r->error saying which.  Release r with upstream_result_release.
 */
enum qc_err upstream_chat(struct upstream *u, const char *model, json_object *messages,
			  long long max_tokens, struct upstream_result *r);
void upstream_result_release(struct upstream_result *r);

/*
 * Parse an OpenAI chat-completion body into r (content, usage, model).
 * Returns 0, or -1 with r->error set.  Pure; unit-tested.
 */
int upstream_parse(const char *body, size_t len, struct upstream_result *r);

/* Price of a call in micro-dollars from "model:in_per_1k:out_per_1k,...";
 * models not listed cost the first entry's price.  Pure. */
long long upstream_cost_micro(const char *prices, const char *model,
			      long long prompt_tokens, long long completion_tokens);

/* Backoff before retry number n (0-based): base * 2^n ms with jitter in
 * [50 %, 100 %], at least retry_after_s seconds when given.  Pure apart
 * from the random jitter (r in [0, 1)). */
long long upstream_backoff_ms(long long base_ms, int n, long long retry_after_s, double r);

#endif
