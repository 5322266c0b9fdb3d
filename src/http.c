/*
 * http.c - request fields from the FastCGI environment, body reading with a
 * limit, response assembly and problem+json.  All JSON goes through json-c.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <fcgiapp.h>

#include "http.h"
#include "openai.h"
#include "log.h"

#define PROBLEM_BASE "https://quotacache.dev/problems/"

const char *http_getenv(const struct http_req *r, const char *name)
{
	return r->fcgi ? FCGX_GetParam(name, r->fcgi->envp) : NULL;
}

void http_req_init(struct http_req *r, struct FCGX_Request *fcgi)
{
	static atomic_ulong counter;
	const char *cl, *q;

	memset(r, 0, sizeof *r);
	r->fcgi = fcgi;
	r->content_length = -1;
	r->now = time(NULL);
	snprintf(r->id, sizeof r->id, "%x-%lx", (unsigned)getpid(), atomic_fetch_add(&counter, 1) + 1);
	if (!fcgi)
		return;
	r->method = http_getenv(r, "REQUEST_METHOD");
	r->uri = http_getenv(r, "REQUEST_URI");
	r->authorization = http_getenv(r, "HTTP_AUTHORIZATION");
	r->content_type = http_getenv(r, "CONTENT_TYPE");
	r->remote_addr = http_getenv(r, "REMOTE_ADDR");
	if (!r->method) r->method = "GET";
	if (!r->uri) r->uri = "/";
	if ((cl = http_getenv(r, "CONTENT_LENGTH")) && *cl) {
		char *end;
		long long n = strtoll(cl, &end, 10);
		r->content_length = (*end || n < 0) ? -2 : n;
	}
	q = strchr(r->uri, '?');
	r->path = q ? strndup(r->uri, (size_t)(q - r->uri)) : strdup(r->uri);
	r->query = q ? q + 1 : "";
}

void http_req_release(struct http_req *r)
{
	free(r->path);
	free(r->body);
	free(r->hdrs);
	route_match_release(&r->match);
	json_object_put(r->json);
	r->json = NULL;
	r->path = r->body = r->hdrs = NULL;
}

/* --- closing the connection to the web server ---------------------------
 *
 * libfcgi closes a request's connection with a lingering close: shutdown()
 * of the sending side, then poll() and read() until the web server closes
 * its end (at most 2 s).  That guards a TCP peer against the RST a close
 * with unread input sends, which would destroy answer bytes the peer has not
 * read yet.  The request thread waits the web server's whole turn for it,
 * one more wake-up per request, and serves nobody meanwhile.
 *
 * On a unix socket (lighttpd, mod_fcgid and the mod_proxy_fcgi pool all
 * connect through one) whose request input has been read to its end record,
 * nothing can arrive any more (no web server we serve sends records after
 * the end of stdin on a connection it will not keep), so there is nothing a
 * close could destroy: the request is detached (a plain close).  The input
 * is read to its end without blocking; whatever is not there yet, or any
 * error, keeps the lingering close. */

static int listener_unix;   /* written once under pthread_once */
static pthread_once_t listener_once = PTHREAD_ONCE_INIT;

static void listener_probe(void)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof sa;

	listener_unix = getsockname(0, (struct sockaddr *)&sa, &len) == 0 && sa.ss_family == AF_UNIX;
}

static int stdin_at_end(FCGX_Request *fr)
{
	char trash[512];
	int fl = fcntl(fr->ipcFd, F_GETFL);

	if (fl < 0 || fcntl(fr->ipcFd, F_SETFL, fl | O_NONBLOCK) < 0)
		return 0;
	/* a read that would block fails the stream (EAGAIN): lingering close */
	for (int i = 0; i < 16 && !fr->in->isClosed; i++)
		if (FCGX_GetStr(trash, (int)sizeof trash, fr->in) <= 0)
			break;
	return fr->in->isClosed && FCGX_GetError(fr->in) == 0;
}

void http_fcgi_finish(FCGX_Request *fr)
{
	pthread_once(&listener_once, listener_probe);
	if (listener_unix && fr->ipcFd >= 0 && fr->in && fr->out && fr->err) {
		/* the answer and the end records go out first, still blocking */
		int bad = FCGX_FClose(fr->err) | FCGX_FClose(fr->out);

		if (!bad && FCGX_GetError(fr->in) == 0 && stdin_at_end(fr))
			FCGX_Detach(fr);
	}
	FCGX_Finish_r(fr);
}

enum qc_err http_read_body(struct http_req *r, size_t max)
{
	size_t cap, len = 0;
	char *buf;

	if (r->content_length == -2)
		return QC_EINPUT;
	if (r->content_length > (long long)max)
		return QC_ETOOBIG;
	cap = r->content_length >= 0 ? (size_t)r->content_length : 65536;
	if (!(buf = malloc(cap + 1)))
		return QC_ENOMEM;
	for (;;) {
		int n;
		if (len == cap) {
			if (r->content_length >= 0)
				break;
			if (cap >= max) {   /* no length given and still more */
				free(buf);
				return QC_ETOOBIG;
			}
			size_t ncap = cap * 2 > max ? max : cap * 2;
			char *t = realloc(buf, ncap + 1);
			if (!t) {
				free(buf);
				return QC_ENOMEM;
			}
			buf = t;
			cap = ncap;
		}
		n = r->fcgi ? FCGX_GetStr(buf + len, (int)(cap - len), r->fcgi->in) : 0;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (r->content_length >= 0 && len != (size_t)r->content_length) {
		free(buf);
		return QC_EIO;
	}
	buf[len] = 0;
	r->body = buf;
	r->body_len = len;
	return QC_OK;
}

int http_add_header(struct http_req *r, const char *name, const char *value)
{
	size_t need = strlen(name) + strlen(value) + 4;

	/* refuse header injection: values never carry CR or LF */
	if (strpbrk(value, "\r\n") || strpbrk(name, "\r\n:"))
		return -1;
	if (r->hdrs_len + need + 1 > r->hdrs_cap) {
		size_t ncap = (r->hdrs_cap ? r->hdrs_cap * 2 : 256) + need;
		char *t = realloc(r->hdrs, ncap);
		if (!t)
			return -1;
		r->hdrs = t;
		r->hdrs_cap = ncap;
	}
	r->hdrs_len += (size_t)snprintf(r->hdrs + r->hdrs_len, r->hdrs_cap - r->hdrs_len,
					"%s: %s\r\n", name, value);
	return 0;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 507: return "Insufficient Storage";
	}
	return "Unknown";
}

void http_send(struct http_req *r, int status, const char *ctype,
	       const char *body, size_t len)
{
	char head[256];
	int n;

	if (r->sent)
		return;
	r->sent = 1;
	r->status = status;
	if (!r->fcgi)
		return;
	/* FCGX_FPrintF has its own printf engine; format with snprintf */
	n = snprintf(head, sizeof head,
		     "Status: %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Cache-Control: no-store\r\nX-Request-Id: %s\r\n",
		     status, http_reason(status), ctype, len, r->id);
	FCGX_PutStr(head, n, r->fcgi->out);
	if (r->hdrs_len)
		FCGX_PutStr(r->hdrs, (int)r->hdrs_len, r->fcgi->out);
	FCGX_PutStr("\r\n", 2, r->fcgi->out);
	if (len && strcmp(r->method, "HEAD") != 0)
		FCGX_PutStr(body, (int)len, r->fcgi->out);
}

void http_send_json(struct http_req *r, int status, json_object *obj)
{
	size_t len = 0;
	const char *s = json_object_to_json_string_length(obj,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (!s) {
		http_send(r, 500, "application/problem+json", "", 0);
		return;
	}
	http_send(r, status, "application/json", s, len);
}

void http_stream_begin(struct http_req *r, int status, const char *ctype)
{
	char head[256];
	int n;
	struct timeval tv = { 1, 0 };

	if (r->sent)
		return;
	r->sent = 1;
	r->status = status;
	if (!r->fcgi)
		return;
	/* chunks are written by the thread that drives every upstream call of
	 * the process: a web server that stops reading must not hold it for
	 * long (past a second the client counts as gone) */
	setsockopt(r->fcgi->ipcFd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	n = snprintf(head, sizeof head,
		     "Status: %d %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n"
		     "X-Accel-Buffering: no\r\nX-Request-Id: %s\r\n",
		     status, http_reason(status), ctype, r->id);
	FCGX_PutStr(head, n, r->fcgi->out);
	if (r->hdrs_len)
		FCGX_PutStr(r->hdrs, (int)r->hdrs_len, r->fcgi->out);
	FCGX_PutStr("\r\n", 2, r->fcgi->out);
	FCGX_FFlush(r->fcgi->out);
}

int http_stream_write(struct http_req *r, const char *p, size_t len)
{
	if (!r->fcgi)
		return 0;
	if (FCGX_GetError(r->fcgi->out) != 0 || FCGX_PutStr(p, (int)len, r->fcgi->out) < 0 ||
	    FCGX_FFlush(r->fcgi->out) < 0 || FCGX_GetError(r->fcgi->out) != 0)
		return -1;
	return 0;
}

/* The problem in OpenAI's shape (the /v1/ routes). */
static void openai_problem(struct http_req *r, int status, const char *type, const char *detail,
			   json_object *extra)
{
	const char *otype, *code, *s;
	int no_retry;
	json_object *o;
	size_t len = 0;

	oai_error_kind(status, type, extra, &otype, &code, &no_retry);
	if (no_retry)
		http_add_header(r, "x-should-retry", "false");
	o = oai_error(detail ? detail : http_reason(status), otype, r->err_param, code);
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	http_send(r, status, "application/json", s ? s : "", s ? len : 0);
	json_object_put(o);
}

void http_problem(struct http_req *r, int status, const char *type,
		  const char *title, const char *detail, json_object *extra)
{
	char uri[160];
	json_object *o;
	size_t len = 0;
	const char *s;

	if (r->openai) {
		openai_problem(r, status, type, detail, extra);
		return;
	}
	if (!(o = json_object_new_object())) {
		http_send(r, 500, "application/problem+json", "", 0);
		return;
	}
	snprintf(uri, sizeof uri, PROBLEM_BASE "%s", type);
	json_object_object_add(o, "type", json_object_new_string(uri));
	json_object_object_add(o, "title", json_object_new_string(title));
	json_object_object_add(o, "status", json_object_new_int(status));
	if (detail)
		json_object_object_add(o, "detail", json_object_new_string(detail));
	json_object_object_add(o, "instance", json_object_new_string(r->path ? r->path : "/"));
	json_object_object_add(o, "request_id", json_object_new_string(r->id));
	if (extra) {
		json_object_object_foreach(extra, k, v)
			json_object_object_add(o, k, json_object_get(v));
	}
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
					      JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	http_send(r, status, "application/problem+json", s ? s : "", s ? len : 0);
	json_object_put(o);
}

int http_query_param(const struct http_req *r, const char *name, char *buf, size_t buflen)
{
	size_t nl = strlen(name);
	const char *q = r->query;

	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t seg = amp ? (size_t)(amp - q) : strlen(q);
		if (seg > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
			size_t vl = seg - nl - 1, o = 0;
			const char *v = q + nl + 1;
			for (size_t i = 0; i < vl && o + 1 < buflen; i++) {
				if (v[i] == '+') {
					buf[o++] = ' ';
				} else if (v[i] == '%' && i + 2 < vl) {
					char hx[3] = { v[i + 1], v[i + 2], 0 };
					char *end;
					long c = strtol(hx, &end, 16);
					if (*end || c < 0x20)
						return 0;
					buf[o++] = (char)c;
					i += 2;
				} else {
					buf[o++] = v[i];
				}
			}
			buf[o] = 0;
			return 1;
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}
