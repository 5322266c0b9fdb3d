/* test_config.c - config parsing, env overrides and the secret-file rule. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
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
	CHECK(c.batch_wait_ms == 8, "batch_wait_ms defaults to 8");
	CHECK(config_parse(&c, "batch_wait_ms = 0\n", err, sizeof err) == 0 && c.batch_wait_ms == 0,
	      "batch_wait_ms = 0 (never gather) accepted");
	CHECK(config_parse(&c, "batch_wait_ms = 1001\n", err, sizeof err) < 0 && strstr(err, "batch_wait_ms"),
	      "batch_wait_ms above 1000 refused");
	CHECK(config_parse(&c, "just words\n", err, sizeof err) < 0 && strstr(err, "line 1"),
	      "line without '=' refused with its number");
	config_release(&c);

	/* database endpoints (db_hosts): order kept, ports, sockets, refusals */
	{
		struct db_endpoint ep[DB_MAX_HOSTS];
		CHECK(config_defaults(&c) == 0, "defaults again");
		CHECK(db_endpoints(&c, ep, err, sizeof err) == 1 && strcmp(ep[0].sock, c.db_socket) == 0,
		      "no db_hosts: the one endpoint of db_socket");
		CHECK(config_parse(&c, "db_socket = \ndb_host = db.example\ndb_port = 3307\n", err, sizeof err) == 0 &&
		      db_endpoints(&c, ep, err, sizeof err) == 1 && strcmp(ep[0].host, "db.example") == 0 &&
		      ep[0].port == 3307 && !ep[0].sock[0], "no socket: db_host:db_port");
		CHECK(config_parse(&c, "db_hosts = 127.0.0.1:4001, 127.0.0.1:4002 ,/run/g3.sock,gal4\n", err, sizeof err) == 0 &&
		      db_endpoints(&c, ep, err, sizeof err) == 4, "a list of four");
		CHECK(strcmp(ep[0].host, "127.0.0.1") == 0 && ep[0].port == 4001 && ep[1].port == 4002 &&
		      strcmp(ep[2].sock, "/run/g3.sock") == 0 && !ep[2].host[0] &&
		      strcmp(ep[3].host, "gal4") == 0 && ep[3].port == 3307,
		      "in order, spaces trimmed, a socket, a host with the default port");
		const char *bad[] = { "a:1,,b:2", "a:0", "a:65536", "a:", ":3306", "a:12x", "a b:1",
				      "a,b,c,d,e,f,g,h,i", "," };
		for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			char line[128];
			snprintf(line, sizeof line, "db_hosts = %s\n", bad[i]);
			err[0] = 0;
			CHECK(config_parse(&c, line, err, sizeof err) == 0 &&
			      db_endpoints(&c, ep, err, sizeof err) < 0 && strstr(err, "db_hosts"),
			      "db_hosts '%s' refused with a reason", bad[i]);
		}
		config_release(&c);
	}

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
	/* the webhook's signing secret: read from its file; an empty one is refused
	 * (it would sign with an empty key) */
	setenv("QC_ALERT_WEBHOOK_SECRET_FILE", path, 1);
	CHECK(config_load(&c, cpath, err, sizeof err) == 0 && c.alert_webhook_secret &&
	      strcmp(c.alert_webhook_secret, "s3cret") == 0, "config_load reads the webhook secret file");
	config_release(&c);
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, "\n", 1) == 1, "empty the secret file");
	close(fd);
	CHECK(config_load(&c, cpath, err, sizeof err) < 0 && strstr(err, "alert_webhook_secret_file") &&
	      strstr(err, "empty"), "an empty webhook secret file is refused with its name");
	unsetenv("QC_ALERT_WEBHOOK_SECRET_FILE");
	CHECK(config_read_secret("/nonexistent/x", &s, err, sizeof err) < 0, "missing secret file refused");
	unlink(path);
	unlink(cpath);
	return TAP_DONE();
}
