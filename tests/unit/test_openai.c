/* test_openai.c - the OpenAI wire format: request validation (every member,
 * hostile shapes), the cache key, replay pieces, error kinds; and the SSE
 * parser of upstream streams fed in arbitrary slices. */
#include <stdlib.h>
#include <string.h>

#include "openai.h"
#include "tap.h"
#include "upstream.h"

static int parse(const char *body, struct oai_req *q, char *param)
{
	char err[256];
	json_object *o = json_tokener_parse(body);
	int rc;

	param[0] = 0;
	if (!o)
		return -2;
	rc = oai_parse(o, q, err, sizeof err, param, 64);
	if (rc == 0) {   /* the request must not borrow from a freed body in the test */
		char k[65];
		memcpy(k, q->key, sizeof k);
		oai_req_release(q);
		memcpy(q->key, k, sizeof k);
	}
	json_object_put(o);
	return rc;
}

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static int refused(const char *body, const char *want_param)
{
	struct oai_req q;
	char param[64];
	return parse(body, &q, param) == -1 && strcmp(param, want_param) == 0;
}

struct sink { int n; char last[512]; };

static void on_chunk(void *ud, json_object *c)
{
	struct sink *s = ud;
	s->n++;
	snprintf(s->last, sizeof s->last, "%s", json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN));
}

int main(void)
{
	struct oai_req q, q2;
	char param[64], k1[65];
	const char *type, *code;
	int no_retry;

	CHECK(parse("{\"model\":\"m\"," MSG ",\"temperature\":0,\"max_tokens\":50,\"max_completion_tokens\":80,"
		    "\"stream\":true,\"stream_options\":{\"include_usage\":true}}", &q, param) == 0 &&
	      q.stream && q.include_usage && q.deterministic && q.max_out == 80,
	      "a full request: stream, usage asked, deterministic, the largest output cap");
	memcpy(k1, q.key, sizeof k1);
	CHECK(parse("{\"model\":\"m\"," MSG ",\"temperature\":0,\"max_tokens\":50,\"max_completion_tokens\":80,"
		    "\"stream\":false,\"user\":\"someone\"}", &q2, param) == 0 && strcmp(k1, q2.key) == 0 &&
	      strlen(k1) == 64, "stream, stream_options and user do not change the cache key");
	CHECK(parse("{\"model\":\"m\"," MSG ",\"temperature\":0.5}", &q2, param) == 0 && strcmp(k1, q2.key) != 0 &&
	      !q2.deterministic, "another temperature: another key, not deterministic");
	CHECK(parse("{\"model\":\"m\"," MSG ",\"seed\":7}", &q2, param) == 0 && q2.deterministic && !q2.stream &&
	      q2.max_out == 0, "a seed makes it deterministic");
	CHECK(parse("{\"model\":\"m\"," MSG "}", &q2, param) == 0 && !q2.deterministic,
	      "no temperature (OpenAI's default is 1): not deterministic");
	CHECK(parse("{\"model\":\"m2\"," MSG ",\"temperature\":0,\"max_tokens\":50,\"max_completion_tokens\":80}",
		    &q2, param) == 0 && strcmp(k1, q2.key) != 0, "another model: another key");
	{
		json_object *o = json_tokener_parse("{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\"}],"
						    "\"n\":1,\"user\":\"u\",\"stream\":true}");
		char err[200];
		json_object *v;
		CHECK(oai_parse(o, &q, err, sizeof err, param, sizeof param) == 0 &&
		      json_object_object_get_ex(q.extra, "tools", &v) &&
		      !json_object_object_get_ex(q.extra, "user", &v) &&
		      !json_object_object_get_ex(q.extra, "n", &v) &&
		      !json_object_object_get_ex(q.extra, "stream", &v),
		      "forwarded upstream: tools; not user, n or stream");
		oai_req_release(&q);
		json_object_put(o);
	}

	CHECK(refused("{\"messages\":[]}", "model"), "no model: param model");
	CHECK(refused("{\"model\":5," MSG "}", "model"), "model a number: param model");
	CHECK(refused("{\"model\":\"m\"}", "messages"), "no messages: param messages");
	CHECK(refused("{\"model\":\"m\",\"messages\":{}}", "messages"), "messages an object");
	CHECK(refused("{\"model\":\"m\",\"messages\":[]}", "messages"), "messages empty");
	CHECK(refused("{\"model\":\"m\",\"messages\":[1]}", "messages[0]"), "a message that is not an object");
	CHECK(refused("{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages[0].role"),
	      "an unknown role");
	CHECK(refused("{\"model\":\"m\",\"messages\":[{\"role\":7,\"content\":\"x\"}]}", "messages[0].role"),
	      "a role that is not a string");
	CHECK(refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content"),
	      "content a number");
	CHECK(refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content"),
	      "a user message without content");
	CHECK(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
		    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]}", &q, param) == 0,
	      "an assistant message without content, parts of type text");
	CHECK(refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]}",
		      "messages[0].content[0]"), "a part of an unknown type");
	CHECK(refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
		      "messages[0].content[0]"), "a text part without text");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"stream\":\"true\"}", "stream"), "stream as a string");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"n\":2}", "n"), "n = 2");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"temperature\":\"hot\"}", "temperature"), "temperature a string");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"temperature\":5}", "temperature"), "temperature 5");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"top_p\":1.5}", "top_p"), "top_p 1.5");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"max_tokens\":-1}", "max_tokens"), "max_tokens -1");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"max_tokens\":\"9\"}", "max_tokens"), "max_tokens a string");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"max_completion_tokens\":1.5}", "max_completion_tokens"),
	      "max_completion_tokens not an integer");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"stream_options\":true}", "stream_options"), "stream_options a bool");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"stream_options\":{\"include_usage\":1}}",
		      "stream_options.include_usage"), "include_usage a number");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop"), "five stops");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"stop\":[1]}", "stop"), "a stop that is not a string");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"tools\":{}}", "tools"), "tools an object");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"tool_choice\":3}", "tool_choice"), "tool_choice a number");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"response_format\":\"json\"}", "response_format"),
	      "response_format a string");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"seed\":\"x\"}", "seed"), "seed a string");
	CHECK(refused("{\"model\":\"m\"," MSG ",\"user\":3}", "user"), "user a number");
	{
		/* 3,000 messages: over the limit */
		size_t cap = 3000 * 40 + 100, off = 0;
		char *b = malloc(cap);
		off += (size_t)snprintf(b + off, cap - off, "{\"model\":\"m\",\"messages\":[");
		for (int i = 0; i < 3000; i++)
			off += (size_t)snprintf(b + off, cap - off, "%s{\"role\":\"user\",\"content\":\"x\"}", i ? "," : "");
		snprintf(b + off, cap - off, "]}");
		CHECK(refused(b, "messages"), "3,000 messages: refused (at most 2048)");
		free(b);
	}

	/* replay pieces: whole words, several for a sentence, joined back exactly */
	{
		const char *s = "echo: the quick brown fox jumps over the lazy dog and keeps running far away";
		size_t len = strlen(s), off = 0, n, pieces = 0;
		char back[200] = "";
		while (off < len) {
			n = oai_piece(s, len, off);
			strncat(back, s + off, n);
			off += n;
			pieces++;
		}
		CHECK(pieces >= 3 && strcmp(back, s) == 0, "a sentence replays in %zu pieces that join back", pieces);
		CHECK(oai_piece("hi", 2, 0) == 2, "a short answer is one piece");
	}
	{
		char big[600];
		memset(big, 'a', sizeof big);
		memcpy(big + 255, "\xc3\xa9", 2);   /* a two-byte character across the 256 cut */
		size_t n = oai_piece(big, sizeof big, 0);
		CHECK(n == 255, "a long word is cut at a character boundary (%zu)", n);
	}

	oai_error_kind(429, "quota-exceeded", NULL, &type, &code, &no_retry);
	CHECK(strcmp(code, "insufficient_quota") == 0 && no_retry, "a token window: insufficient_quota, no retry");
	{
		json_object *x = json_tokener_parse("{\"window\":\"hourly_calls\"}");
		oai_error_kind(429, "quota-exceeded", x, &type, &code, &no_retry);
		CHECK(strcmp(code, "rate_limit_exceeded") == 0 && !no_retry, "the hourly call limit: rate_limit_exceeded");
		json_object_put(x);
	}
	oai_error_kind(401, "unauthorized", NULL, &type, &code, &no_retry);
	CHECK(strcmp(code, "invalid_api_key") == 0, "401: invalid_api_key");
	oai_error_kind(504, "upstream-timeout", NULL, &type, &code, &no_retry);
	CHECK(strcmp(code, "timeout") == 0, "504: timeout");

	/* the SSE parser, fed one byte at a time and in one go */
	{
		const char *sse =
			": a comment\r\n"
			"data: {\"model\":\"up\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n"
			"data: {\"choices\":[{\"delta\":{\"content\":\"hel\"}}]}\n\n"
			"data:{\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n"
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n"
			"data: [DONE]\n\n";
		for (int mode = 0; mode < 2; mode++) {
			struct sse_state st = { 0 };
			struct upstream_result r;
			struct sink s = { 0, "" };
			int rc = 0;
			memset(&r, 0, sizeof r);
			if (mode == 0)
				for (size_t i = 0; sse[i] && rc == 0; i++)
					rc = upstream_sse_feed(&st, sse + i, 1, &r, on_chunk, &s);
			else
				rc = upstream_sse_feed(&st, sse, strlen(sse), &r, on_chunk, &s);
			CHECK(rc == 0 && r.done && s.n == 4 && r.content && strcmp(r.content, "hello") == 0 &&
			      strcmp(r.finish_reason, "stop") == 0 && r.has_usage && r.prompt_tokens == 3 &&
			      r.completion_tokens == 2 && strcmp(r.model, "up") == 0 && r.streamed == 4,
			      "SSE %s: content, finish, usage, model, [DONE], 4 chunks handed on",
			      mode ? "in one slice" : "a byte at a time");
			upstream_result_release(&r);
			upstream_sse_free(&st);
		}
		struct sse_state st = { 0 };
		struct upstream_result r;
		memset(&r, 0, sizeof r);
		CHECK(upstream_sse_feed(&st, "data: {\"choices\": [ {\"delta\":\n", 31, &r, NULL, NULL) < 0 &&
		      strstr(r.error, "not a JSON object"), "an event that is not JSON stops the stream");
		upstream_result_release(&r);
		upstream_sse_free(&st);
		memset(&r, 0, sizeof r);
		CHECK(upstream_sse_feed(&st, "data: {\"error\":{\"message\":\"overloaded\"}}\n", 41, &r, NULL, NULL) < 0 &&
		      strstr(r.error, "overloaded"), "an error event stops the stream, its message kept");
		upstream_result_release(&r);
		upstream_sse_free(&st);
	}
	return TAP_DONE();
}
