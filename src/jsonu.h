/*
 * jsonu.h - strict JSON input through json-c: parse a request body into an
 * object, and read typed fields with validation whose errors name the field.
 *
 * Error messages go into a caller buffer (lowercase, no full stop) and are
 * safe to show to the client.
 */
#ifndef QC_JSONU_H
#define QC_JSONU_H

#include <stddef.h>

#include <json-c/json.h>

#define JSONU_MAX_DEPTH 16

/*
 * Parse text[0..len) as exactly one JSON object (strict, nesting at most
 * JSONU_MAX_DEPTH, nothing but whitespace after it).  Returns 0 and the new
 * object in *out (caller puts), or -1 with err filled.
 */
int jsonu_parse_object(const char *text, size_t len, json_object **out,
		       char *err, size_t errlen);

/*
 * String field.  Returns 1 if present (sets *s, *len: borrowed from obj),
 * 0 if absent/null and not required, -1 on error (wrong type, missing when
 * required, longer than maxlen bytes, or - when no_ctl - holding a control
 * character).
 */
int jsonu_get_str(json_object *obj, const char *field, int required, size_t maxlen,
		  int no_ctl, const char **s, size_t *len, char *err, size_t errlen);

/* Integer field in [min, max]: 1 present, 0 absent (not required), -1 error.
 * Booleans, doubles with fractions and numeric strings are refused. */
int jsonu_get_int(json_object *obj, const char *field, int required,
		  long long min, long long max, long long *v, char *err, size_t errlen);

/* Fail (-1) if obj has a member not in the NULL-terminated list allowed. */
int jsonu_only_fields(json_object *obj, const char *const *allowed,
		      char *err, size_t errlen);

/* 1 if content_type is application/json (parameters such as charset ok). */
int jsonu_is_json_type(const char *content_type);

#endif
