-- 012: quota level crossings and their webhook (SPEC §14, src/alerts.c).
--
-- A crossing is a window of a user (one window instance: kind + start)
-- reaching warning (1), critical (2) or exceeded (3).  Its row is both the
-- "sent once" mark and the delivery's state:
--   * a worker that sees a crossing claims it with one INSERT IGNORE ...
--     WHERE NOT EXISTS (a row of the same window at this level or higher):
--     the primary key lets exactly one claim win on any number of workers
--     and web nodes (on Galera the loser fails certification, retries and
--     then finds the row), and a window that fell back (a release) and rose
--     again sends nothing new;
--   * any worker's sender takes due rows with a conditional UPDATE that sets
--     a lease (a random token and an expiry longer than one POST), posts,
--     and marks the row 'sent' on a 2xx, or schedules the next attempt
--     (next_at_ms) until alert_webhook_attempts, then 'failed'.
-- No GET_LOCK, rows and conditional UPDATEs only.  Times: crossed_at is the
-- request's clock (epoch s), the *_ms columns the senders' wall clock.
CREATE TABLE IF NOT EXISTS alert_crossings (
  user_id        BIGINT UNSIGNED NOT NULL,
  window_kind    ENUM('day','month','hour') NOT NULL,
  window_start   BIGINT NOT NULL,
  level          TINYINT UNSIGNED NOT NULL,          -- 1 warning, 2 critical, 3 exceeded
  plan           VARCHAR(32) NOT NULL,
  used           BIGINT NOT NULL,                    -- tokens used + reserved; calls (hour)
  lim            BIGINT NOT NULL,
  crossed_at     BIGINT NOT NULL,
  state          ENUM('pending','sent','failed') NOT NULL DEFAULT 'pending',
  attempts       INT NOT NULL DEFAULT 0,
  next_at_ms     BIGINT NOT NULL,
  lease          CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
  lease_until_ms BIGINT NOT NULL DEFAULT 0,
  sent_at        BIGINT NULL,
  last_error     VARCHAR(255) NOT NULL DEFAULT '',
  PRIMARY KEY (user_id, window_kind, window_start, level),
  KEY idx_alert_due (state, next_at_ms),
  KEY idx_alert_lease (lease),
  CONSTRAINT fk_alert_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- delivered or given-up crossings of windows long over (a month is at most
-- 31 days) are history only
DROP EVENT IF EXISTS qc_alert_prune;
CREATE EVENT qc_alert_prune ON SCHEDULE EVERY 1 HOUR
  DO DELETE FROM alert_crossings
      WHERE state <> 'pending' AND window_start + 32 * 86400 < UNIX_TIMESTAMP();
