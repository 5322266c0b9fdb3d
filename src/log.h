/*
 * log.h - one line per event on stderr: time, level, module, request id, text.
 *
 * Never log a key, a password or a prompt body at the default level.
 */
#ifndef QC_LOG_H
#define QC_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Set the threshold; messages above it are dropped. */
void log_set_level(enum log_level l);
/* Parse "error"/"warn"/"info"/"debug"; returns -1 if unknown. */
int log_parse_level(const char *s);
/* Set the request id printed on each line (NULL or "" clears it). */
void log_set_request_id(const char *id);

void log_msg(enum log_level l, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(m, ...) log_msg(LOG_ERROR, m, __VA_ARGS__)
#define log_warn(m, ...)  log_msg(LOG_WARN, m, __VA_ARGS__)
#define log_info(m, ...)  log_msg(LOG_INFO, m, __VA_ARGS__)
#define log_debug(m, ...) log_msg(LOG_DEBUG, m, __VA_ARGS__)

#endif
