-- 005: counters behind GET /metrics.  Workers add to them in one statement
-- at most a second later, so the exposition is the sum over every worker
-- process and web node (a scrape reaches one worker; per-worker series would
-- show only that worker).  bucket is the histogram bucket index (-1: not a
-- bucket).  Sums of seconds are kept in microseconds, dollars in
-- micro-dollars.
CREATE TABLE IF NOT EXISTS metrics_counters (
  name    VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  labels  VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  bucket  INT NOT NULL DEFAULT -1,
  value   BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (name, labels, bucket)
) ENGINE=InnoDB;
