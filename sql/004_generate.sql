-- 004: cost tracking and single flight for POST /api/v1/generate (SPEC §5).

-- One row per generate call, hit or miss or failure.  Billed tokens/dollars
-- and saved tokens/dollars are separate columns so spend reports never mix
-- them.  Money in micro-dollars; times in epoch seconds (UTC).
CREATE TABLE IF NOT EXISTS usage_events (
  id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id           BIGINT UNSIGNED NOT NULL,
  plan              VARCHAR(32) NOT NULL,
  task              VARCHAR(64) NOT NULL,
  model             VARCHAR(64) NOT NULL,
  prompt_tokens     BIGINT NOT NULL DEFAULT 0,
  completion_tokens BIGINT NOT NULL DEFAULT 0,
  cost_micro        BIGINT NOT NULL DEFAULT 0,
  saved_tokens      BIGINT NOT NULL DEFAULT 0,
  saved_micro       BIGINT NOT NULL DEFAULT 0,
  cached            TINYINT NOT NULL DEFAULT 0,
  outcome           ENUM('ok','cached','quota','upstream_error','timeout','error') NOT NULL,
  latency_ms        INT NOT NULL DEFAULT 0,
  created_at        BIGINT NOT NULL,
  KEY idx_usage_user_time (user_id, created_at),
  KEY idx_usage_time (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Single flight: the worker that inserts the row for a (user, tier, key)
-- calls the upstream; the others wait for the cache entry.  A row whose
-- expires_at passed belongs to a leader that died and may be taken over.
-- Rows, not GET_LOCK(): GET_LOCK is local to one Galera node.
CREATE TABLE IF NOT EXISTS generate_flights (
  flight_key  CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  owner       CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  started_at  BIGINT NOT NULL,
  expires_at  BIGINT NOT NULL
) ENGINE=InnoDB;

-- Take the flight row (or take it over from a leader whose time ran out),
-- inside qc_reserve's transaction.  o_lead: 1 if p_owner now holds it.
DROP PROCEDURE IF EXISTS qc_flight_take;
CREATE PROCEDURE qc_flight_take(IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii, IN p_now BIGINT,
                                IN p_hold BIGINT, OUT o_lead INT)
BEGIN
  INSERT INTO generate_flights (flight_key, owner, started_at, expires_at)
    VALUES (p_flight, p_owner, p_now, p_now + p_hold)
    ON DUPLICATE KEY UPDATE
      owner = IF(expires_at < VALUES(started_at), VALUES(owner), owner),
      started_at = IF(expires_at < VALUES(started_at), VALUES(started_at), started_at),
      expires_at = IF(expires_at < VALUES(started_at), VALUES(expires_at), expires_at);
  SET o_lead = ROW_COUNT() > 0;
END;
