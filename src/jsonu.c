/*
 * jsonu.c - strict parsing and typed field access over json-c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "jsonu.h"

int jsonu_parse_object(const char *text, size_t len, json_object **out,
		       char *err, size_t errlen)
{
	json_tokener *tok;
	json_object *o;
	enum json_tokener_error je;
	size_t used;

	*out = NULL;
	if (len == 0) {
		snprintf(err, errlen, "request body is empty; expected a json object");
		return -1;
	}
	if (len > 0x7fffffff || !(tok = json_tokener_new_ex(JSONU_MAX_DEPTH))) {
		snprintf(err, errlen, "request body cannot be parsed");
		return -1;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	je = json_tokener_get_error(tok);
	used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (je != json_tokener_success || !o) {
		snprintf(err, errlen, "malformed json: %s",
			 je == json_tokener_continue ? "unexpected end of input"
						    : json_tokener_error_desc(je));
		json_object_put(o);
		return -1;
	}
	for (; used < len; used++)
		if (!strchr(" \t\r\n", text[used])) {
			snprintf(err, errlen, "malformed json: trailing data after the object");
			json_object_put(o);
			return -1;
		}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "request body must be a json object");
		json_object_put(o);
		return -1;
	}
	*out = o;
	return 0;
}

int jsonu_get_str(json_object *obj, const char *field, int required, size_t maxlen,
		  int no_ctl, const char **s, size_t *len, char *err, size_t errlen)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, field, &v) || json_object_is_type(v, json_type_null)) {
		if (required) {
			snprintf(err, errlen, "field '%s' is required", field);
			return -1;
		}
		return 0;
	}
	if (!json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "field '%s' must be a string", field);
		return -1;
	}
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	if (*len > maxlen) {
		snprintf(err, errlen, "field '%s' is longer than %zu bytes", field, maxlen);
		return -1;
	}
	if (no_ctl)
		for (size_t i = 0; i < *len; i++)
			if ((unsigned char)(*s)[i] < 0x20 || (*s)[i] == 0x7f) {
				snprintf(err, errlen, "field '%s' contains a control character", field);
				return -1;
			}
	return 1;
}

int jsonu_get_int(json_object *obj, const char *field, int required,
		  long long min, long long max, long long *v, char *err, size_t errlen)
{
	json_object *j;
	long long n;

	if (!json_object_object_get_ex(obj, field, &j) || json_object_is_type(j, json_type_null)) {
		if (required) {
			snprintf(err, errlen, "field '%s' is required", field);
			return -1;
		}
		return 0;
	}
	if (!json_object_is_type(j, json_type_int)) {
		snprintf(err, errlen, "field '%s' must be an integer", field);
		return -1;
	}
	errno = 0;
	n = json_object_get_int64(j);
	/* json-c clamps out-of-range values to INT64_MIN/MAX and sets errno */
	if (errno == ERANGE || n < min || n > max) {
		snprintf(err, errlen, "field '%s' must be between %lld and %lld", field, min, max);
		return -1;
	}
	*v = n;
	return 1;
}

int jsonu_only_fields(json_object *obj, const char *const *allowed,
		      char *err, size_t errlen)
{
	json_object_object_foreach(obj, k, v) {
		int ok = 0;
		(void)v;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, k) == 0)
				ok = 1;
		if (!ok) {
			snprintf(err, errlen, "unknown field '%.64s'", k);
			return -1;
		}
	}
	return 0;
}

int jsonu_is_json_type(const char *ct)
{
	size_t n = strlen("application/json");

	if (!ct || strncasecmp(ct, "application/json", n) != 0)
		return 0;
	return ct[n] == 0 || ct[n] == ';' || ct[n] == ' ';
}
