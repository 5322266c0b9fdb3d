-- 017: single-flight waiters reserve nothing (SPEC §9, §12).
--
-- Before, each identical miss reserved quota and only then learned, in the
-- same transaction, that another request leads its flight; every waiter
-- then gave its reservation back when the answer landed.  Fifty identical
-- misses of one user were a hundred writes to that user's counter rows, all
-- at once; through two Galera nodes they conflicted until some gave up
-- (503).  Now a live flight is seen first with a plain read (no lock, no
-- transaction) and the request waits holding nothing, like a cache hit it
-- will be.  A request that finds no flight reserves and takes the flight in
-- one transaction, taking the flight before the counters move; if it lost
-- the race for the flight, it rolls back and waits too.  A waiter that takes
-- over a lapsed flight reserves then (orchestrator.c), so the quota of the
-- call it makes is checked when it makes it.  Waiters count no call against
-- calls_per_hour and no generation against max_inflight: neither calls.

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
  -- an identical miss is calling: wait for its answer, reserving nothing
  -- (a plain read outside any transaction: it locks nothing)
  IF p_flight IS NOT NULL THEN
    SELECT expires_at >= p_now INTO v_lead FROM generate_flights WHERE flight_key = p_flight;
    SET v_done = 0;
  END IF;
  IF v_lead = 1 THEN
    SELECT 'wait', 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, '', 0;
  ELSE
  SET v_lead = NULL;
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
      -- the flight before the counters: lost the race for it (an identical
      -- miss committed it since the read above), give everything back and wait
      IF p_flight IS NOT NULL THEN
        CALL qc_flight_take(p_flight, p_owner, p_now, p_hold, v_lead);
      END IF;
      IF v_lead = 0 THEN
        ROLLBACK;
        SELECT 'wait', 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, '', 0;
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
               l_day, l_month, l_hour, 0, 0, 0, v_plan, v_lead;
      END IF;
    END IF;
  END IF;
  END;
  END IF;
END;
