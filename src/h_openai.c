/*
 * h_openai.c - POST /v1/chat/completions (SPEC §10) and the streamed
 * answers of both generation routes: validate (openai.c), run the
 * generation pipeline (gen_run), answer as a chat.completion or as SSE.
 *
 * A stream's chunks are forwarded by oai_on_chunk on the multi loop's
 * thread as the upstream sends them; [DONE] (or an error event) goes out
 * in oai_respond once the answer is billed.  A hit, a waiter's answer or an
 * upstream that did not stream is replayed as a stream of several deltas.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "metrics.h"
#include "openai.h"
#include "orchestrator.h"
#include "quota.h"

static void chat_id(const struct http_req *req, char id[32])
{
	snprintf(id, 32, "chatcmpl-%s", req->id);
}

/* data: JSON\n\n, flushed.  -1: the client is gone. */
static int sse_send(struct http_req *req, json_object *o)
{
	size_t len = 0;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
							   &len);
	char *buf;
	int rc;

	if (!s || !(buf = malloc(len + 9)))
		return -1;
	memcpy(buf, "data: ", 6);
	memcpy(buf + 6, s, len);
	memcpy(buf + 6 + len, "\n\n", 3);
	rc = http_stream_write(req, buf, len + 8);
	free(buf);
	return rc;
}

static void answer_headers(struct http_req *req, struct orch *o)
{
	const struct gen_result *r = &o->r;

	http_add_header(req, "X-Quotacache-Cache", r->cached ? "HIT" : (o->in.bypass || !o->caches) ? "BYPASS" : "MISS");
	if (r->quota.user_id)   /* a reservation was made: its status */
		api_ratelimit_headers(req, &r->quota);
}

static void begin_stream(struct http_req *req, struct orch *o)
{
	answer_headers(req, o);
	http_stream_begin(req, 200, "text/event-stream");
	o->streaming = 1;
}

static void count_stream(struct orch *o, const char *outcome)
{
	char labels[96];

	snprintf(labels, sizeof labels, "api=\"%s\",outcome=\"%s\"",
		 orch_api_name(o->in.api), outcome);
	metrics_count("qc_streams_total", labels, 1);
}

int oai_on_chunk(struct http_req *req, struct orch *o, json_object *chunk)
{
	json_object *choices, *usage;
	char id[32];

	if (!o->streaming)
		begin_stream(req, o);
	if (json_object_object_get_ex(chunk, "usage", &usage) && usage &&
	    json_object_is_type(usage, json_type_object)) {
		if (!o->in.include_usage && json_object_object_get_ex(chunk, "choices", &choices) &&
		    json_object_is_type(choices, json_type_array) && json_object_array_length(choices) == 0)
			return 0;   /* the usage chunk nobody asked for */
		if (o->in.include_usage)
			o->usage_sent = 1;
	}
	if (!o->in.include_usage)
		json_object_object_del(chunk, "usage");
	/* one id and the model the client asked for, on every chunk */
	chat_id(req, id);
	json_object_object_add(chunk, "id", json_object_new_string(id));
	json_object_object_add(chunk, "model", json_object_new_string(o->model));
	return sse_send(req, chunk);
}

static int send_chunk(struct http_req *req, struct orch *o, json_object *delta, const char *finish)
{
	char id[32];
	json_object *c;
	int rc;

	chat_id(req, id);
	c = oai_chunk(id, req->now, o->model, delta, finish);
	rc = sse_send(req, c);
	json_object_put(c);
	return rc;
}

static int send_usage(struct http_req *req, struct orch *o)
{
	char id[32];
	json_object *c;
	int rc;

	chat_id(req, id);
	c = oai_chunk(id, req->now, o->model, NULL, NULL);
	json_object_object_add(c, "usage", oai_usage(o->r.prompt_tokens, o->r.completion_tokens));
	rc = sse_send(req, c);
	json_object_put(c);
	return rc;
}

/* A whole answer as a stream: the role, the content in several deltas,
 * the finish, the usage if asked, [DONE]. */
static void replay(struct http_req *req, struct orch *o)
{
	const struct gen_result *r = &o->r;
	json_object *d = json_object_new_object();
	size_t off = 0;

	begin_stream(req, o);
	json_object_object_add(d, "role", json_object_new_string("assistant"));
	json_object_object_add(d, "content", json_object_new_string(""));
	if (send_chunk(req, o, d, NULL) < 0)
		return;
	while (off < r->content_len) {
		size_t n = oai_piece(r->content, r->content_len, off);
		d = json_object_new_object();
		json_object_object_add(d, "content", json_object_new_string_len(r->content + off, (int)n));
		if (send_chunk(req, o, d, NULL) < 0)
			return;
		off += n;
	}
	if (send_chunk(req, o, json_object_new_object(), r->finish_reason[0] ? r->finish_reason : "stop") < 0 ||
	    (o->in.include_usage && send_usage(req, o) < 0))
		return;
	http_stream_write(req, "data: [DONE]\n\n", 14);
	count_stream(o, r->cached ? "replayed" : "ok");
}

/* The end of a stream whose chunks were forwarded live. */
static void stream_end(struct http_req *req, struct orch *o)
{
	json_object *e;

	if (o->rc == QC_OK) {
		count_stream(o, o->client_gone ? "client_gone" : "ok");
		if (o->client_gone)
			return;
		if (o->in.include_usage && !o->usage_sent)   /* the upstream sent none: our count */
			send_usage(req, o);
		http_stream_write(req, "data: [DONE]\n\n", 14);
		return;
	}
	count_stream(o, "broken");
	if (o->client_gone)
		return;
	e = oai_error(o->r.error[0] ? o->r.error : qc_strerror(o->rc),
		      o->rc == QC_ETIMEOUT ? "timeout" : "upstream_error",
		      NULL, o->rc == QC_ETIMEOUT ? "timeout" : "upstream_error");
	sse_send(req, e);
	json_object_put(e);
}

void oai_respond(struct http_req *req, struct orch *o)
{
	const struct gen_result *r = &o->r;
	json_object *out;
	char id[32];

	if (o->streaming) {
		stream_end(req, o);
		return;
	}
	if (o->rc != QC_OK) {   /* nothing went out yet: an ordinary error answer */
		gen_respond(req, o);
		return;
	}
	if (o->in.stream) {
		replay(req, o);
		return;
	}
	answer_headers(req, o);
	chat_id(req, id);
	out = oai_completion(id, req->now, o->model, r->content, r->content_len, r->message,
			     r->finish_reason[0] ? r->finish_reason : "stop",
			     r->prompt_tokens, r->completion_tokens);
	http_send_json(req, 200, out);
	json_object_put(out);
}

void h_oai_chat(struct app *app, struct http_req *req)
{
	struct oai_req q;
	struct gen_request in;
	const char *task = http_getenv(req, "HTTP_X_QUOTACACHE_TASK");
	const char *mode = http_getenv(req, "HTTP_X_QUOTACACHE_CACHE");
	const char *ck = http_getenv(req, "HTTP_X_QUOTACACHE_CACHE_KEY");
	char err[256];

	if (oai_parse(req->json, &q, err, sizeof err, req->err_param, sizeof req->err_param) < 0) {
		api_error(req, QC_EINPUT, err);
		return;
	}
	memset(&in, 0, sizeof in);
	in.task = task && *task ? task : "default";
	in.tier = CACHE_CONTENT;
	if (!quota_task_ok(in.task, strlen(in.task))) {
		snprintf(err, sizeof err, "header X-Quotacache-Task must be 1-64 characters of A-Z a-z 0-9 _ . -");
	} else if (mode && strcmp(mode, "session") == 0) {
		in.tier = CACHE_SESSION;
	} else if (mode && strcmp(mode, "no-store") == 0) {
		in.bypass = 1;
	} else if (mode && strcmp(mode, "content") != 0) {
		snprintf(err, sizeof err, "header X-Quotacache-Cache must be session, content or no-store");
	} else {
		err[0] = 0;
	}
	if (!err[0] && ck && !cache_key_ok(ck, strlen(ck)))
		snprintf(err, sizeof err, "header X-Quotacache-Cache-Key must be 1-255 bytes without control characters");
	if (!err[0] && !orch_model_ok(q.model, strlen(q.model))) {
		snprintf(req->err_param, sizeof req->err_param, "model");
		snprintf(err, sizeof err, "'model' must be 1-64 characters of A-Z a-z 0-9 . _ - : /");
	}
	if (err[0]) {
		oai_req_release(&q);
		api_error(req, QC_EINPUT, err);
		return;
	}
	if (gen_model_refused(app, req, q.model)) {
		oai_req_release(&q);
		return;
	}
	/* cached only when deterministic, unless the operator says always or never */
	if (!in.bypass)
		in.bypass = strcmp(app->cfg.openai_cache, "never") == 0 ||
			    (strcmp(app->cfg.openai_cache, "always") != 0 && !q.deterministic);
	in.prompt = req->body;   /* the estimate counts the whole request: tools are prompt tokens too */
	in.prompt_len = req->body_len;
	in.model = q.model;
	in.max_tokens = q.max_out;
	in.messages = q.messages;
	in.extra = q.extra;      /* gen_run takes it over */
	in.stream = q.stream;
	in.include_usage = q.include_usage;
	in.api = ORCH_API_OPENAI;
	if (ck) {
		in.cache_key = ck;
		in.ck_len = strlen(ck);
	} else {
		memcpy(in.key, q.key, sizeof in.key);
	}
	gen_run(app, req, &in, oai_respond, in.stream ? oai_on_chunk : NULL);
}
