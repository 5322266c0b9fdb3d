-- 005: faster, deadlock-free reservations (measured with bench/run.sh).
--
-- 002's qc_reserve took shared locks through INSERT IGNORE on rows that
-- already existed and then upgraded them with FOR UPDATE (two reserves of
-- one user deadlocked on the upgrade), and its locking scan for expired
-- reservations could wait on the reservation row a concurrent commit held
-- while that commit waited for the counters (a cycle).  Now:
--   * counter rows are locked with SELECT ... FOR UPDATE first and only
--     inserted at a window's first use;
--   * expired reservations are looked for with a plain (non-locking) read,
--     and swept only when there are some;
-- so the usual reserve takes exclusive locks on three counter rows, always
-- in the same order, and a commit takes its own reservation row, then two
-- of the same counter rows in the same order: no cycle.

-- Lock one counter row, creating it at the window's first use.
DROP PROCEDURE IF EXISTS qc_lock_counter;
CREATE PROCEDURE qc_lock_counter(IN p_user BIGINT UNSIGNED, IN p_kind VARCHAR(8),
    IN p_start BIGINT, OUT o_used BIGINT, OUT o_reserved BIGINT, OUT o_calls BIGINT)
BEGIN
  DECLARE v_found INT DEFAULT 1;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_found = 0;
  SELECT used, reserved, calls INTO o_used, o_reserved, o_calls FROM quota_counters
   WHERE user_id = p_user AND window_kind = p_kind AND window_start = p_start FOR UPDATE;
  IF v_found = 0 THEN
    INSERT IGNORE INTO quota_counters (user_id, window_kind, window_start)
      VALUES (p_user, p_kind, p_start);
    SET v_found = 1;
    SELECT used, reserved, calls INTO o_used, o_reserved, o_calls FROM quota_counters
     WHERE user_id = p_user AND window_kind = p_kind AND window_start = p_start FOR UPDATE;
  END IF;
END;

DROP PROCEDURE IF EXISTS qc_reserve;
CREATE PROCEDURE qc_reserve(IN p_id CHAR(32), IN p_user BIGINT UNSIGNED,
    IN p_task VARCHAR(64), IN p_min BIGINT, IN p_now BIGINT, IN p_day BIGINT,
    IN p_month BIGINT, IN p_hour BIGINT, IN p_expires BIGINT)
BEGIN
  DECLARE v_est, l_day, l_month, l_hour BIGINT;
  DECLARE v_found INT;
  DECLARE v_plan VARCHAR(32);
  DECLARE v_stale BIGINT DEFAULT 0;
  DECLARE d_used, d_res, m_used, m_res, h_calls, x1, x2 BIGINT DEFAULT 0;
  DECLARE d_over, m_over, h_over INT DEFAULT 0;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;

  SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
  START TRANSACTION;
  CALL qc_limits(p_user, p_now, l_day, l_month, l_hour, v_plan, v_found);
  IF v_found = 0 THEN
    ROLLBACK;
    SELECT 'nouser', 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, '';
  ELSE
    SELECT GREATEST(COALESCE((SELECT tokens FROM task_estimates WHERE task = p_task),
                             (SELECT tokens FROM task_estimates WHERE task = 'default'), 1500),
                    COALESCE(p_min, 0)) INTO v_est;
    -- this user's three current rows, always day, month, hour
    CALL qc_lock_counter(p_user, 'day', p_day, d_used, d_res, x1);
    CALL qc_lock_counter(p_user, 'month', p_month, m_used, m_res, x2);
    CALL qc_lock_counter(p_user, 'hour', p_hour, x1, x2, h_calls);
    -- stale reservations give their tokens back (rare: a plain read first)
    SELECT COUNT(*) INTO v_stale FROM quota_reservations
     WHERE user_id = p_user AND state = 'active' AND expires_at <= p_now;
    IF v_stale > 0 THEN
      CALL qc_expire_user_locked(p_user, p_now);
      SELECT used, reserved INTO d_used, d_res FROM quota_counters
       WHERE user_id = p_user AND window_kind = 'day' AND window_start = p_day;
      SELECT used, reserved INTO m_used, m_res FROM quota_counters
       WHERE user_id = p_user AND window_kind = 'month' AND window_start = p_month;
    END IF;
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

-- Settle one user's expired reservations in a transaction of its own (the
-- status read calls it when it sees one; rare).
DROP PROCEDURE IF EXISTS qc_expire_user;
CREATE PROCEDURE qc_expire_user(IN p_user BIGINT UNSIGNED, IN p_now BIGINT)
BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
  START TRANSACTION;
  CALL qc_expire_user_locked(p_user, p_now);
  COMMIT;
END;
