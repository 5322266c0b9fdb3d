/*
 * http.h - one HTTP request/response over FastCGI (or over nothing, in unit
 * tests): the request fields the application reads, a response buffer, and
 * problem+json (RFC 9457) errors.
 *
 * A struct http_req owns its body, its response headers and its path params;
 * http_req_release() frees them.  Per-request memory dies with the request.
 */
#ifndef QC_HTTP_H
#define QC_HTTP_H

#include <stddef.h>
#include <time.h>

#include <json-c/json.h>

#include "auth.h"
#include "route.h"

struct FCGX_Request;

struct http_req {
	struct FCGX_Request *fcgi;   /* borrowed; NULL when not over FastCGI */
	/* request */
	const char *method;
	const char *uri;             /* raw REQUEST_URI (may include ?query) */
	char *path;                  /* raw path part, owned */
	const char *query;           /* after '?', or "" */
	const char *authorization;
	const char *content_type;
	const char *remote_addr;
	long long content_length;    /* -1 if absent */
	char *body;                  /* owned, NUL-terminated, may hold NULs */
	size_t body_len;
	json_object *json;           /* parsed body for ROUTE_JSON routes, owned */
	struct route_match match;    /* path params, owned */
	struct auth_user user;       /* set when authenticated */
	time_t now;                  /* request clock (settable in tests) */
	char id[17];                 /* request id for logs and problem bodies */
	/* response */
	int status;
	char *hdrs;                  /* "Name: value\r\n"..., owned */
	size_t hdrs_len, hdrs_cap;
	int sent;
	/* /v1/ routes answer errors in OpenAI's shape (openai.h), naming
	 * err_param when set */
	int openai;
	char err_param[64];
};

/* Initialise from a FastCGI request's environment (fcgi may be NULL). */
void http_req_init(struct http_req *r, struct FCGX_Request *fcgi);
void http_req_release(struct http_req *r);
/* Finish a FastCGI request: write what is buffered and the end records,
 * and close the connection to the web server (see http.c for when the
 * close skips libfcgi's lingering wait). */
void http_fcgi_finish(struct FCGX_Request *fr);

/* Streamed answers (SSE): the status and headers (no Content-Length),
 * then chunks, each flushed to the web server at once.  A write to a
 * client gone away fails: -1 (and every later one). */
void http_stream_begin(struct http_req *r, int status, const char *ctype);
int http_stream_write(struct http_req *r, const char *p, size_t len);

/* Value of CGI variable name, or NULL. */
const char *http_getenv(const struct http_req *r, const char *name);

/*
 * Read the body (Content-Length bytes, at most max).  QC_OK, QC_ETOOBIG when
 * the declared or actual length exceeds max, QC_EIO on a short read.
 */
enum qc_err http_read_body(struct http_req *r, size_t max);

/* Add a response header (name and value are copied).  0 or -1 (ENOMEM). */
int http_add_header(struct http_req *r, const char *name, const char *value);

/* Send status + headers + body; the request is finished afterwards. */
void http_send(struct http_req *r, int status, const char *ctype,
	       const char *body, size_t len);
/* Serialise obj with json-c and send it; obj stays the caller's. */
void http_send_json(struct http_req *r, int status, json_object *obj);
/*
 * Send an application/problem+json error.  type is a short slug appended to
 * the problem type URI; detail may be NULL.  extra (may be NULL) is merged
 * into the body and stays the caller's.
 */
void http_problem(struct http_req *r, int status, const char *type,
		  const char *title, const char *detail, json_object *extra);

/* Query parameter name decoded into buf (NUL-terminated); 1 if present. */
int http_query_param(const struct http_req *r, const char *name, char *buf, size_t buflen);

/* Standard reason phrase for a status code. */
const char *http_reason(int status);

#endif
