-- 002: quota windows, reservations, overrides and task estimates (SPEC §2, §3).
--
-- Why stored procedures: a reservation must check three windows and write a
-- reservation row all-or-nothing, and the hot path may cost one database
-- round trip.  Each procedure below is one short transaction that takes row
-- locks on one user's counter rows only (InnoDB, READ COMMITTED), so it is
-- exact under any number of workers and web nodes, and it holds on Galera:
-- no GET_LOCK, no LOCK TABLES; a certification conflict (1213) aborts the
-- whole transaction, which the client retries (src/db.c).
-- Times are epoch seconds (UTC) passed in by the caller, so tests can set the
-- clock.  Counter rows are keyed (user, window kind, window start) and kept
-- for history; quotacachectl quota prune removes old ones.

CREATE TABLE IF NOT EXISTS task_estimates (
  task    VARCHAR(64) NOT NULL PRIMARY KEY,
  tokens  BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- 'default' is the estimate of any task not listed
INSERT IGNORE INTO task_estimates (task, tokens) VALUES
  ('extraction', 2000), ('cv_drafting', 4000), ('cover_letter', 2500),
  ('interview_notes', 3000), ('default', 1500);

-- A limit column: NULL = not overridden (the plan's limit applies),
-- -1 = unlimited, otherwise the limit.
CREATE TABLE IF NOT EXISTS quota_overrides (
  user_id          BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  tokens_per_day   BIGINT NULL,
  tokens_per_month BIGINT NULL,
  calls_per_hour   BIGINT NULL,
  expires_at       BIGINT NULL,        -- epoch; NULL = until removed
  reason           VARCHAR(255) NOT NULL DEFAULT '',
  created_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT fk_overrides_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS quota_counters (
  user_id      BIGINT UNSIGNED NOT NULL,
  window_kind  ENUM('day','month','hour') NOT NULL,
  window_start BIGINT NOT NULL,          -- epoch of the window's start
  used         BIGINT NOT NULL DEFAULT 0, -- committed tokens
  reserved     BIGINT NOT NULL DEFAULT 0, -- tokens held by active reservations
  calls        BIGINT NOT NULL DEFAULT 0, -- admitted calls
  overruns     BIGINT NOT NULL DEFAULT 0, -- commits with actual > estimate
  PRIMARY KEY (user_id, window_kind, window_start),
  KEY idx_counters_start (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS quota_reservations (
  id           CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  user_id      BIGINT UNSIGNED NOT NULL,
  task         VARCHAR(64) NOT NULL,
  estimate     BIGINT NOT NULL,
  day_start    BIGINT NOT NULL,
  month_start  BIGINT NOT NULL,
  hour_start   BIGINT NOT NULL,
  created_at   BIGINT NOT NULL,
  expires_at   BIGINT NOT NULL,
  state        ENUM('active','committed','released','expired') NOT NULL DEFAULT 'active',
  actual       BIGINT NULL,
  settled_at   BIGINT NULL,
  KEY idx_res_user_state (user_id, state, expires_at),
  KEY idx_res_state_expires (state, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Settle one reservation that the caller has locked and knows is active:
-- its estimate leaves `reserved` of its day and month windows, `p_actual`
-- (NULL for release/expiry) goes to `used`.  The call stays counted.
DROP PROCEDURE IF EXISTS qc_settle_locked;
CREATE PROCEDURE qc_settle_locked(IN p_id CHAR(32), IN p_actual BIGINT,
                                  IN p_state VARCHAR(16), IN p_now BIGINT)
BEGIN
  DECLARE v_user BIGINT UNSIGNED;
  DECLARE v_est, v_day, v_month BIGINT;
  SELECT user_id, estimate, day_start, month_start INTO v_user, v_est, v_day, v_month
    FROM quota_reservations WHERE id = p_id;
  UPDATE quota_counters
     SET reserved = reserved - v_est,
         used = used + COALESCE(p_actual, 0),
         overruns = overruns + IF(COALESCE(p_actual, 0) > v_est, 1, 0)
   WHERE user_id = v_user
     AND ((window_kind = 'day' AND window_start = v_day)
       OR (window_kind = 'month' AND window_start = v_month));
  UPDATE quota_reservations SET state = p_state, actual = p_actual, settled_at = p_now
   WHERE id = p_id;
END;

-- Expire every active reservation of one user whose time is up (inside the
-- caller's transaction).
DROP PROCEDURE IF EXISTS qc_expire_user_locked;
CREATE PROCEDURE qc_expire_user_locked(IN p_user BIGINT UNSIGNED, IN p_now BIGINT)
BEGIN
  DECLARE v_id CHAR(32) DEFAULT NULL;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  expire_loop: LOOP
    SET v_done = 0, v_id = NULL;
    SELECT id INTO v_id FROM quota_reservations
     WHERE user_id = p_user AND state = 'active' AND expires_at <= p_now
     LIMIT 1 FOR UPDATE;
    IF v_done = 1 OR v_id IS NULL THEN LEAVE expire_loop; END IF;
    CALL qc_settle_locked(v_id, NULL, 'expired', p_now);
  END LOOP;
END;

-- Limits of a user at time p_now (override while active, else plan); NULL =
-- unlimited.  Returned through OUT parameters.
DROP PROCEDURE IF EXISTS qc_limits;
CREATE PROCEDURE qc_limits(IN p_user BIGINT UNSIGNED, IN p_now BIGINT,
                           OUT o_day BIGINT, OUT o_month BIGINT, OUT o_hour BIGINT,
                           OUT o_plan VARCHAR(32), OUT o_found INT)
BEGIN
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET o_found = 0;
  SET o_found = 1;
  SELECT IF(o.tokens_per_day IS NULL, p.tokens_per_day, NULLIF(o.tokens_per_day, -1)),
         IF(o.tokens_per_month IS NULL, p.tokens_per_month, NULLIF(o.tokens_per_month, -1)),
         IF(o.calls_per_hour IS NULL, p.calls_per_hour, NULLIF(o.calls_per_hour, -1)),
         u.plan
    INTO o_day, o_month, o_hour, o_plan
    FROM users u JOIN plans p ON p.name = u.plan
    LEFT JOIN quota_overrides o ON o.user_id = u.id
         AND (o.expires_at IS NULL OR o.expires_at > p_now)
   WHERE u.id = p_user;
END;

-- The estimate of a task: its table value (or 'default'), at least p_min.
DROP FUNCTION IF EXISTS qc_estimate;
CREATE FUNCTION qc_estimate(p_task VARCHAR(64), p_min BIGINT) RETURNS BIGINT
  READS SQL DATA
BEGIN
  DECLARE v BIGINT;
  SELECT COALESCE((SELECT tokens FROM task_estimates WHERE task = p_task),
                  (SELECT tokens FROM task_estimates WHERE task = 'default'), 1500)
    INTO v;
  RETURN GREATEST(v, COALESCE(p_min, 0));
END;

-- Reserve: one transaction.  Adds the estimate to the day and month windows
-- and one call to every window, then admits only if no window is over its
-- limit; otherwise rolls back.  Answers one row:
--   outcome ('ok'|'refused'|'nouser'), estimate,
--   day used/reserved, month used/reserved, hour calls,
--   day/month/hour limits, day/month/hour over flags, plan.
DROP PROCEDURE IF EXISTS qc_reserve;
CREATE PROCEDURE qc_reserve(IN p_id CHAR(32), IN p_user BIGINT UNSIGNED,
    IN p_task VARCHAR(64), IN p_min BIGINT, IN p_now BIGINT, IN p_day BIGINT,
    IN p_month BIGINT, IN p_hour BIGINT, IN p_expires BIGINT)
BEGIN
  DECLARE v_est, l_day, l_month, l_hour BIGINT;
  DECLARE v_found INT;
  DECLARE v_plan VARCHAR(32);
  DECLARE d_used, d_res, m_used, m_res, h_calls BIGINT DEFAULT 0;
  DECLARE d_over, m_over, h_over INT DEFAULT 0;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;

  SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
  START TRANSACTION;
  CALL qc_limits(p_user, p_now, l_day, l_month, l_hour, v_plan, v_found);
  IF v_found = 0 THEN
    ROLLBACK;
    SELECT 'nouser', 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, '';
  ELSE
    SET v_est = qc_estimate(p_task, p_min);
    INSERT IGNORE INTO quota_counters (user_id, window_kind, window_start)
      VALUES (p_user, 'day', p_day), (p_user, 'month', p_month), (p_user, 'hour', p_hour);
    -- lock this user's three current rows (always in the same order)
    SELECT used, reserved INTO d_used, d_res FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'day' AND window_start = p_day FOR UPDATE;
    SELECT used, reserved INTO m_used, m_res FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'month' AND window_start = p_month FOR UPDATE;
    SELECT calls INTO h_calls FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'hour' AND window_start = p_hour FOR UPDATE;
    -- give back what expired reservations held, then re-read
    CALL qc_expire_user_locked(p_user, p_now);
    SELECT used, reserved INTO d_used, d_res FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'day' AND window_start = p_day;
    SELECT used, reserved INTO m_used, m_res FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'month' AND window_start = p_month;
    SET d_over = l_day IS NOT NULL AND d_used + d_res + v_est > l_day;
    SET m_over = l_month IS NOT NULL AND m_used + m_res + v_est > l_month;
    SET h_over = l_hour IS NOT NULL AND h_calls + 1 > l_hour;
    IF d_over OR m_over OR h_over THEN
      COMMIT;   -- keeps only the expiry of stale reservations
      SELECT 'refused', v_est, d_used, d_res, m_used, m_res, h_calls,
             l_day, l_month, l_hour, d_over, m_over, h_over, v_plan;
    ELSE
      UPDATE quota_counters
         SET reserved = reserved + IF(window_kind = 'hour', 0, v_est), calls = calls + 1
       WHERE user_id = p_user
         AND ((window_kind = 'day' AND window_start = p_day)
           OR (window_kind = 'month' AND window_start = p_month)
           OR (window_kind = 'hour' AND window_start = p_hour));
      INSERT INTO quota_reservations (id, user_id, task, estimate, day_start, month_start,
                                      hour_start, created_at, expires_at)
        VALUES (p_id, p_user, p_task, v_est, p_day, p_month, p_hour, p_now, p_expires);
      COMMIT;
      SELECT 'ok', v_est, d_used, d_res + v_est, m_used, m_res + v_est, h_calls + 1,
             l_day, l_month, l_hour, 0, 0, 0, v_plan;
    END IF;
  END IF;
END;

-- Commit (p_actual >= 0) or release (p_actual NULL) a reservation of p_user.
-- Answers one row: outcome ('ok'|'notfound'|'committed'|'released'|'expired'),
-- estimate, actual.  Another user's reservation is 'notfound'.
DROP PROCEDURE IF EXISTS qc_settle;
CREATE PROCEDURE qc_settle(IN p_id CHAR(32), IN p_user BIGINT UNSIGNED,
                           IN p_actual BIGINT, IN p_now BIGINT)
BEGIN
  DECLARE v_state VARCHAR(16) DEFAULT NULL;
  DECLARE v_est BIGINT DEFAULT 0;
  DECLARE v_expires BIGINT;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  BEGIN
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
    START TRANSACTION;
    SELECT state, estimate, expires_at INTO v_state, v_est, v_expires
      FROM quota_reservations WHERE id = p_id AND user_id = p_user FOR UPDATE;
    IF v_done = 1 THEN
      ROLLBACK;
      SELECT 'notfound', 0, NULL;
    ELSEIF v_state <> 'active' THEN
      ROLLBACK;
      SELECT v_state, v_est, NULL;
    ELSEIF v_expires <= p_now THEN
      CALL qc_settle_locked(p_id, NULL, 'expired', p_now);
      COMMIT;
      SELECT 'expired', v_est, NULL;
    ELSE
      CALL qc_settle_locked(p_id, p_actual,
                            IF(p_actual IS NULL, 'released', 'committed'), p_now);
      COMMIT;
      SELECT 'ok', v_est, p_actual;
    END IF;
  END;
END;

-- Expire every user's stale reservations (the hourly event, the CLI).
DROP PROCEDURE IF EXISTS qc_expire_all;
CREATE PROCEDURE qc_expire_all(IN p_now BIGINT)
BEGIN
  DECLARE v_user BIGINT UNSIGNED;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  user_loop: LOOP
    SET v_done = 0;
    SELECT user_id INTO v_user FROM quota_reservations
     WHERE state = 'active' AND expires_at <= p_now LIMIT 1;
    IF v_done = 1 THEN LEAVE user_loop; END IF;
    START TRANSACTION;
    CALL qc_expire_user_locked(v_user, p_now);
    COMMIT;
  END LOOP;
END;

DROP EVENT IF EXISTS qc_expire_reservations;
CREATE EVENT qc_expire_reservations ON SCHEDULE EVERY 1 MINUTE
  DO CALL qc_expire_all(UNIX_TIMESTAMP());
