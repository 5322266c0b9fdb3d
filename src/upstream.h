/*
 * upstream.h - the OpenAI-compatible chat-completions client (libcurl).
 *
 * Each call is a struct up_call with its own easy handle, driven either by
 * a libcurl multi loop (inflight.c: thousands at once in one thread) or by
 * upstream_chat() (blocking, for tools and tests).  TLS verification on.
 * Retries 429/5xx a bounded number of times with exponential backoff and
 * jitter, honouring Retry-After within the
 * total time budget.  The API key is sent only in the Authorization header
 * and never logged or returned.
 */
#ifndef QC_UPSTREAM_H
#define QC_UPSTREAM_H

#include <stddef.h>

#include <curl/curl.h>
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
	char finish_reason[24];     /* choices[0].finish_reason ("" if none) */
	char *message;              /* owned: choices[0].message as JSON when it
				     * carries tool_calls (not streamed); else NULL */
	int streamed;               /* SSE chunk events received (streams) */
	int done;                   /* the stream's [DONE] arrived */
	int tool_calls;             /* the answer calls tools (never cached) */
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

/* --- one call, driven by the caller's loop ------------------------------- */
struct up_call;
/* A call of model with messages (borrowed; serialised at once).  extra
 * (may be NULL, borrowed): more members for the request body (temperature,
 * tools, ...).  stream: ask for SSE with stream_options.include_usage.
 * NULL: ENOMEM. */
struct up_call *up_call_new(const struct config *cfg, const char *model, json_object *messages,
			    long long max_tokens, json_object *extra, int stream);
/* Streams: fn(ud, chunk) for each chunk event as it arrives (on the thread
 * driving the call), after its content, finish_reason and usage were taken
 * into the result; chunk is borrowed and may be changed. */
typedef void (*up_chunk_fn)(void *ud, json_object *chunk);
void up_call_on_chunk(struct up_call *u, up_chunk_fn fn, void *ud);
void up_call_free(struct up_call *u);
/* The easy handle set up for the next attempt (CURLOPT_PRIVATE = u), or
 * NULL when the time budget is spent (the call is over). */
CURL *up_call_attempt(struct up_call *u);
/* The attempt ended with cc: 0 = the call is over; else wait that many ms
 * and attempt again (429/5xx retries with backoff). */
long long up_call_attempt_done(struct up_call *u, CURLcode cc);
/* The call's easy handle (to remove it from a multi handle). */
CURL *up_call_handle(struct up_call *u);
/* The outcome; r takes the content (for a stream that failed, what was
 * streamed).  *secs (may be NULL): time since new. */
enum qc_err up_call_result(struct up_call *u, struct upstream_result *r, double *secs);

/*
 * Parse an OpenAI chat-completion body into r (content, usage, model).
 * Returns 0, or -1 with r->error set.  Pure; unit-tested.
 */
int upstream_parse(const char *body, size_t len, struct upstream_result *r);

/* CURLOPT_OPENSOCKETFUNCTION for every outbound socket of a worker: the
 * socket moves to a descriptor >= 1024, leaving the low ones to the FastCGI
 * connections (libfcgi select()s them).  CURL_SOCKET_BAD on failure. */
curl_socket_t upstream_open_high(void *ud, curlsocktype purpose, struct curl_sockaddr *a);

/*
 * Streams: feed the SSE body as it arrives; complete "data:" lines are
 * parsed (content appended to r, finish_reason, usage, model, [DONE]) and
 * each chunk object handed to fn (may be NULL).  *line holds a partial
 * line between calls (free it when done).  Returns 0, or -1 with r->error
 * set (an event that is not JSON, an error event, or too much content).
 */
struct sse_state { char *line; size_t len, cap; };
int upstream_sse_feed(struct sse_state *st, const char *p, size_t n, struct upstream_result *r,
		      up_chunk_fn fn, void *ud);
void upstream_sse_free(struct sse_state *st);

/* The allow-list of models with their prices, "model:in_per_1k:out_per_1k,..."
 * (dollars per 1K tokens).  upstream_price: 1 and the prices if model is
 * listed, else 0.  upstream_prices_check: 0, or -1 with err when an entry is
 * malformed or the default model has no price (the worker refuses to
 * start).  upstream_cost_micro: micro-dollars of a call, 0 for a model not
 * listed.  Pure. */
int upstream_price(const char *prices, const char *model, double *in, double *out);
/* Call fn for each listed model in order (fn returns non-zero to stop);
 * -1 if the list is malformed. */
int upstream_models_each(const char *prices,
			 int (*fn)(const char *m, size_t ml, double in, double out, void *ud), void *ud);
int upstream_prices_check(const char *prices, const char *default_model, char *err, size_t errlen);
long long upstream_cost_micro(const char *prices, const char *model,
			      long long prompt_tokens, long long completion_tokens);

/* Backoff before retry number n (0-based): base * 2^n ms with jitter in
 * [50 %, 100 %], at least retry_after_s seconds when given.  Pure apart
 * from the random jitter (r in [0, 1)). */
long long upstream_backoff_ms(long long base_ms, int n, long long retry_after_s, double r);

#endif
