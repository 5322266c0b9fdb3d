/*
 * openai.h - OpenAI's chat-completions wire format (SPEC §10), pure: a
 * request's validation, what of it goes upstream and its cache key; the
 * answer and chunk objects; errors in OpenAI's shape.  No FastCGI, no
 * database: unit tests call all of it.
 */
#ifndef QC_OPENAI_H
#define QC_OPENAI_H

#include <stddef.h>
#include <time.h>

#include <json-c/json.h>

#define OAI_MAX_MESSAGES 2048
#define OAI_MAX_PARTS 256
#define OAI_MAX_TOOLS 128

struct oai_req {
	const char *model;          /* borrowed from the body */
	json_object *messages;      /* borrowed from the body */
	json_object *extra;         /* owned: the other members sent upstream */
	int stream, include_usage;
	int deterministic;          /* temperature 0, or a seed */
	long long max_out;          /* the largest explicit output cap; 0: none */
	char key[65];               /* SHA-256 hex of the generation-affecting members */
};

/* Validate body (a JSON object) into q.  0, or -1 with err (a sentence) and
 * param (the member at fault, e.g. "messages[2].role") set; q then holds
 * nothing to release. */
int oai_parse(json_object *body, struct oai_req *q, char *err, size_t errlen,
	      char *param, size_t paramlen);
void oai_req_release(struct oai_req *q);

/* The chat.completion object of an answer.  message_json (may be NULL):
 * the upstream's message object, used as is (tool calls). */
json_object *oai_completion(const char *id, time_t created, const char *model,
			    const char *content, size_t len, const char *message_json,
			    const char *finish_reason, long long prompt_tokens, long long completion_tokens);
/* A chat.completion.chunk: delta (owned; NULL: no choices, as the usage
 * chunk), finish_reason (NULL: null). */
json_object *oai_chunk(const char *id, time_t created, const char *model, json_object *delta,
		       const char *finish_reason);
json_object *oai_usage(long long prompt_tokens, long long completion_tokens);
/* Length of the replay piece of s[off..len): whole words, at least 16
 * bytes when there are more, at most 256 (cut at a character boundary). */
size_t oai_piece(const char *s, size_t len, size_t off);

/* {"error": {"message", "type", "param", "code"}} */
json_object *oai_error(const char *message, const char *type, const char *param, const char *code);
/* OpenAI's type and code for a problem of this status and problem type
 * (extra: the problem's extra members, may be NULL); *no_retry: the SDKs
 * must not retry it (x-should-retry: false). */
void oai_error_kind(int status, const char *problem_type, json_object *extra,
		    const char **type, const char **code, int *no_retry);

#endif
