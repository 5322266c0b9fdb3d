/*
 * log.c - line-oriented logging to stderr (the web server's error log).
 * State: the level threshold and the current request id of this worker.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level cur_level = LOG_INFO;   /* set once at start-up */
static _Thread_local char cur_reqid[40];   /* per thread: the request it serves */

void log_set_level(enum log_level l) { cur_level = l; }

int log_parse_level(const char *s)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

void log_set_request_id(const char *id)
{
	snprintf(cur_reqid, sizeof cur_reqid, "%s", id ? id : "");
}

void log_msg(enum log_level l, const char *module, const char *fmt, ...)
{
	static const char *const names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
	char line[1024], ts[32];
	struct tm tm;
	time_t now;
	va_list ap;
	int n;

	if (l > cur_level)
		return;
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(line, sizeof line, "%s %s quotacache[%d] %s%s%s: ", ts, names[l],
		     (int)getpid(), module, cur_reqid[0] ? " req=" : "", cur_reqid);
	if (n < 0 || (size_t)n >= sizeof line)
		return;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	/* one write per line so lines from several workers do not interleave */
	size_t len = strlen(line);
	if (len < sizeof line - 1) { line[len++] = '\n'; line[len] = 0; }
	else line[sizeof line - 2] = '\n';
	ssize_t w = write(STDERR_FILENO, line, strlen(line));
	(void)w;
}
