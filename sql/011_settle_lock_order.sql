-- 011: settle takes its locks in the same order as reserve (measured with
-- bench/run.sh: one user's reserve+commit load had ~300 deadlocks a second).
-- Reserve locks the user's counter rows, then inserts the reservation;
-- settle used to lock the reservation, then the counters: a cycle under
-- load.  Now settle finds the reservation's windows with a plain read, locks
-- the counter rows, then the reservation, and decides on the locked state.
-- The body is 010's otherwise.

DROP PROCEDURE IF EXISTS qc_settle;
CREATE PROCEDURE qc_settle(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
                           IN p_actual BIGINT, IN p_now BIGINT,
                           IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii)
BEGIN
  DECLARE v_state VARCHAR(16) DEFAULT NULL;
  DECLARE v_est, v_day, v_month BIGINT DEFAULT 0;
  DECLARE v_expires BIGINT;
  DECLARE v_actual BIGINT;
  DECLARE v_locked BIGINT DEFAULT 0;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  BEGIN
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    START TRANSACTION;
    -- which windows: a plain read; then the locks in reserve's order,
    -- counter rows first, the reservation second, and a locking re-read
    SELECT day_start, month_start INTO v_day, v_month
      FROM quota_reservations WHERE id = p_id AND user_id = p_user;
    IF v_done = 0 THEN
      SELECT COUNT(*) INTO v_locked FROM quota_counters
       WHERE user_id = p_user AND ((window_kind = 'day' AND window_start = v_day)
          OR (window_kind = 'month' AND window_start = v_month)) FOR UPDATE;
      SELECT state, estimate, expires_at INTO v_state, v_est, v_expires
        FROM quota_reservations WHERE id = p_id AND user_id = p_user FOR UPDATE;
    END IF;
    IF v_done = 1 THEN
      ROLLBACK;
      SELECT 'notfound', 0, NULL;
    ELSEIF v_state <> 'active' THEN
      ROLLBACK;
      SELECT v_state, v_est, NULL;
    ELSE
      -- past its expiry it is settled as expired whatever was asked
      SET v_actual = IF(v_expires <= p_now, NULL, p_actual);
      UPDATE quota_counters
         SET reserved = reserved - v_est,
             used = used + COALESCE(v_actual, 0),
             overruns = overruns + IF(COALESCE(v_actual, 0) > v_est, 1, 0)
       WHERE user_id = p_user
         AND ((window_kind = 'day' AND window_start = v_day)
           OR (window_kind = 'month' AND window_start = v_month));
      UPDATE quota_reservations
         SET state = IF(v_expires <= p_now, 'expired', IF(v_actual IS NULL, 'released', 'committed')),
             actual = v_actual, settled_at = p_now
       WHERE id = p_id;
      IF p_flight IS NOT NULL THEN
        DELETE FROM generate_flights WHERE flight_key = p_flight AND owner = p_owner;
      END IF;
      COMMIT;
      SELECT IF(v_expires <= p_now, 'expired', 'ok'), v_est, v_actual;
    END IF;
  END;
END;
