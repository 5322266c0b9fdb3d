/* test_config.c - config parsing, env overrides and the secret-file rule. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "settings.h"
#include "tap.h"

int main(void)
{
	struct config c;
	char err[512], path[] = "/tmp/qc_test_secret_XXXXXX", cpath[] = "/tmp/qc_test_cfg_XXXXXX";
	char *s = NULL;
	int fd;

	CHECK(config_defaults(&c) == 0, "defaults load");
	CHECK(c.max_body == 4194304 && c.auth_cache_seconds == 5 && c.reservation_ttl == 600,
	      "default numbers");
	CHECK(config_parse(&c, "# comment\n db_user = alice \nmax_body=2048 # trailing\n\n", err, sizeof err) == 0,
	      "parse key = value with comments");
	CHECK_STR(c.db_user, "alice", "string setting trimmed");
	CHECK(c.max_body == 2048, "integer setting");
	CHECK(config_parse(&c, "nosuchkey = 1\n", err, sizeof err) < 0 && strstr(err, "nosuchkey"),
	      "unknown key refused, named in the message");
	CHECK(config_parse(&c, "max_body = 12abc\n", err, sizeof err) < 0 && strstr(err, "max_body"),
	      "non-integer refused");
	CHECK(config_parse(&c, "max_body = 1\n", err, sizeof err) < 0, "integer below range refused");
	CHECK(config_parse(&c, "just words\n", err, sizeof err) < 0 && strstr(err, "line 1"),
	      "line without '=' refused with its number");
	config_release(&c);

	/* file + environment: env wins over file */
	fd = mkstemp(cpath);
	CHECK(fd >= 0 && write(fd, "db_name = fromfile\nlog_level = debug\n", 37) == 37, "write config file");
	close(fd);
	setenv("QC_DB_NAME", "fromenv", 1);
	CHECK(config_load(&c, cpath, err, sizeof err) == 0, "load file + env");
	CHECK_STR(c.db_name, "fromenv", "environment overrides the file");
	CHECK_STR(c.log_level, "debug", "file value kept when no env");
	config_release(&c);
	setenv("QC_MAX_BODY", "banana", 1);
	CHECK(config_load(&c, cpath, err, sizeof err) < 0 && strstr(err, "max_body"), "bad env value refused");
	unsetenv("QC_MAX_BODY");
	unsetenv("QC_DB_NAME");

	/* secrets */
	fd = mkstemp(path);
	CHECK(fd >= 0 && write(fd, "s3cret\n", 7) == 7, "write secret file");
	close(fd);
	chmod(path, 0644);
	CHECK(config_read_secret(path, &s, err, sizeof err) < 0 && strstr(err, "world-readable"),
	      "world-readable secret refused");
	chmod(path, 0640);
	CHECK(config_read_secret(path, &s, err, sizeof err) == 0 && s && strcmp(s, "s3cret") == 0,
	      "0640 secret read, newline stripped");
	free(s);
	setenv("QC_DB_PASSWORD_FILE", path, 1);
	chmod(path, 0604);
	CHECK(config_load(&c, cpath, err, sizeof err) < 0 && strstr(err, "world-readable"),
	      "config_load refuses a world-readable password file");
	chmod(path, 0600);
	CHECK(config_load(&c, cpath, err, sizeof err) == 0 && strcmp(c.db_password, "s3cret") == 0,
	      "config_load reads the password file");
	config_release(&c);
	unsetenv("QC_DB_PASSWORD_FILE");
	CHECK(config_read_secret("/nonexistent/x", &s, err, sizeof err) < 0, "missing secret file refused");
	unlink(path);
	unlink(cpath);
	return TAP_DONE();
}
