-- 006: many generations in flight (SPEC §9).
--
-- plans.max_inflight caps a user's generations in flight (NULL: no cap):
-- counted as the user's active reservations when a generation reserves, so
-- it holds across worker processes and web nodes.  Past it the generation
-- gets 429 with Retry-After.
-- metrics_gauges: each worker process's gauges (calls in flight, waiters,
-- busy request threads), upserted by its flusher; /metrics sums the rows
-- written in the last 10 seconds.

ALTER TABLE plans ADD COLUMN IF NOT EXISTS max_inflight INT NULL AFTER calls_per_hour;
UPDATE plans SET max_inflight = 4 WHERE name = 'freemium' AND max_inflight IS NULL;
UPDATE plans SET max_inflight = 16 WHERE name = 'payg' AND max_inflight IS NULL;
UPDATE plans SET max_inflight = 64 WHERE name = 'pro_monthly' AND max_inflight IS NULL;
UPDATE plans SET max_inflight = 128 WHERE name = 'pro_annual' AND max_inflight IS NULL;

CREATE TABLE IF NOT EXISTS metrics_gauges (
  worker      VARCHAR(96) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  name        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  value       BIGINT NOT NULL DEFAULT 0,
  updated_at  BIGINT NOT NULL,
  PRIMARY KEY (worker, name),
  KEY idx_gauges_updated (updated_at)
) ENGINE=InnoDB;

-- Reserve for a generation (p_gen = 1: the plan's in-flight cap applies) or
-- for the quota API (p_gen = 0).  Lock order and answers as described in
-- 002_quota.sql; one more outcome, 'busy' (the cap in the last column).
DROP PROCEDURE IF EXISTS qc_reserve;
CREATE PROCEDURE qc_reserve(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
    IN p_task VARCHAR(64), IN p_min BIGINT, IN p_now BIGINT, IN p_day BIGINT,
    IN p_month BIGINT, IN p_hour BIGINT, IN p_expires BIGINT,
    IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii, IN p_hold BIGINT,
    IN p_gen INT)
BEGIN
  DECLARE v_est, l_day, l_month, l_hour, l_inflight BIGINT;
  DECLARE v_inflight BIGINT DEFAULT 0;
  DECLARE v_plan VARCHAR(32) DEFAULT NULL;
  DECLARE v_rows, v_stale BIGINT DEFAULT 0;
  DECLARE d_used, d_res, m_used, m_res, h_calls BIGINT DEFAULT 0;
  DECLARE d_over, m_over, h_over INT DEFAULT 0;
  DECLARE v_done INT DEFAULT 0;
  DECLARE v_lead INT DEFAULT NULL;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;

  START TRANSACTION;
  SELECT IF(o.tokens_per_day IS NULL, p.tokens_per_day, NULLIF(o.tokens_per_day, -1)),
         IF(o.tokens_per_month IS NULL, p.tokens_per_month, NULLIF(o.tokens_per_month, -1)),
         IF(o.calls_per_hour IS NULL, p.calls_per_hour, NULLIF(o.calls_per_hour, -1)),
         u.plan, p.max_inflight,
         GREATEST(COALESCE((SELECT tokens FROM task_estimates WHERE task = p_task),
                           (SELECT tokens FROM task_estimates WHERE task = 'default'), 1500),
                  COALESCE(p_min, 0))
    INTO l_day, l_month, l_hour, v_plan, l_inflight, v_est
    FROM users u JOIN plans p ON p.name = u.plan
    LEFT JOIN quota_overrides o ON o.user_id = u.id AND (o.expires_at IS NULL OR o.expires_at > p_now)
   WHERE u.id = p_user;
  IF v_done = 1 THEN
    ROLLBACK;
    SELECT 'nouser', 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, '', NULL;
  ELSE
    -- the day row first, alone: every transaction that writes this user's
    -- counters takes it before anything else, so they queue, never cross
    SELECT COUNT(*) INTO v_rows FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'day' AND window_start = p_day FOR UPDATE;
    -- this user's three current rows, locked in primary-key order
    SELECT COUNT(*), SUM(IF(window_kind = 'day', used, 0)), SUM(IF(window_kind = 'day', reserved, 0)),
           SUM(IF(window_kind = 'month', used, 0)), SUM(IF(window_kind = 'month', reserved, 0)),
           SUM(IF(window_kind = 'hour', calls, 0))
      INTO v_rows, d_used, d_res, m_used, m_res, h_calls
      FROM quota_counters
     WHERE user_id = p_user AND ((window_kind = 'day' AND window_start = p_day)
        OR (window_kind = 'month' AND window_start = p_month)
        OR (window_kind = 'hour' AND window_start = p_hour)) FOR UPDATE;
    IF v_rows < 3 THEN   -- a window's first use
      INSERT IGNORE INTO quota_counters (user_id, window_kind, window_start)
        VALUES (p_user, 'day', p_day), (p_user, 'month', p_month), (p_user, 'hour', p_hour);
      SELECT SUM(IF(window_kind = 'day', used, 0)), SUM(IF(window_kind = 'day', reserved, 0)),
             SUM(IF(window_kind = 'month', used, 0)), SUM(IF(window_kind = 'month', reserved, 0)),
             SUM(IF(window_kind = 'hour', calls, 0))
        INTO d_used, d_res, m_used, m_res, h_calls
        FROM quota_counters
       WHERE user_id = p_user AND ((window_kind = 'day' AND window_start = p_day)
          OR (window_kind = 'month' AND window_start = p_month)
          OR (window_kind = 'hour' AND window_start = p_hour)) FOR UPDATE;
    END IF;
    -- stale reservations give their tokens back (rare: a plain read first)
    SELECT COUNT(*) INTO v_stale FROM quota_reservations
     WHERE user_id = p_user AND state = 'active' AND expires_at <= p_now;
    IF v_stale > 0 THEN
      CALL qc_expire_user_locked(p_user, p_now);
      SELECT SUM(IF(window_kind = 'day', used, 0)), SUM(IF(window_kind = 'day', reserved, 0)),
             SUM(IF(window_kind = 'month', used, 0)), SUM(IF(window_kind = 'month', reserved, 0))
        INTO d_used, d_res, m_used, m_res
        FROM quota_counters
       WHERE user_id = p_user AND ((window_kind = 'day' AND window_start = p_day)
          OR (window_kind = 'month' AND window_start = p_month));
    END IF;
    -- the plan's cap of generations in flight: active reservations of this
    -- user (under the day row's lock, so concurrent reserves queue here)
    IF p_gen = 1 AND l_inflight IS NOT NULL THEN
      SELECT COUNT(*) INTO v_inflight FROM quota_reservations
       WHERE user_id = p_user AND state = 'active' AND expires_at > p_now;
    END IF;
    SET d_over = l_day IS NOT NULL AND d_used + d_res + v_est > l_day;
    SET m_over = l_month IS NOT NULL AND m_used + m_res + v_est > l_month;
    SET h_over = l_hour IS NOT NULL AND h_calls + 1 > l_hour;
    IF p_gen = 1 AND l_inflight IS NOT NULL AND v_inflight >= l_inflight THEN
      COMMIT;
      SELECT 'busy', v_est, d_used, d_res, m_used, m_res, h_calls,
             l_day, l_month, l_hour, 0, 0, 0, v_plan, l_inflight;
    ELSEIF d_over OR m_over OR h_over THEN
      COMMIT;   -- keeps only the expiry of stale reservations
      SELECT 'refused', v_est, d_used, d_res, m_used, m_res, h_calls,
             l_day, l_month, l_hour, d_over, m_over, h_over, v_plan, NULL;
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
      IF p_flight IS NOT NULL THEN
        CALL qc_flight_take(p_flight, p_owner, p_now, p_hold, v_lead);
      END IF;
      COMMIT;
      SELECT 'ok', v_est, d_used, d_res + v_est, m_used, m_res + v_est, h_calls + 1,
             l_day, l_month, l_hour, 0, 0, 0, v_plan, v_lead;
    END IF;
  END IF;
  END;
END;

