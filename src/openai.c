/*
 * openai.c - OpenAI's chat-completions wire format: validation, cache key,
 * answer and chunk objects, errors.  Pure; no shared state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"
#include "qc.h"

/* the members sent upstream besides model and messages, in the order the
 * cache key takes them (stream, stream_options, n and user stay out) */
static const char *const forwarded[] = {
	"temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "tools",
	"tool_choice", "response_format", "presence_penalty", "frequency_penalty", "logit_bias",
	"parallel_tool_calls", "logprobs", "top_logprobs", NULL
};

static int fail(char *err, size_t errlen, char *param, size_t paramlen, const char *p, const char *msg)
{
	snprintf(param, paramlen, "%s", p);
	snprintf(err, errlen, "'%s' %s", p, msg);
	return -1;
}

static int is_num(json_object *v)
{
	return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}

/* member name of body: absent or null -> 1 (nothing to check), else 0 and *v */
static int absent(json_object *body, const char *name, json_object **v)
{
	return !json_object_object_get_ex(body, name, v) || !*v;
}

static int check_range(json_object *body, const char *name, double lo, double hi, char *err,
		       size_t errlen, char *param, size_t paramlen)
{
	json_object *v;
	double d;

	if (absent(body, name, &v))
		return 0;
	if (!is_num(v))
		return fail(err, errlen, param, paramlen, name, "must be a number");
	d = json_object_get_double(v);
	if (d < lo || d > hi) {
		char msg[64];
		snprintf(msg, sizeof msg, "must be between %g and %g", lo, hi);
		return fail(err, errlen, param, paramlen, name, msg);
	}
	return 0;
}

static int check_int(json_object *body, const char *name, long long lo, long long hi, long long *out,
		     char *err, size_t errlen, char *param, size_t paramlen)
{
	json_object *v;
	long long n;

	if (absent(body, name, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return fail(err, errlen, param, paramlen, name, "must be an integer");
	n = json_object_get_int64(v);
	if (n < lo || n > hi) {
		char msg[64];
		snprintf(msg, sizeof msg, "must be between %lld and %lld", lo, hi);
		return fail(err, errlen, param, paramlen, name, msg);
	}
	if (out)
		*out = n;
	return 0;
}

static int check_type(json_object *body, const char *name, json_type t, const char *what,
		      char *err, size_t errlen, char *param, size_t paramlen)
{
	json_object *v;

	if (absent(body, name, &v) || json_object_is_type(v, t))
		return 0;
	return fail(err, errlen, param, paramlen, name, what);
}

static int role_ok(const char *r)
{
	static const char *const roles[] = { "system", "developer", "user", "assistant", "tool", "function", NULL };
	for (int i = 0; roles[i]; i++)
		if (strcmp(r, roles[i]) == 0)
			return 1;
	return 0;
}

static int check_content(json_object *c, const char *role, const char *at, char *err, size_t errlen,
			 char *param, size_t paramlen)
{
	static const char *const types[] = { "text", "image_url", "input_audio", "file", "refusal", NULL };
	char p[96];
	size_t n;

	if (!c)
		return strcmp(role, "assistant") == 0 ? 0
			: fail(err, errlen, param, paramlen, at, "must be a string or an array of parts");
	if (json_object_is_type(c, json_type_string))
		return 0;
	if (!json_object_is_type(c, json_type_array))
		return fail(err, errlen, param, paramlen, at, "must be a string or an array of parts");
	n = json_object_array_length(c);
	if (n > OAI_MAX_PARTS)
		return fail(err, errlen, param, paramlen, at, "has too many parts (at most 256)");
	for (size_t i = 0; i < n; i++) {
		json_object *part = json_object_array_get_idx(c, i), *t, *x;
		int known = 0;

		snprintf(p, sizeof p, "%s[%zu]", at, i);
		if (!json_object_is_type(part, json_type_object) || !json_object_object_get_ex(part, "type", &t) ||
		    !json_object_is_type(t, json_type_string))
			return fail(err, errlen, param, paramlen, p, "must be an object with a string 'type'");
		for (int k = 0; types[k]; k++)
			known |= strcmp(json_object_get_string(t), types[k]) == 0;
		if (!known)
			return fail(err, errlen, param, paramlen, p, "has an unknown part type");
		if (strcmp(json_object_get_string(t), "text") == 0 &&
		    (!json_object_object_get_ex(part, "text", &x) || !json_object_is_type(x, json_type_string)))
			return fail(err, errlen, param, paramlen, p, "is a text part without a string 'text'");
	}
	return 0;
}

static int check_messages(json_object *body, json_object **out, char *err, size_t errlen,
			  char *param, size_t paramlen)
{
	json_object *m;
	size_t n;
	char at[64];

	if (absent(body, "messages", &m))
		return fail(err, errlen, param, paramlen, "messages", "is required");
	if (!json_object_is_type(m, json_type_array))
		return fail(err, errlen, param, paramlen, "messages", "must be an array");
	n = json_object_array_length(m);
	if (n == 0)
		return fail(err, errlen, param, paramlen, "messages", "must hold at least one message");
	if (n > OAI_MAX_MESSAGES)
		return fail(err, errlen, param, paramlen, "messages", "holds too many messages (at most 2048)");
	for (size_t i = 0; i < n; i++) {
		json_object *msg = json_object_array_get_idx(m, i), *role, *c, *v;

		snprintf(at, sizeof at, "messages[%zu]", i);
		if (!json_object_is_type(msg, json_type_object))
			return fail(err, errlen, param, paramlen, at, "must be an object");
		snprintf(at, sizeof at, "messages[%zu].role", i);
		if (!json_object_object_get_ex(msg, "role", &role) || !json_object_is_type(role, json_type_string))
			return fail(err, errlen, param, paramlen, at, "must be a string");
		if (!role_ok(json_object_get_string(role)))
			return fail(err, errlen, param, paramlen, at,
				    "must be one of system, developer, user, assistant, tool, function");
		snprintf(at, sizeof at, "messages[%zu].content", i);
		c = NULL;
		json_object_object_get_ex(msg, "content", &c);
		if (check_content(c, json_object_get_string(role), at, err, errlen, param, paramlen) < 0)
			return -1;
		snprintf(at, sizeof at, "messages[%zu].name", i);
		if (json_object_object_get_ex(msg, "name", &v) && v && !json_object_is_type(v, json_type_string))
			return fail(err, errlen, param, paramlen, at, "must be a string");
		snprintf(at, sizeof at, "messages[%zu].tool_call_id", i);
		if (json_object_object_get_ex(msg, "tool_call_id", &v) && v && !json_object_is_type(v, json_type_string))
			return fail(err, errlen, param, paramlen, at, "must be a string");
		snprintf(at, sizeof at, "messages[%zu].tool_calls", i);
		if (json_object_object_get_ex(msg, "tool_calls", &v) && v && !json_object_is_type(v, json_type_array))
			return fail(err, errlen, param, paramlen, at, "must be an array");
	}
	*out = m;
	return 0;
}

static int check_stop(json_object *body, char *err, size_t errlen, char *param, size_t paramlen)
{
	json_object *v;
	size_t n;

	if (absent(body, "stop", &v) || json_object_is_type(v, json_type_string))
		return 0;
	if (!json_object_is_type(v, json_type_array) || (n = json_object_array_length(v)) > 4)
		return fail(err, errlen, param, paramlen, "stop", "must be a string or an array of up to 4 strings");
	for (size_t i = 0; i < n; i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_string))
			return fail(err, errlen, param, paramlen, "stop", "must be a string or an array of up to 4 strings");
	return 0;
}

int oai_parse(json_object *body, struct oai_req *q, char *err, size_t errlen,
	      char *param, size_t paramlen)
{
	json_object *v, *key;
	long long n = 1, mt = 0, mct = 0;
	const char *ks;
	size_t klen = 0;
	int has_temp0;

	memset(q, 0, sizeof *q);
	if (absent(body, "model", &v) || !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) < 1 || json_object_get_string_len(v) > 64)
		return fail(err, errlen, param, paramlen, "model", "must be a model name (a string)");
	q->model = json_object_get_string(v);
	if (check_messages(body, &q->messages, err, errlen, param, paramlen) < 0 ||
	    check_type(body, "stream", json_type_boolean, "must be true or false", err, errlen, param, paramlen) < 0 ||
	    check_type(body, "stream_options", json_type_object, "must be an object", err, errlen, param, paramlen) < 0 ||
	    check_range(body, "temperature", 0, 2, err, errlen, param, paramlen) < 0 ||
	    check_range(body, "top_p", 0, 1, err, errlen, param, paramlen) < 0 ||
	    check_range(body, "presence_penalty", -2, 2, err, errlen, param, paramlen) < 0 ||
	    check_range(body, "frequency_penalty", -2, 2, err, errlen, param, paramlen) < 0 ||
	    check_int(body, "max_tokens", 1, 1000000, &mt, err, errlen, param, paramlen) < 0 ||
	    check_int(body, "max_completion_tokens", 1, 1000000, &mct, err, errlen, param, paramlen) < 0 ||
	    check_int(body, "n", 1, 128, &n, err, errlen, param, paramlen) < 0 ||
	    check_int(body, "seed", -(1LL << 62), 1LL << 62, NULL, err, errlen, param, paramlen) < 0 ||
	    check_int(body, "top_logprobs", 0, 20, NULL, err, errlen, param, paramlen) < 0 ||
	    check_stop(body, err, errlen, param, paramlen) < 0 ||
	    check_type(body, "tools", json_type_array, "must be an array", err, errlen, param, paramlen) < 0 ||
	    check_type(body, "response_format", json_type_object, "must be an object", err, errlen, param, paramlen) < 0 ||
	    check_type(body, "logit_bias", json_type_object, "must be an object", err, errlen, param, paramlen) < 0 ||
	    check_type(body, "parallel_tool_calls", json_type_boolean, "must be true or false", err, errlen, param,
		       paramlen) < 0 ||
	    check_type(body, "logprobs", json_type_boolean, "must be true or false", err, errlen, param, paramlen) < 0 ||
	    check_type(body, "user", json_type_string, "must be a string", err, errlen, param, paramlen) < 0)
		return -1;
	if (n != 1)
		return fail(err, errlen, param, paramlen, "n", "must be 1: quotacache answers one choice");
	if (!absent(body, "tools", &v) && json_object_array_length(v) > OAI_MAX_TOOLS)
		return fail(err, errlen, param, paramlen, "tools", "holds too many tools (at most 128)");
	if (!absent(body, "tool_choice", &v) && !json_object_is_type(v, json_type_string) &&
	    !json_object_is_type(v, json_type_object))
		return fail(err, errlen, param, paramlen, "tool_choice", "must be a string or an object");
	if (!absent(body, "stream_options", &v) && json_object_object_get_ex(v, "include_usage", &key) && key &&
	    !json_object_is_type(key, json_type_boolean))
		return fail(err, errlen, param, paramlen, "stream_options.include_usage", "must be true or false");

	q->stream = !absent(body, "stream", &v) && json_object_get_boolean(v);
	q->include_usage = !absent(body, "stream_options", &v) && json_object_object_get_ex(v, "include_usage", &key) &&
			   key && json_object_get_boolean(key);
	q->max_out = mt > mct ? mt : mct;
	has_temp0 = !absent(body, "temperature", &v) && json_object_get_double(v) == 0.0;
	q->deterministic = has_temp0 || !absent(body, "seed", &v);

	/* what goes upstream besides model and messages; the key is the same
	 * members with model and messages first, serialised by json-c */
	if (!(q->extra = json_object_new_object()) || !(key = json_object_new_object())) {
		oai_req_release(q);
		snprintf(err, errlen, "out of memory");
		param[0] = 0;
		return -1;
	}
	json_object_object_add(key, "model", json_object_new_string(q->model));
	json_object_object_add(key, "messages", json_object_get(q->messages));
	for (int i = 0; forwarded[i]; i++)
		if (!absent(body, forwarded[i], &v)) {
			json_object_object_add(q->extra, forwarded[i], json_object_get(v));
			json_object_object_add(key, forwarded[i], json_object_get(v));
		}
	ks = json_object_to_json_string_length(key, JSON_C_TO_STRING_PLAIN, &klen);
	qc_sha256_hex(ks ? ks : "", ks ? klen : 0, q->key);
	json_object_put(key);
	return 0;
}

void oai_req_release(struct oai_req *q)
{
	json_object_put(q->extra);
	q->extra = NULL;
}

json_object *oai_usage(long long prompt_tokens, long long completion_tokens)
{
	json_object *u = json_object_new_object();

	json_object_object_add(u, "prompt_tokens", json_object_new_int64(prompt_tokens));
	json_object_object_add(u, "completion_tokens", json_object_new_int64(completion_tokens));
	json_object_object_add(u, "total_tokens", json_object_new_int64(prompt_tokens + completion_tokens));
	return u;
}

static json_object *head(const char *id, const char *object, time_t created, const char *model)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "object", json_object_new_string(object));
	json_object_object_add(o, "created", json_object_new_int64((long long)created));
	json_object_object_add(o, "model", json_object_new_string(model));
	return o;
}

json_object *oai_completion(const char *id, time_t created, const char *model,
			    const char *content, size_t len, const char *message_json,
			    const char *finish_reason, long long prompt_tokens, long long completion_tokens)
{
	json_object *o = head(id, "chat.completion", created, model), *choices = json_object_new_array();
	json_object *c0 = json_object_new_object(), *msg = NULL;

	if (message_json)
		msg = json_tokener_parse(message_json);
	if (!msg) {
		msg = json_object_new_object();
		json_object_object_add(msg, "role", json_object_new_string("assistant"));
		json_object_object_add(msg, "content", json_object_new_string_len(content ? content : "", (int)len));
		json_object_object_add(msg, "refusal", NULL);
	}
	json_object_object_add(c0, "index", json_object_new_int(0));
	json_object_object_add(c0, "message", msg);
	json_object_object_add(c0, "logprobs", NULL);
	json_object_object_add(c0, "finish_reason", json_object_new_string(finish_reason));
	json_object_array_add(choices, c0);
	json_object_object_add(o, "choices", choices);
	json_object_object_add(o, "usage", oai_usage(prompt_tokens, completion_tokens));
	json_object_object_add(o, "system_fingerprint", NULL);
	return o;
}

json_object *oai_chunk(const char *id, time_t created, const char *model, json_object *delta,
		       const char *finish_reason)
{
	json_object *o = head(id, "chat.completion.chunk", created, model), *choices = json_object_new_array();

	if (delta) {
		json_object *c0 = json_object_new_object();
		json_object_object_add(c0, "index", json_object_new_int(0));
		json_object_object_add(c0, "delta", delta);
		json_object_object_add(c0, "logprobs", NULL);
		json_object_object_add(c0, "finish_reason", finish_reason ? json_object_new_string(finish_reason) : NULL);
		json_object_array_add(choices, c0);
	}
	json_object_object_add(o, "choices", choices);
	return o;
}

static int space(char c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

size_t oai_piece(const char *s, size_t len, size_t off)
{
	size_t i = off, max = off + 256 < len ? off + 256 : len;

	while (i < max) {
		/* a word and the whitespace after it */
		while (i < max && space(s[i]))
			i++;
		while (i < max && !space(s[i]))
			i++;
		while (i < max && space(s[i]))
			i++;
		if (i - off >= 16)
			break;
	}
	if (i == max && max < len)   /* a long word: cut at a character boundary */
		while (i > off + 1 && ((unsigned char)s[i] & 0xc0) == 0x80)
			i--;
	return i - off;
}

json_object *oai_error(const char *message, const char *type, const char *param, const char *code)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();

	json_object_object_add(e, "message", json_object_new_string(message));
	json_object_object_add(e, "type", json_object_new_string(type));
	json_object_object_add(e, "param", param && *param ? json_object_new_string(param) : NULL);
	json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
	json_object_object_add(o, "error", e);
	return o;
}

void oai_error_kind(int status, const char *problem_type, json_object *extra,
		    const char **type, const char **code, int *no_retry)
{
	json_object *w;

	*type = "invalid_request_error";
	*code = NULL;
	*no_retry = 0;
	switch (status) {
	case 401:
		*code = "invalid_api_key";
		break;
	case 403:
		*type = "permission_error";
		*code = "permission_denied";
		break;
	case 404:
		*code = "not_found";
		break;
	case 413:
		*code = "request_too_large";
		break;
	case 429:
		if (strcmp(problem_type, "quota-exceeded") == 0 &&
		    !(extra && json_object_object_get_ex(extra, "window", &w) &&
		      strcmp(json_object_get_string(w), "hourly_calls") == 0)) {
			/* a token window: retrying cannot help before it resets */
			*type = *code = "insufficient_quota";
			*no_retry = 1;
		} else {
			*type = "requests";
			*code = "rate_limit_exceeded";
		}
		break;
	case 502:
		*type = *code = "upstream_error";
		break;
	case 504:
		*type = *code = "timeout";
		break;
	default:
		if (status >= 500) {
			*type = "server_error";
			*code = problem_type;
		}
	}
}
