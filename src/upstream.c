/*
 * upstream.c - libcurl client for OpenAI-compatible chat completions.
 * State: one reused CURL easy handle and its response buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "settings.h"
#include "log.h"
#include "upstream.h"

#define MAX_RESPONSE (8 << 20)

struct upstream {
	const struct config *cfg;
	CURL *h;
	char *buf;
	size_t len, cap;
	long long retry_after;      /* from the last response, seconds; -1 none */
};

struct upstream *upstream_new(const struct config *cfg)
{
	struct upstream *u = calloc(1, sizeof *u);

	if (!u)
		return NULL;
	u->cfg = cfg;
	if (!(u->h = curl_easy_init())) {
		free(u);
		return NULL;
	}
	return u;
}

void upstream_free(struct upstream *u)
{
	if (!u)
		return;
	curl_easy_cleanup(u->h);
	free(u->buf);
	free(u);
}

void upstream_result_release(struct upstream_result *r)
{
	free(r->content);
	r->content = NULL;
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
	struct upstream *u = ud;
	size_t add = sz * n;

	if (u->len + add > MAX_RESPONSE)
		return 0;   /* aborts the transfer */
	if (u->len + add + 1 > u->cap) {
		size_t ncap = (u->cap ? u->cap * 2 : 16384) + add;
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
	struct upstream *u = ud;
	size_t len = sz * n;

	if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		long long v = strtoll(p + 12, NULL, 10);
		if (v >= 0 && v < 3600)
			u->retry_after = v;
	}
	return len;
}

int upstream_parse(const char *body, size_t len, struct upstream_result *r)
{
	json_tokener *tok = json_tokener_new();
	json_object *o = NULL, *choices, *c0, *msg, *content, *usage, *v, *model;
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
	    !json_object_object_get_ex(c0, "message", &msg) ||
	    !json_object_object_get_ex(msg, "content", &content) ||
	    !json_object_is_type(content, json_type_string)) {
		snprintf(r->error, sizeof r->error, "the upstream's JSON has no choices[0].message.content");
		goto out;
	}
	r->content_len = (size_t)json_object_get_string_len(content);
	if (!(r->content = malloc(r->content_len + 1))) {
		snprintf(r->error, sizeof r->error, "out of memory");
		goto out;
	}
	memcpy(r->content, json_object_get_string(content), r->content_len);
	r->content[r->content_len] = 0;
	r->has_usage = 0;
	if (json_object_object_get_ex(o, "usage", &usage) && json_object_is_type(usage, json_type_object)) {
		long long pt = -1, ct = -1;
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
	if (json_object_object_get_ex(o, "model", &model) && json_object_is_type(model, json_type_string))
		snprintf(r->model, sizeof r->model, "%s", json_object_get_string(model));
	rc = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

long long upstream_cost_micro(const char *prices, const char *model,
			      long long prompt_tokens, long long completion_tokens)
{
	double in = 0, out = 0;
	int have = 0;
	size_t ml = strlen(model);

	for (const char *p = prices; p && *p;) {
		const char *comma = strchr(p, ','), *colon = strchr(p, ':');
		size_t seg = comma ? (size_t)(comma - p) : strlen(p);
		double a, b;
		if (colon && (size_t)(colon - p) < seg && sscanf(colon + 1, "%lf:%lf", &a, &b) == 2) {
			int match = (size_t)(colon - p) == ml && strncmp(p, model, ml) == 0;
			if (match || !have) {   /* the first entry is the default */
				in = a;
				out = b;
				have = 1;
			}
			if (match)
				break;
		}
		p = comma ? comma + 1 : NULL;
	}
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

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum qc_err upstream_chat(struct upstream *u, const char *model, json_object *messages,
			  long long max_tokens, struct upstream_result *r)
{
	const struct config *c = u->cfg;
	char url[1024], auth[1100];
	struct curl_slist *hdrs = NULL;
	json_object *req = json_object_new_object();
	const char *body;
	size_t blen;
	long long start = now_ms(), deadline = start + c->upstream_timeout_ms;
	enum qc_err rc = QC_EUPSTREAM;

	memset(r, 0, sizeof *r);
	snprintf(r->model, sizeof r->model, "%s", model);
	if (!req)
		return QC_ENOMEM;
	json_object_object_add(req, "model", json_object_new_string(model));
	json_object_object_add(req, "messages", json_object_get(messages));
	if (max_tokens > 0)
		json_object_object_add(req, "max_tokens", json_object_new_int64(max_tokens));
	body = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &blen);
	snprintf(url, sizeof url, "%s/chat/completions", c->upstream_base_url);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (c->upstream_key && *c->upstream_key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->upstream_key);
		hdrs = curl_slist_append(hdrs, auth);
	}
	for (int attempt = 0;; attempt++) {
		long long left = deadline - now_ms();
		CURLcode cc;
		long status = 0;

		if (left <= 0) {
			snprintf(r->error, sizeof r->error, "the upstream did not answer within %lld ms",
				 c->upstream_timeout_ms);
			rc = QC_ETIMEOUT;
			break;
		}
		u->len = 0;
		u->retry_after = -1;
		/* options are set again each time; the handle keeps its connections */
		curl_easy_setopt(u->h, CURLOPT_URL, url);
		curl_easy_setopt(u->h, CURLOPT_POST, 1L);
		curl_easy_setopt(u->h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(u->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
		curl_easy_setopt(u->h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(u->h, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(u->h, CURLOPT_WRITEDATA, u);
		curl_easy_setopt(u->h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(u->h, CURLOPT_HEADERDATA, u);
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
		r->attempts = attempt + 1;
		cc = curl_easy_perform(u->h);
		if (cc == CURLE_OPERATION_TIMEDOUT) {
			snprintf(r->error, sizeof r->error, "the upstream did not answer within %lld ms",
				 c->upstream_timeout_ms);
			rc = QC_ETIMEOUT;
			break;
		}
		if (cc != CURLE_OK) {
			/* refused, reset, truncated body (CURLE_PARTIAL_FILE), ... */
			snprintf(r->error, sizeof r->error, "upstream transfer failed: %s",
				 curl_easy_strerror(cc));
			rc = QC_EUPSTREAM;
			break;
		}
		curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
		r->http_status = status;
		if (status == 429 || status >= 500) {
			snprintf(r->error, sizeof r->error, "the upstream answered HTTP %ld", status);
			rc = QC_EUPSTREAM;
			if (attempt >= c->upstream_retries)
				break;
			long long wait = upstream_backoff_ms(c->upstream_backoff_ms, attempt, u->retry_after,
							     (double)rand() / ((double)RAND_MAX + 1.0));
			if (now_ms() + wait >= deadline) {
				snprintf(r->error, sizeof r->error,
					 "the upstream answered HTTP %ld and its Retry-After passes the time budget", status);
				break;
			}
			log_info("upstream", "HTTP %ld, retry %d in %lld ms", status, attempt + 1, wait);
			struct timespec ts = { wait / 1000, (long)(wait % 1000) * 1000000L };
			nanosleep(&ts, NULL);
			continue;
		}
		if (status != 200) {
			snprintf(r->error, sizeof r->error, "the upstream answered HTTP %ld", status);
			rc = QC_EUPSTREAM;
			break;
		}
		if (upstream_parse(u->buf ? u->buf : "", u->len, r) < 0) {
			rc = QC_EUPSTREAM;
			break;
		}
		rc = QC_OK;
		break;
	}
	curl_slist_free_all(hdrs);
	json_object_put(req);
	/* the key sits in the header list only; nothing of it is logged */
	memset(auth, 0, sizeof auth);
	if (rc != QC_OK)
		log_warn("upstream", "call failed after %d attempt(s): %s", r->attempts, r->error);
	return rc;
}
