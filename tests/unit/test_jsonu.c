/* test_jsonu.c - strict body parsing and typed field validation. */
#include "jsonu.h"
#include "tap.h"

static int parses(const char *s)
{
	json_object *o = NULL;
	char err[256];
	int r = jsonu_parse_object(s, strlen(s), &o, err, sizeof err);
	json_object_put(o);
	return r == 0;
}

int main(void)
{
	json_object *o = NULL;
	char err[256];
	const char *s;
	size_t n;
	long long v;

	CHECK(parses("{\"a\":1}"), "object parses");
	CHECK(parses("  {\"a\":[1,2,{\"b\":null}]}\n"), "whitespace around object ok");
	CHECK(!parses("{\"a\":1"), "truncated refused");
	CHECK(!parses("{\"a\":1} x"), "trailing garbage refused");
	CHECK(!parses("[1,2]"), "array is not an object");
	CHECK(!parses("\"str\""), "string is not an object");
	CHECK(!parses(""), "empty body refused");
	/* json-c 0.16 strict mode still takes single-quoted keys and NaN; the
	 * typed getters below refuse what matters (types and ranges) */
	CHECK(!parses("{\"a\":'x'}"), "single-quoted value refused (strict)");
	CHECK(!parses("{\"a\":1,}"), "trailing comma refused (strict)");
	CHECK(!parses("{\"a\":\"\xff\"}"), "invalid utf-8 refused");
	CHECK(!parses("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"), "deep nesting refused");
	{
		const char nul[] = "{\"v\":\"a\\u0000b\"}";
		CHECK(jsonu_parse_object(nul, sizeof nul - 1, &o, err, sizeof err) == 0, "escaped NUL parses");
		CHECK(jsonu_get_str(o, "v", 1, 10, 0, &s, &n, err, sizeof err) == 1 && n == 3 && s[1] == 0,
		      "NUL kept inside the string, length 3");
		CHECK(jsonu_get_str(o, "v", 1, 10, 1, &s, &n, err, sizeof err) < 0 && strstr(err, "control"),
		      "control character refused when asked");
		json_object_put(o);
	}
	const char *doc = "{\"s\":\"hello\",\"i\":42,\"neg\":-5,\"f\":1.5,\"b\":true,\"str\":\"7\","
			  "\"big\":123456789012345678901234567890,\"nul\":null}";
	CHECK(jsonu_parse_object(doc, strlen(doc), &o, err, sizeof err) == 0, "doc parses");
	CHECK(jsonu_get_str(o, "s", 1, 100, 1, &s, &n, err, sizeof err) == 1 && n == 5, "string field");
	CHECK(jsonu_get_str(o, "s", 1, 3, 1, &s, &n, err, sizeof err) < 0 && strstr(err, "'s'"), "too long, names field");
	CHECK(jsonu_get_str(o, "i", 1, 100, 1, &s, &n, err, sizeof err) < 0 && strstr(err, "must be a string"), "int is not a string");
	CHECK(jsonu_get_str(o, "missing", 0, 100, 1, &s, &n, err, sizeof err) == 0, "optional absent");
	CHECK(jsonu_get_str(o, "nul", 0, 100, 1, &s, &n, err, sizeof err) == 0, "null counts as absent");
	CHECK(jsonu_get_str(o, "missing", 1, 100, 1, &s, &n, err, sizeof err) < 0 && strstr(err, "required"), "required absent");
	CHECK(jsonu_get_int(o, "i", 1, 0, 100, &v, err, sizeof err) == 1 && v == 42, "int field");
	CHECK(jsonu_get_int(o, "neg", 1, 0, 100, &v, err, sizeof err) < 0 && strstr(err, "between"), "negative refused by range");
	CHECK(jsonu_get_int(o, "f", 1, 0, 100, &v, err, sizeof err) < 0, "fraction refused");
	CHECK(jsonu_get_int(o, "b", 1, 0, 100, &v, err, sizeof err) < 0, "boolean refused");
	CHECK(jsonu_get_int(o, "str", 1, 0, 100, &v, err, sizeof err) < 0, "numeric string refused");
	CHECK(jsonu_get_int(o, "big", 1, 0, 1000000000LL, &v, err, sizeof err) < 0, "huge number refused");
	{
		static const char *const allowed[] = { "s", "i", "neg", "f", "b", "str", "big", NULL };
		CHECK(jsonu_only_fields(o, allowed, err, sizeof err) < 0 && strstr(err, "nul"), "unknown field named");
	}
	json_object_put(o);
	CHECK(jsonu_is_json_type("application/json"), "json content type");
	CHECK(jsonu_is_json_type("application/json; charset=utf-8"), "json with charset");
	CHECK(!jsonu_is_json_type("text/plain"), "text/plain refused");
	CHECK(!jsonu_is_json_type("application/jsonx"), "prefix lookalike refused");
	CHECK(!jsonu_is_json_type(NULL), "no content type refused");
	return TAP_DONE();
}
