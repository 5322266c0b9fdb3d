/*
 * settings.h - the config module: defaults, a "key = value" file, then
 * environment overrides (QC_<KEY in upper case>), then secrets read from
 * files that must not be world-readable.
 *
 * A struct config owns every string it points to; config_release() frees them.
 */
#ifndef QC_SETTINGS_H
#define QC_SETTINGS_H

#include <stddef.h>

struct config {
	/* database */
	char *db_socket;         /* unix socket path; NULL or "" => TCP */
	char *db_host;
	long long db_port;
	char *db_hosts;          /* "" or a list (comma-separated) of host:port or
				  * /socket/path: tried in order, the first is preferred */
	long long db_failback_s; /* a connection to a later host returns to the
				  * first after this many seconds (if it is back) */
	char *db_user;
	char *db_name;
	char *db_password;       /* from db_password_file or QC_DB_PASSWORD */
	char *db_password_file;
	char *migrate_user;      /* migrations (DDL) run as this user; "" = db_user */
	char *migrate_password;  /* read from migrate_password_file by the migration
				  * runner only: workers never hold it */
	char *migrate_password_file;
	long long db_rw_timeout_s;      /* read/write timeout of a connection */
	long long db_lock_wait_s;       /* innodb_lock_wait_timeout per session */
	long long db_retry_budget_ms;   /* total time a statement retries 1213/1205 */
	/* http */
	long long max_body;      /* bytes; bigger request bodies get 413 */
	long long auth_cache_seconds;
	/* paths, logging */
	char *sql_dir;
	char *log_level;
	/* quota */
	long long reservation_ttl;   /* seconds an uncommitted reservation lives */
	long long allow_test_clock;  /* 1: honour X-QC-Test-Now (only in a --enable-test-clock build) */
	long long metrics_allow_loopback; /* 1: /metrics without a key from 127.0.0.1/::1 */
	/* cache */
	long long cache_max_entry;       /* bytes */
	long long cache_user_max_bytes;  /* bytes per user */
	char *cache_saving_system;       /* dollars per hit, decimal text */
	char *cache_saving_session;
	char *cache_saving_content;
	char *cache_storage_price;       /* dollars per GiB-hour stored (cost-aware plans) */
	char *region;                    /* this worker's region ('' none): its cache entries */
	long long warm_sweep_s;          /* refresh-ahead sweep every so many s (0: only on demand) */
	long long warm_refresh_ahead_s;  /* ... of entries expiring within this */
	long long warm_next_gap_s;       /* next-task: a user's next call within this follows */
	long long cache_value_window_s;  /* hits per store learned over this window */
	/* upstream */
	char *upstream_base_url;
	char *upstream_model;
	char *upstream_key;
	char *upstream_key_file;
	long long upstream_connect_timeout_ms;
	long long upstream_timeout_ms;
	long long upstream_retries;
	long long upstream_backoff_ms;
	char *openai_cache;      /* "deterministic" | "always" | "never" */
	char *upstream_prices;   /* "model:in_per_1k:out_per_1k,..." */
	char *prompts_dir;
	/* concurrency (SPEC §9) */
	long long worker_threads;       /* request threads per process */
	long long completion_threads;   /* threads finishing upstream calls */
	long long batch_wait_ms;        /* an idle completion thread gathers a batch this long at most */
	long long db_pool_size;         /* database connections per process */
	long long max_inflight;         /* generations in flight per process (then 503) */
	long long shutdown_grace_ms;    /* SIGTERM: time given to calls in flight */
	/* alerts (SPEC §14): the level-crossing webhook; "" = off */
	char *alert_webhook_url;         /* or read from alert_webhook_url_file (it may hold a token) */
	char *alert_webhook_url_file;
	char *alert_webhook_secret;      /* HMAC-SHA256 key of X-Quotacache-Signature (none:
					  * unsigned), or read from alert_webhook_secret_file; never logged */
	char *alert_webhook_secret_file;
	long long alert_webhook_timeout_ms;   /* one POST, connect included */
	long long alert_webhook_attempts;     /* then the crossing is given up ('failed') */
	long long alert_webhook_backoff_ms;   /* first retry delay, doubled each time */
};

/* Fill c with built-in defaults.  Returns 0, or -1 on allocation failure. */
int config_defaults(struct config *c);

/*
 * Load defaults, then the file at path (NULL: $QC_CONFIG, or none), then the
 * environment, then secret files.  On error returns -1 with a lowercase
 * message in err (c is left released).
 */
int config_load(struct config *c, const char *path, char *err, size_t errlen);

/* Set one key by name from text.  Returns 0, or -1 with err filled. */
int config_set(struct config *c, const char *key, const char *value,
	       char *err, size_t errlen);

/* Parse "key = value" lines from a buffer (comments with '#').  0 or -1. */
int config_parse(struct config *c, const char *text, char *err, size_t errlen);

/*
 * Read a secret from path: refused (-1) when the file is world-readable or
 * unreadable.  Trailing newlines are stripped.  The caller frees *out.
 */
int config_read_secret(const char *path, char **out, char *err, size_t errlen);

void config_release(struct config *c);

#endif
