/*
 * upstream.c - libcurl client for OpenAI-compatible chat completions.
 * State: none shared.  Each call (struct up_call) has its own easy handle,
 * request body and response buffer, and belongs to one thread at a time
 * (the multi loop of inflight.c while in flight).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "settings.h"
#include "log.h"
#include "upstream.h"

#define MAX_RESPONSE (8 << 20)
/* curl's sockets live at or above this descriptor, so the FastCGI
 * connections (which libfcgi hands to select(), limited to FD_SETSIZE)
 * keep the low numbers even with hundreds of calls in flight */
#define HIGH_FD 1024

struct up_call {
	const struct config *cfg;
	CURL *h;
	struct curl_slist *hdrs;
	char *body;                 /* the request JSON */
	size_t blen;
	char url[1024];
	char *buf;                  /* the response */
	size_t len, cap;
	long long retry_after;      /* from the last response, seconds; -1 none */
	long long started_ms, deadline_ms;
	int attempt;
	enum qc_err rc;
	struct upstream_result res;
	/* streams */
	int stream, sse;            /* asked for SSE; this attempt's answer is SSE */
	struct sse_state st;
	up_chunk_fn on_chunk;
	void *chunk_ud;
};

/* blocking client: only the configuration (each call has its own handle) */
struct upstream {
	const struct config *cfg;
};

struct upstream *upstream_new(const struct config *cfg)
{
	struct upstream *u = calloc(1, sizeof *u);

	if (u)
		u->cfg = cfg;
	return u;
}

void upstream_free(struct upstream *u)
{
	free(u);
}

void upstream_result_release(struct upstream_result *r)
{
	free(r->content);
	r->content = NULL;
	free(r->message);
	r->message = NULL;
}

/* Append text to r->content (NUL-terminated); -1 past MAX_RESPONSE or ENOMEM. */
static int content_add(struct upstream_result *r, const char *p, size_t n)
{
	char *t;

	if (r->content_len + n > MAX_RESPONSE || !(t = realloc(r->content, r->content_len + n + 1)))
		return -1;
	memcpy(t + r->content_len, p, n);
	r->content = t;
	r->content_len += n;
	t[r->content_len] = 0;
	return 0;
}

/* usage.prompt_tokens / completion_tokens of o into r when both are sane */
static void take_usage(json_object *o, struct upstream_result *r)
{
	json_object *usage, *v;
	long long pt = -1, ct = -1;

	if (!json_object_object_get_ex(o, "usage", &usage) || !json_object_is_type(usage, json_type_object))
		return;
	if (json_object_object_get_ex(usage, "prompt_tokens", &v) && json_object_is_type(v, json_type_int))
		pt = json_object_get_int64(v);
	if (json_object_object_get_ex(usage, "completion_tokens", &v) && json_object_is_type(v, json_type_int))
		ct = json_object_get_int64(v);
	if (pt >= 0 && ct >= 0 && pt < 100000000 && ct < 100000000) {
		r->prompt_tokens = pt;
		r->completion_tokens = ct;
		r->has_usage = 1;
	}
}

static void take_model(json_object *o, struct upstream_result *r)
{
	json_object *model;

	if (json_object_object_get_ex(o, "model", &model) && json_object_is_type(model, json_type_string))
		snprintf(r->model, sizeof r->model, "%s", json_object_get_string(model));
}

static void take_finish(json_object *c0, struct upstream_result *r)
{
	json_object *fr;

	if (json_object_object_get_ex(c0, "finish_reason", &fr) && json_object_is_type(fr, json_type_string))
		snprintf(r->finish_reason, sizeof r->finish_reason, "%s", json_object_get_string(fr));
}

/* One SSE data payload (not "[DONE]"). */
static int sse_event(const char *data, size_t n, struct upstream_result *r, up_chunk_fn fn, void *ud)
{
	json_tokener *tok = json_tokener_new();
	json_object *o, *choices, *c0, *delta, *v;
	int rc = -1;

	if (!tok) {
		snprintf(r->error, sizeof r->error, "out of memory");
		return -1;
	}
	o = json_tokener_parse_ex(tok, data, (int)n);
	if (json_tokener_get_error(tok) != json_tokener_success || !o ||
	    !json_object_is_type(o, json_type_object)) {
		snprintf(r->error, sizeof r->error, "the upstream streamed an event that is not a JSON object");
		goto out;
	}
	if (json_object_object_get_ex(o, "error", &v) && v) {
		json_object *m;
		snprintf(r->error, sizeof r->error, "the upstream failed mid-stream: %.100s",
			 json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "message", &m)
			 ? json_object_get_string(m) : "an error event");
		goto out;
	}
	r->streamed++;
	take_usage(o, r);
	take_model(o, r);
	if (json_object_object_get_ex(o, "choices", &choices) && json_object_is_type(choices, json_type_array) &&
	    json_object_array_length(choices) > 0 && (c0 = json_object_array_get_idx(choices, 0))) {
		take_finish(c0, r);
		if (json_object_object_get_ex(c0, "delta", &delta) && json_object_is_type(delta, json_type_object)) {
			if (json_object_object_get_ex(delta, "content", &v) && json_object_is_type(v, json_type_string) &&
			    content_add(r, json_object_get_string(v), (size_t)json_object_get_string_len(v)) < 0) {
				snprintf(r->error, sizeof r->error, "the upstream's answer is larger than %d bytes",
					 MAX_RESPONSE);
				goto out;
			}
			if (json_object_object_get_ex(delta, "tool_calls", &v) && v)
				r->tool_calls = 1;
		}
	}
	if (!r->content && content_add(r, "", 0) < 0)
		goto out;
	if (fn)
		fn(ud, o);
	rc = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

int upstream_sse_feed(struct sse_state *st, const char *p, size_t n, struct upstream_result *r,
		      up_chunk_fn fn, void *ud)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		char *t;

		if (st->len + take > MAX_RESPONSE) {
			snprintf(r->error, sizeof r->error, "the upstream streamed a line over %d bytes", MAX_RESPONSE);
			return -1;
		}
		if (st->len + take + 1 > st->cap) {
			size_t ncap = st->cap * 2 + take + 256;
			if (!(t = realloc(st->line, ncap))) {
				snprintf(r->error, sizeof r->error, "out of memory");
				return -1;
			}
			st->line = t;
			st->cap = ncap;
		}
		memcpy(st->line + st->len, p, take);
		st->len += take;
		st->line[st->len] = 0;
		p += take;
		n -= take;
		if (!nl)
			break;
		p++;
		n--;
		/* a complete line: only "data:" lines matter (comments, event:
		 * and id: lines and the blank separators are skipped) */
		if (st->len && st->line[st->len - 1] == '\r')
			st->line[--st->len] = 0;
		if (st->len >= 5 && memcmp(st->line, "data:", 5) == 0) {
			const char *d = st->line + 5;
			size_t dl = st->len - 5;
			if (dl && *d == ' ') {
				d++;
				dl--;
			}
			if (dl == 6 && memcmp(d, "[DONE]", 6) == 0)
				r->done = 1;
			else if (sse_event(d, dl, r, fn, ud) < 0)
				return -1;
		}
		st->len = 0;
	}
	return 0;
}

void upstream_sse_free(struct sse_state *st)
{
	free(st->line);
	memset(st, 0, sizeof *st);
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
	struct up_call *u = ud;
	size_t add = sz * n;

	if (u->stream && u->sse == 0) {
		/* the first bytes of this attempt: a 200 event stream is parsed
		 * as it arrives; anything else (an error body) is buffered */
		long status = 0;
		char *ct = NULL;
		curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(u->h, CURLINFO_CONTENT_TYPE, &ct);
		u->sse = status == 200 && ct && strncasecmp(ct, "text/event-stream", 17) == 0 ? 1 : -1;
	}
	if (u->sse == 1)
		return upstream_sse_feed(&u->st, p, add, &u->res, u->on_chunk, u->chunk_ud) < 0 ? 0 : add;

	if (u->len + add > MAX_RESPONSE)
		return 0;   /* aborts the transfer */
	if (u->len + add + 1 > u->cap) {
		size_t ncap = (u->cap ? u->cap * 2 : 4096) + add;
		char *t = realloc(u->buf, ncap);
		if (!t)
			return 0;
		u->buf = t;
		u->cap = ncap;
	}
	memcpy(u->buf + u->len, p, add);
	u->len += add;
	u->buf[u->len] = 0;
	return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct up_call *u = ud;
	size_t len = sz * n;

	if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		long long v = strtoll(p + 12, NULL, 10);
		if (v >= 0 && v < 3600)
			u->retry_after = v;
	}
	return len;
}

/* a model name: 1..64 of [A-Za-z0-9._:/-] (':' is the price separator,
 * so not in a price list's names) */
static int orch_like_model(const char *m, size_t len)
{
	if (len == 0 || len > 64)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = m[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == '/'))
			return 0;
	}
	return 1;
}

curl_socket_t upstream_open_high(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol), hi;

	(void)ud;
	(void)purpose;
	if (fd < 0)
		return CURL_SOCKET_BAD;
	if (fd < HIGH_FD && (hi = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD)) >= 0) {
		close(fd);
		fd = hi;
	}
	return fd;
}

int upstream_parse(const char *body, size_t len, struct upstream_result *r)
{
	json_tokener *tok = json_tokener_new();
	json_object *o = NULL, *choices, *c0, *msg, *content, *tc;
	int rc = -1;

	if (!tok) {
		snprintf(r->error, sizeof r->error, "out of memory");
		return -1;
	}
	o = json_tokener_parse_ex(tok, body, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success || !o ||
	    !json_object_is_type(o, json_type_object)) {
		snprintf(r->error, sizeof r->error, "the upstream answered with something that is not JSON");
		goto out;
	}
	if (!json_object_object_get_ex(o, "choices", &choices) ||
	    !json_object_is_type(choices, json_type_array) || json_object_array_length(choices) < 1 ||
	    !(c0 = json_object_array_get_idx(choices, 0)) ||
	    !json_object_object_get_ex(c0, "message", &msg) || !json_object_is_type(msg, json_type_object)) {
		snprintf(r->error, sizeof r->error, "the upstream's JSON has no choices[0].message");
		goto out;
	}
	r->tool_calls = json_object_object_get_ex(msg, "tool_calls", &tc) &&
			json_object_is_type(tc, json_type_array) && json_object_array_length(tc) > 0;
	if (!json_object_object_get_ex(msg, "content", &content) ||
	    !(json_object_is_type(content, json_type_string) || (r->tool_calls && !content))) {
		snprintf(r->error, sizeof r->error, "the upstream's JSON has no choices[0].message.content");
		goto out;
	}
	free(r->content);
	r->content = NULL;
	r->content_len = 0;
	if (content_add(r, content ? json_object_get_string(content) : "",
			content ? (size_t)json_object_get_string_len(content) : 0) < 0) {
		snprintf(r->error, sizeof r->error, "out of memory");
		goto out;
	}
	if (r->tool_calls && !(r->message = strdup(json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN)))) {
		snprintf(r->error, sizeof r->error, "out of memory");
		goto out;
	}
	r->has_usage = 0;
	take_usage(o, r);
	take_model(o, r);
	take_finish(c0, r);
	rc = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

/* Walk "model:in:out,..." calling fn for each entry; fn returns non-zero to
 * stop.  Returns -1 at the first malformed entry (entry copied into bad). */
static int each_price(const char *prices, int (*fn)(const char *m, size_t ml, double in, double out,
						     void *ud), void *ud, char *bad, size_t badlen)
{
	for (const char *p = prices; p && *p;) {
		const char *comma = strchr(p, ','), *colon = strchr(p, ':');
		size_t seg = comma ? (size_t)(comma - p) : strlen(p);
		double a, b;
		char tail;
		char entry[200];

		snprintf(entry, sizeof entry, "%.*s", (int)(seg < 199 ? seg : 199), p);
		if (!colon || (size_t)(colon - p) >= seg || !orch_like_model(p, (size_t)(colon - p)) ||
		    sscanf(entry + (colon - p) + 1, "%lf:%lf%c", &a, &b, &tail) != 2 || a < 0 || b < 0 ||
		    a > 1000 || b > 1000) {
			if (bad)
				snprintf(bad, badlen, "%s", entry);
			return -1;
		}
		if (fn(p, (size_t)(colon - p), a, b, ud))
			return 0;
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

struct find { const char *model; size_t ml; double in, out; int found; };

static int find_one(const char *m, size_t ml, double in, double out, void *ud)
{
	struct find *f = ud;

	if (ml == f->ml && strncmp(m, f->model, ml) == 0) {
		f->in = in;
		f->out = out;
		f->found = 1;
		return 1;
	}
	return 0;
}

int upstream_models_each(const char *prices,
			 int (*fn)(const char *m, size_t ml, double in, double out, void *ud), void *ud)
{
	return each_price(prices, fn, ud, NULL, 0);
}

int upstream_price(const char *prices, const char *model, double *in, double *out)
{
	struct find f = { model, strlen(model), 0, 0, 0 };

	if (each_price(prices, find_one, &f, NULL, 0) < 0 || !f.found)
		return 0;
	if (in)
		*in = f.in;
	if (out)
		*out = f.out;
	return 1;
}

int upstream_prices_check(const char *prices, const char *default_model, char *err, size_t errlen)
{
	char bad[200];
	struct find f = { "", 0, 0, 0, 0 };

	if (!prices || !*prices) {
		snprintf(err, errlen, "upstream_prices lists no model: give model:in_per_1k:out_per_1k,...");
		return -1;
	}
	if (each_price(prices, find_one, &f, bad, sizeof bad) < 0) {
		snprintf(err, errlen, "upstream_prices: '%s' is not model:in_per_1k:out_per_1k "
			 "(a price of dollars per 1K tokens for input and for output)", bad);
		return -1;
	}
	if (!upstream_price(prices, default_model, NULL, NULL)) {
		snprintf(err, errlen, "upstream_model '%s' has no price in upstream_prices", default_model);
		return -1;
	}
	return 0;
}

long long upstream_cost_micro(const char *prices, const char *model,
			      long long prompt_tokens, long long completion_tokens)
{
	double in = 0, out = 0;

	if (!upstream_price(prices, model, &in, &out))
		return 0;
	/* prices are dollars per 1K tokens; the result is micro-dollars */
	return (long long)(((double)prompt_tokens * in + (double)completion_tokens * out) * 1000.0 + 0.5);
}

long long upstream_backoff_ms(long long base_ms, int n, long long retry_after_s, double r)
{
	long long ms = base_ms << (n < 16 ? n : 16);
	ms = ms / 2 + (long long)((double)(ms / 2) * r);
	if (retry_after_s > 0 && ms < retry_after_s * 1000)
		ms = retry_after_s * 1000;
	return ms;
}

struct up_call *up_call_new(const struct config *c, const char *model, json_object *messages,
			    long long max_tokens, json_object *extra, int stream)
{
	struct up_call *u = calloc(1, sizeof *u);
	json_object *req = json_object_new_object();
	const char *body;
	size_t blen = 0;

	if (!u || !req)
		goto fail;
	u->cfg = c;
	snprintf(u->res.model, sizeof u->res.model, "%s", model);
	json_object_object_add(req, "model", json_object_new_string(model));
	json_object_object_add(req, "messages", json_object_get(messages));
	if (max_tokens > 0)
		json_object_object_add(req, "max_tokens", json_object_new_int64(max_tokens));
	if (extra) {
		json_object_object_foreach(extra, k, v)
			json_object_object_add(req, k, json_object_get(v));
	}
	if ((u->stream = stream)) {
		json_object *so = json_object_new_object();
		json_object_object_add(so, "include_usage", json_object_new_boolean(1));
		json_object_object_add(req, "stream", json_object_new_boolean(1));
		json_object_object_add(req, "stream_options", so);
	}
	body = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &blen);
	if (!body || !(u->body = malloc(blen + 1)))
		goto fail;
	memcpy(u->body, body, blen + 1);
	u->blen = blen;
	json_object_put(req);
	req = NULL;
	snprintf(u->url, sizeof u->url, "%s/chat/completions", c->upstream_base_url);
	u->hdrs = curl_slist_append(u->hdrs, "Content-Type: application/json");
	u->hdrs = curl_slist_append(u->hdrs, "Expect:");
	if (c->upstream_key && *c->upstream_key) {
		size_t alen = strlen(c->upstream_key) + 32;
		char *auth = malloc(alen);
		struct curl_slist *t;
		if (!auth)
			goto fail;
		snprintf(auth, alen, "Authorization: Bearer %s", c->upstream_key);
		t = curl_slist_append(u->hdrs, auth);
		/* the key sits in the header list only; nothing of it is logged */
		explicit_bzero(auth, alen);
		free(auth);
		if (!t)
			goto fail;
		u->hdrs = t;
	}
	if (!u->hdrs || !(u->h = curl_easy_init()))
		goto fail;
	u->started_ms = qc_mono_ms();
	u->deadline_ms = u->started_ms + c->upstream_timeout_ms;
	u->rc = QC_EUPSTREAM;
	return u;
fail:
	json_object_put(req);
	up_call_free(u);
	return NULL;
}

void up_call_free(struct up_call *u)
{
	if (!u)
		return;
	if (u->h)
		curl_easy_cleanup(u->h);
	curl_slist_free_all(u->hdrs);
	free(u->body);
	free(u->buf);
	upstream_sse_free(&u->st);
	upstream_result_release(&u->res);
	free(u);
}

void up_call_on_chunk(struct up_call *u, up_chunk_fn fn, void *ud)
{
	u->on_chunk = fn;
	u->chunk_ud = ud;
}

CURL *up_call_attempt(struct up_call *u)
{
	const struct config *c = u->cfg;
	long long left = u->deadline_ms - qc_mono_ms();

	if (left <= 0) {
		snprintf(u->res.error, sizeof u->res.error, "the upstream did not answer within %lld ms",
			 c->upstream_timeout_ms);
		u->rc = QC_ETIMEOUT;
		return NULL;
	}
	u->len = 0;
	u->retry_after = -1;
	u->sse = 0;
	curl_easy_setopt(u->h, CURLOPT_URL, u->url);
	curl_easy_setopt(u->h, CURLOPT_POST, 1L);
	curl_easy_setopt(u->h, CURLOPT_POSTFIELDS, u->body);
	curl_easy_setopt(u->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->blen);
	curl_easy_setopt(u->h, CURLOPT_HTTPHEADER, u->hdrs);
	curl_easy_setopt(u->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(u->h, CURLOPT_WRITEDATA, u);
	curl_easy_setopt(u->h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(u->h, CURLOPT_HEADERDATA, u);
	curl_easy_setopt(u->h, CURLOPT_OPENSOCKETFUNCTION, upstream_open_high);
	curl_easy_setopt(u->h, CURLOPT_CONNECTTIMEOUT_MS, c->upstream_connect_timeout_ms < left
			 ? c->upstream_connect_timeout_ms : left);
	curl_easy_setopt(u->h, CURLOPT_TIMEOUT_MS, left);
	curl_easy_setopt(u->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(u->h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(u->h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(u->h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(u->h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(u->h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(u->h, CURLOPT_USERAGENT, "quotacache/" QC_VERSION);
	curl_easy_setopt(u->h, CURLOPT_PRIVATE, u);
	u->res.attempts = ++u->attempt;
	return u->h;
}

long long up_call_attempt_done(struct up_call *u, CURLcode cc)
{
	const struct config *c = u->cfg;
	struct upstream_result *r = &u->res;
	long status = 0;

	if (u->sse == 1) {
		/* a stream: no retry once events went out */
		curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
		r->http_status = status;
		if (cc == CURLE_OPERATION_TIMEDOUT) {
			snprintf(r->error, sizeof r->error, "the upstream's stream did not end within %lld ms",
				 c->upstream_timeout_ms);
			u->rc = QC_ETIMEOUT;
		} else if (cc == CURLE_WRITE_ERROR) {
			u->rc = QC_EUPSTREAM;   /* r->error says what the event was */
		} else if (cc != CURLE_OK) {
			snprintf(r->error, sizeof r->error, "the upstream's stream broke: %s", curl_easy_strerror(cc));
			u->rc = QC_EUPSTREAM;
		} else if (!r->done) {
			snprintf(r->error, sizeof r->error, "the upstream's stream ended before [DONE]");
			u->rc = QC_EUPSTREAM;
		} else if (!r->content) {
			snprintf(r->error, sizeof r->error, "the upstream's stream had no chunk");
			u->rc = QC_EUPSTREAM;
		} else {
			u->rc = QC_OK;
		}
		return 0;
	}
	if (cc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(r->error, sizeof r->error, "the upstream did not answer within %lld ms",
			 c->upstream_timeout_ms);
		u->rc = QC_ETIMEOUT;
		return 0;
	}
	if (cc != CURLE_OK) {
		/* refused, reset, truncated body (CURLE_PARTIAL_FILE), ... */
		snprintf(r->error, sizeof r->error, "upstream transfer failed: %s", curl_easy_strerror(cc));
		u->rc = QC_EUPSTREAM;
		return 0;
	}
	curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
	r->http_status = status;
	if (status == 429 || status >= 500) {
		long long wait;
		snprintf(r->error, sizeof r->error, "the upstream answered HTTP %ld", status);
		u->rc = QC_EUPSTREAM;
		if (u->attempt > c->upstream_retries)
			return 0;
		wait = upstream_backoff_ms(c->upstream_backoff_ms, u->attempt - 1, u->retry_after,
					   (double)rand() / ((double)RAND_MAX + 1.0));
		if (qc_mono_ms() + wait >= u->deadline_ms) {
			snprintf(r->error, sizeof r->error,
				 "the upstream answered HTTP %ld and its Retry-After passes the time budget", status);
			return 0;
		}
		log_info("upstream", "HTTP %ld, retry %d in %lld ms", status, u->attempt, wait);
		return wait < 1 ? 1 : wait;
	}
	if (status != 200) {
		snprintf(r->error, sizeof r->error, "the upstream answered HTTP %ld", status);
		u->rc = QC_EUPSTREAM;
		return 0;
	}
	if (upstream_parse(u->buf ? u->buf : "", u->len, r) < 0) {
		u->rc = QC_EUPSTREAM;
		return 0;
	}
	u->rc = QC_OK;
	return 0;
}

CURL *up_call_handle(struct up_call *u)
{
	return u->h;
}

enum qc_err up_call_result(struct up_call *u, struct upstream_result *r, double *secs)
{
	*r = u->res;
	memset(&u->res, 0, sizeof u->res);   /* the content moves to r */
	if (secs)
		*secs = (double)(qc_mono_ms() - u->started_ms) / 1000.0;
	if (u->rc != QC_OK)
		log_warn("upstream", "call failed after %d attempt(s): %s", r->attempts, r->error);
	return u->rc;
}

enum qc_err upstream_chat(struct upstream *up, const char *model, json_object *messages,
			  long long max_tokens, struct upstream_result *r)
{
	struct up_call *u = up_call_new(up->cfg, model, messages, max_tokens, NULL, 0);
	enum qc_err rc;
	CURL *h;

	memset(r, 0, sizeof *r);
	if (!u)
		return QC_ENOMEM;
	while ((h = up_call_attempt(u))) {
		long long wait = up_call_attempt_done(u, curl_easy_perform(h));
		struct timespec ts = { wait / 1000, (long)(wait % 1000) * 1000000L };
		if (!wait)
			break;
		nanosleep(&ts, NULL);
	}
	rc = up_call_result(u, r, NULL);
	up_call_free(u);
	return rc;
}
