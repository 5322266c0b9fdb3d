/* test_upstream.c - parsing OpenAI answers, prices, backoff, and a refused
 * connection (no server needed: nothing listens on the port). */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "settings.h"
#include "orchestrator.h"
#include "tap.h"
#include "upstream.h"

static int parse(const char *s, struct upstream_result *r)
{
	memset(r, 0, sizeof *r);
	return upstream_parse(s, strlen(s), r);
}

int main(void)
{
	struct upstream_result r;
	struct config c;
	struct upstream *u;
	json_object *msgs;

	CHECK(parse("{\"model\":\"m1\",\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"hi\\u0000there\"}}],"
		    "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}", &r) == 0 &&
	      r.content_len == 8 && r.has_usage && r.prompt_tokens == 7 && r.completion_tokens == 3 &&
	      strcmp(r.model, "m1") == 0, "a normal answer with usage (NUL kept)");
	upstream_result_release(&r);
	CHECK(parse("{\"choices\":[{\"message\":{\"content\":\"x\"}}]}", &r) == 0 && !r.has_usage,
	      "no usage block noticed");
	upstream_result_release(&r);
	CHECK(parse("{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":-1,"
		    "\"completion_tokens\":2}}", &r) == 0 && !r.has_usage, "negative usage ignored");
	upstream_result_release(&r);
	CHECK(parse("{\"choices\": [ {\"message\": ", &r) < 0 && strstr(r.error, "not JSON"), "truncated JSON refused");
	CHECK(parse("<html>bad gateway</html>", &r) < 0, "HTML refused");
	CHECK(parse("{\"id\":\"x\"}", &r) < 0 && strstr(r.error, "choices"), "no choices refused");
	CHECK(parse("{\"choices\":[]}", &r) < 0, "empty choices refused");
	CHECK(parse("{\"choices\":[{\"message\":{\"content\":null}}]}", &r) < 0, "null content refused");

	CHECK(upstream_cost_micro("gpt-4o-mini:0.00015:0.0006", "gpt-4o-mini", 1000, 1000) == 750,
	      "1K in + 1K out at 0.00015/0.0006 = $0.00075");
	CHECK(upstream_cost_micro("a:0.001:0.002,b:0.01:0.02", "b", 2000, 500) == 30000, "second model's price");
	CHECK(upstream_cost_micro("a:0.001:0.002,b:0.01:0.02", "zzz", 1000, 0) == 0,
	      "a model not on the list has no price (it is never called)");
	{
		char err[300];
		double in = 0, out = 0;
		CHECK(upstream_price("a:0.001:0.002,b:0.01:0.02", "b", &in, &out) == 1 && in == 0.01 && out == 0.02,
		      "the allow-list gives a listed model's prices");
		CHECK(upstream_price("a:0.001:0.002", "a:0.001", NULL, NULL) == 0, "a name is matched whole");
		CHECK(upstream_prices_check("a:0.001:0.002,b:0.01:0.02", "b", err, sizeof err) == 0,
		      "a well-formed list with the default model passes");
		CHECK(upstream_prices_check("a:0.001:0.002", "gpt-x", err, sizeof err) < 0 && strstr(err, "gpt-x"),
		      "the default model must have a price");
		CHECK(upstream_prices_check("a:0.001", "a", err, sizeof err) < 0 &&
		      upstream_prices_check("a:0.001:x", "a", err, sizeof err) < 0 &&
		      upstream_prices_check("a:-1:0.1", "a", err, sizeof err) < 0 &&
		      upstream_prices_check("a:0.1:0.1junk", "a", err, sizeof err) < 0 &&
		      upstream_prices_check("", "a", err, sizeof err) < 0,
		      "malformed, negative or missing prices refuse the configuration");
	}
	CHECK(upstream_cost_micro("", "a", 1000, 1000) == 0, "no prices: free");

	CHECK(upstream_backoff_ms(200, 0, 0, 0.0) == 100 && upstream_backoff_ms(200, 0, 0, 0.999) < 200,
	      "first backoff in [base/2, base)");
	CHECK(upstream_backoff_ms(200, 3, 0, 0.0) == 800, "doubles per retry");
	CHECK(upstream_backoff_ms(200, 0, 3, 0.5) == 3000, "Retry-After wins when longer");

	CHECK(orch_model_ok("gpt-4o-mini", 11) && orch_model_ok("meta/llama-3:8b", 15), "model names");
	CHECK(!orch_model_ok("a b", 3) && !orch_model_ok("x'", 2) && !orch_model_ok("", 0), "bad model names");
	char k1[65], k2[65], k3[65];
	char k4[65];
	orch_default_key("t", "m", NULL, 0, "p", 1, k1);
	orch_default_key("t", "m", NULL, 0, "p", 1, k2);
	orch_default_key("t", "mp", NULL, 0, "", 0, k3);
	orch_default_key("t", "m", "sys", 3, "p", 1, k4);
	CHECK(strcmp(k1, k2) == 0 && strcmp(k1, k3) != 0 && strlen(k1) == 64,
	      "default cache key is stable and unambiguous");
	CHECK(strcmp(k1, k4) != 0, "another system prompt is another key");

	/* refused connection: 502-class error, one attempt, fast */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	config_defaults(&c);
	config_set(&c, "upstream_base_url", "http://127.0.0.1:9/v1", NULL, 0);
	config_set(&c, "upstream_key", "sk-secret-never-shown", NULL, 0);
	u = upstream_new(&c);
	msgs = json_object_new_array();
	enum qc_err rc = upstream_chat(u, "m", msgs, 0, &r);
	CHECK(rc == QC_EUPSTREAM && r.attempts == 1 && strstr(r.error, "transfer failed"),
	      "connection refused: upstream failure after one attempt");
	CHECK(!strstr(r.error, "sk-secret"), "the key is not in the error text");
	upstream_result_release(&r);
	json_object_put(msgs);
	upstream_free(u);
	config_release(&c);
	curl_global_cleanup();
	return TAP_DONE();
}
