/*
 * settings.c - the config module.  Each setting has a name, a type and the
 * offset of its field in struct config, so files and environment are parsed
 * by name.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "settings.h"

enum opt_type { OPT_STR, OPT_INT };

struct opt {
	const char *name;
	enum opt_type type;
	size_t off;
	const char *def;        /* default as text */
	long long min, max;     /* for OPT_INT */
};

#define S(f, d) { #f, OPT_STR, offsetof(struct config, f), d, 0, 0 }
#define I(f, d, lo, hi) { #f, OPT_INT, offsetof(struct config, f), d, lo, hi }

static const struct opt opts[] = {
	S(db_socket, "/run/mysqld/mysqld.sock"),
	S(db_host, "localhost"),
	I(db_port, "3306", 1, 65535),
	S(db_hosts, ""),
	I(db_failback_s, "10", 1, 3600),
	S(db_user, "quotacache"),
	S(db_name, "quotacache"),
	S(db_password, NULL),
	S(db_password_file, NULL),
	S(migrate_user, ""),
	S(migrate_password, NULL),
	S(migrate_password_file, NULL),
	I(db_rw_timeout_s, "10", 1, 3600),
	I(db_lock_wait_s, "3", 1, 300),
	I(db_retry_budget_ms, "5000", 100, 600000),
	I(max_body, "4194304", 1024, 1073741824LL),
	I(auth_cache_seconds, "5", 0, 3600),
	S(sql_dir, QC_SQL_DIR),
	S(log_level, "info"),
	I(reservation_ttl, "600", 1, 86400),
	I(allow_test_clock, "0", 0, 1),
	I(metrics_allow_loopback, "1", 0, 1),
	I(cache_max_entry, "1048576", 1, 268435456LL),
	I(cache_user_max_bytes, "67108864", 1, 1LL << 40),
	S(cache_saving_system, "0.0002"),
	S(cache_saving_session, "0.0015"),
	S(cache_saving_content, "0.0050"),
	S(cache_storage_price, "0.005"),
	S(region, ""),
	I(warm_sweep_s, "10", 0, 86400),
	I(warm_refresh_ahead_s, "300", 1, 86400),
	I(warm_next_gap_s, "3600", 60, 86400),
	I(cache_value_window_s, "86400", 60, 31LL * 86400),
	S(upstream_base_url, "http://127.0.0.1:8081/v1"),
	S(upstream_model, "gpt-4o-mini"),
	S(upstream_key, NULL),
	S(upstream_key_file, NULL),
	I(upstream_connect_timeout_ms, "2000", 1, 600000),
	I(upstream_timeout_ms, "30000", 1, 3600000),
	I(upstream_retries, "2", 0, 10),
	I(upstream_backoff_ms, "200", 0, 60000),
	S(upstream_prices, "gpt-4o-mini:0.00015:0.0006"),
	S(prompts_dir, QC_PROMPTS_DIR),
	/* /v1/chat/completions: cache deterministic requests only (temperature
	 * 0 or a seed), always, or never */
	S(openai_cache, "deterministic"),
	I(worker_threads, "2", 1, 256),
	I(completion_threads, "2", 1, 64),
	I(batch_wait_ms, "8", 0, 1000),
	I(db_pool_size, "8", 1, 256),
	/* at most ~2 descriptors a call; libfcgi select()s its own below 1024 */
	I(max_inflight, "512", 1, 100000),
	I(shutdown_grace_ms, "10000", 0, 3600000),
	S(alert_webhook_url, ""),
	S(alert_webhook_url_file, NULL),
	S(alert_webhook_secret, NULL),
	S(alert_webhook_secret_file, NULL),
	I(alert_webhook_timeout_ms, "5000", 100, 600000),
	I(alert_webhook_attempts, "8", 1, 100),
	I(alert_webhook_backoff_ms, "1000", 10, 3600000),
};
#define NOPTS (sizeof opts / sizeof opts[0])

static void seterr(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, a, b);
}

static int set_opt(struct config *c, const struct opt *o, const char *value,
		   char *err, size_t errlen)
{
	char *base = (char *)c + o->off;

	if (o->type == OPT_STR) {
		char **slot = (char **)(void *)base;
		char *v = value ? strdup(value) : NULL;
		if (value && !v) {
			seterr(err, errlen, "out of memory setting %s%s", o->name, "");
			return -1;
		}
		free(*slot);
		*slot = v;
		return 0;
	}
	char *end;
	errno = 0;
	long long n = strtoll(value ? value : "", &end, 10);
	if (!value || !*value || *end || errno || n < o->min || n > o->max) {
		seterr(err, errlen, "setting %s: '%s' is not an integer in range", o->name,
		       value ? value : "");
		return -1;
	}
	*(long long *)(void *)base = n;
	return 0;
}

int config_set(struct config *c, const char *key, const char *value,
	       char *err, size_t errlen)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opts[i].name, key) == 0)
			return set_opt(c, &opts[i], value, err, errlen);
	seterr(err, errlen, "unknown setting '%s'%s", key, "");
	return -1;
}

int config_defaults(struct config *c)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].def && set_opt(c, &opts[i], opts[i].def, NULL, 0) < 0)
			return -1;
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

int config_parse(struct config *c, const char *text, char *err, size_t errlen)
{
	char *copy = strdup(text), *save = NULL, *line;
	int lineno = 0, rc = -1;

	if (!copy) {
		seterr(err, errlen, "out of memory%s%s", "", "");
		return -1;
	}
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *hash, *eq, *k, *v, sub[256];
		lineno++;
		if ((hash = strchr(line, '#')))
			*hash = 0;
		k = trim(line);
		if (!*k)
			continue;
		if (!(eq = strchr(k, '='))) {
			snprintf(sub, sizeof sub, "%d", lineno);
			seterr(err, errlen, "config line %s: expected 'key = value'%s", sub, "");
			goto out;
		}
		*eq = 0;
		k = trim(k);
		v = trim(eq + 1);
		if (config_set(c, k, v, err, errlen) < 0)
			goto out;
	}
	rc = 0;
out:
	free(copy);
	return rc;
}

int config_read_secret(const char *path, char **out, char *err, size_t errlen)
{
	struct stat st;
	char buf[4096];
	ssize_t n;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		seterr(err, errlen, "cannot read secret file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		seterr(err, errlen, "secret file %s is not a regular file%s", path, "");
		return -1;
	}
	if (st.st_mode & S_IROTH) {
		close(fd);
		seterr(err, errlen, "refusing secret file %s: it is world-readable (chmod o-r %s)",
		       path, path);
		return -1;
	}
	if (st.st_size >= (off_t)sizeof buf) {   /* never cut a secret silently */
		close(fd);
		seterr(err, errlen, "refusing secret file %s: larger than 4 KiB%s", path, "");
		return -1;
	}
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0) {
		seterr(err, errlen, "cannot read secret file %s: %s", path, strerror(errno));
		return -1;
	}
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	if (!(*out = strdup(buf))) {
		seterr(err, errlen, "out of memory%s%s", "", "");
		return -1;
	}
	return 0;
}

static int load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t cap = 0, len = 0, r;
	char chunk[4096];
	int rc;

	if (!f) {
		seterr(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
		return -1;
	}
	while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (len + r + 1 > cap) {
			size_t ncap = (cap ? cap * 2 : 8192) + r;
			char *t = realloc(text, ncap);
			if (!t) {
				free(text);
				fclose(f);
				seterr(err, errlen, "out of memory%s%s", "", "");
				return -1;
			}
			text = t;
			cap = ncap;
		}
		memcpy(text + len, chunk, r);
		len += r;
	}
	fclose(f);
	if (!text)
		return 0;
	text[len] = 0;
	rc = config_parse(c, text, err, errlen);
	free(text);
	return rc;
}

/* A *_file setting, when set, wins over its value: *value gets the file's
 * content (config_read_secret).  0, or -1 with the reason in err. */
static int value_from_file(const char *file, char **value, char *err, size_t errlen)
{
	if (!file || !*file)
		return 0;
	free(*value);
	*value = NULL;
	return config_read_secret(file, value, err, errlen);
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
	char envname[96];

	if (config_defaults(c) < 0) {
		seterr(err, errlen, "out of memory%s%s", "", "");
		goto fail;
	}
	if (!path || !*path)
		path = getenv("QC_CONFIG");
	if (path && *path && load_file(c, path, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < NOPTS; i++) {
		size_t j = 0;
		const char *v;
		j = (size_t)snprintf(envname, sizeof envname, "QC_");
		for (const char *p = opts[i].name; *p && j < sizeof envname - 1; p++)
			envname[j++] = (char)toupper((unsigned char)*p);
		envname[j] = 0;
		if ((v = getenv(envname)) && set_opt(c, &opts[i], v, err, errlen) < 0)
			goto fail;
	}
	if (value_from_file(c->db_password_file, &c->db_password, err, errlen) < 0 ||
	    value_from_file(c->alert_webhook_url_file, &c->alert_webhook_url, err, errlen) < 0 ||
	    value_from_file(c->alert_webhook_secret_file, &c->alert_webhook_secret, err, errlen) < 0 ||
	    value_from_file(c->upstream_key_file, &c->upstream_key, err, errlen) < 0)
		goto fail;
	if (c->alert_webhook_secret_file && *c->alert_webhook_secret_file && !*c->alert_webhook_secret) {
		snprintf(err, errlen, "alert_webhook_secret_file %s is empty", c->alert_webhook_secret_file);
		goto fail;
	}
	return 0;
fail:
	config_release(c);
	return -1;
}

void config_release(struct config *c)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].type == OPT_STR) {
			char **slot = (char **)(void *)((char *)c + opts[i].off);
			free(*slot);
			*slot = NULL;
		}
}
