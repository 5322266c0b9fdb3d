-- 020: reserving for several misses of one user in one transaction (issue
-- 10: the database work of a miss).
--
-- After 019 a miss's reservation (qc_reserve, 018's fast path: a plain read,
-- the flight, the reservation, the counters' conditional UPDATE, a commit)
-- is the larger part of its database work.  When misses of one user wait
-- together (a completion thread finds several in its queue),
-- qc_reserve_batch reserves for all of them with the statements qc_reserve
-- runs for one: the reservations and flights go in with one INSERT each,
-- and the user's three counter rows admit their sum in one conditional
-- UPDATE.
--
-- Like 019 it takes only the common case and leaves everything else to the
-- one-by-one procedure, which keeps its every outcome: if the user is
-- unknown, lacks one of its three current counter rows or holds a
-- reservation past its expiry, if any flight key has a row already (live or
-- lapsed: 1062) or comes twice, if a window would go over its limit with
-- the batch, or the user's generations in flight would pass the plan's cap,
-- the whole batch is rolled back and answered 'fallback', and the caller
-- reserves for each miss with qc_reserve as before.  So the rows written for
-- each miss are exactly those qc_reserve's fast path writes when it answers
-- 'ok' as the flight's leader.
--
-- p_doc is a JSON array (built by the worker with json-c), one object per
-- miss: id (the reservation's), task, min (tokens the prompt needs at
-- least), exp (the reservation's expiry), fk and ow (the flight and its
-- owner, or null).  All share p_user, p_now, the windows and p_hold.
--
-- The answer is one row per miss in the document's order, with the columns
-- of qc_reserve's: outcome, estimate, the day's used and reserved, the
-- month's used and reserved, the hour's calls (the snapshot of the plain
-- read plus the whole batch), the three limits, three zero overs, the plan
-- and 1 (leads); or one row 'fallback'.
--
-- Lock order as 018's: the misses' own rows first (flights, reservations),
-- the user's counter rows last (one UPDATE, primary-key order).
DROP PROCEDURE IF EXISTS qc_reserve_batch;
CREATE PROCEDURE qc_reserve_batch(IN p_doc LONGTEXT, IN p_user BIGINT UNSIGNED, IN p_now BIGINT,
    IN p_day BIGINT, IN p_month BIGINT, IN p_hour BIGINT, IN p_hold BIGINT)
BEGIN
  DECLARE l_day, l_month, l_hour, l_inflight BIGINT;
  DECLARE v_plan VARCHAR(32) DEFAULT NULL;
  DECLARE v_sum, v_n, v_rows, v_inflight BIGINT DEFAULT 0;
  DECLARE v_stale, v_have, v_dup, v_ok INT DEFAULT 0;
  DECLARE d_used, d_res, m_used, m_res, h_calls BIGINT DEFAULT 0;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  batch: BEGIN
    -- plain reads, nothing locked: the limits, the counters' snapshot, and
    -- what the batch asks for (the counters are what is decided under lock)
    SELECT IF(o.tokens_per_day IS NULL, p.tokens_per_day, NULLIF(o.tokens_per_day, -1)),
           IF(o.tokens_per_month IS NULL, p.tokens_per_month, NULLIF(o.tokens_per_month, -1)),
           IF(o.calls_per_hour IS NULL, p.calls_per_hour, NULLIF(o.calls_per_hour, -1)),
           u.plan, p.max_inflight,
           EXISTS (SELECT 1 FROM quota_reservations r
                    WHERE r.user_id = u.id AND r.state = 'active' AND r.expires_at <= p_now),
           (d.user_id IS NOT NULL AND m.user_id IS NOT NULL AND h.user_id IS NOT NULL),
           d.used, d.reserved, m.used, m.reserved, h.calls
      INTO l_day, l_month, l_hour, v_plan, l_inflight, v_stale, v_have,
           d_used, d_res, m_used, m_res, h_calls
      FROM users u JOIN plans p ON p.name = u.plan
      LEFT JOIN quota_overrides o ON o.user_id = u.id AND (o.expires_at IS NULL OR o.expires_at > p_now)
      LEFT JOIN quota_counters d ON d.user_id = u.id AND d.window_kind = 'day' AND d.window_start = p_day
      LEFT JOIN quota_counters m ON m.user_id = u.id AND m.window_kind = 'month' AND m.window_start = p_month
      LEFT JOIN quota_counters h ON h.user_id = u.id AND h.window_kind = 'hour' AND h.window_start = p_hour
     WHERE u.id = p_user;
    IF v_done = 1 OR v_stale = 1 OR v_have = 0 THEN LEAVE batch; END IF;
    START TRANSACTION;
    BEGIN
      -- a flight row there (live or lapsed) or a key twice: fall back (the
      -- one-by-one path then waits for it or takes it over)
      DECLARE CONTINUE HANDLER FOR 1062 SET v_dup = 1;
      INSERT INTO generate_flights (flight_key, owner, started_at, expires_at)
        SELECT j.fk, j.ow, p_now, p_now + p_hold
          FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (fk CHAR(64) CHARACTER SET ascii PATH '$.fk',
                                                 ow CHAR(32) CHARACTER SET ascii PATH '$.ow')) j
         WHERE j.fk IS NOT NULL;
    END;
    IF v_dup = 1 THEN LEAVE batch; END IF;
    INSERT INTO quota_reservations (id, user_id, task, estimate, day_start, month_start,
                                    hour_start, created_at, expires_at)
      SELECT j.id, p_user, j.task, GREATEST(COALESCE(t.tokens, td.tokens, 1500), COALESCE(j.min, 0)),
             p_day, p_month, p_hour, p_now, j.exp
        FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (id CHAR(32) CHARACTER SET ascii PATH '$.id',
                                               task VARCHAR(64) PATH '$.task',
                                               min BIGINT PATH '$.min', exp BIGINT PATH '$.exp')) j
        LEFT JOIN task_estimates t ON t.task = j.task
        LEFT JOIN task_estimates td ON td.task = 'default';
    SET v_n = ROW_COUNT();
    SELECT SUM(r.estimate) INTO v_sum
      FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (id CHAR(32) CHARACTER SET ascii PATH '$.id')) j
      STRAIGHT_JOIN quota_reservations r FORCE INDEX (PRIMARY) ON r.id = j.id;
    -- every window admits the whole batch in one conditional UPDATE
    UPDATE quota_counters FORCE INDEX (PRIMARY)
       SET reserved = reserved + IF(window_kind = 'hour', 0, v_sum), calls = calls + v_n
     WHERE user_id = p_user
       AND ((window_kind = 'day' AND window_start = p_day)
         OR (window_kind = 'month' AND window_start = p_month)
         OR (window_kind = 'hour' AND window_start = p_hour))
       AND CASE window_kind
             WHEN 'day' THEN l_day IS NULL OR used + reserved + v_sum <= l_day
             WHEN 'month' THEN l_month IS NULL OR used + reserved + v_sum <= l_month
             ELSE l_hour IS NULL OR calls + v_n <= l_hour END;
    IF ROW_COUNT() <> 3 THEN LEAVE batch; END IF;
    -- the plan's cap of generations in flight, counted under the day row
    -- (this batch's reservations included)
    IF l_inflight IS NOT NULL THEN
      SELECT COUNT(*) INTO v_inflight FROM quota_reservations
       WHERE user_id = p_user AND state = 'active' AND expires_at > p_now;
      IF v_inflight > l_inflight THEN LEAVE batch; END IF;
    END IF;
    COMMIT;
    SET v_ok = 1;
  END;
  IF v_ok = 1 THEN
    SELECT 'ok', r.estimate, d_used, d_res + v_sum, m_used, m_res + v_sum, h_calls + v_n,
           l_day, l_month, l_hour, 0, 0, 0, v_plan, 1
      FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (ord FOR ORDINALITY,
                                             id CHAR(32) CHARACTER SET ascii PATH '$.id')) j
      STRAIGHT_JOIN quota_reservations r FORCE INDEX (PRIMARY) ON r.id = j.id
     ORDER BY j.ord;
  ELSE
    ROLLBACK;
    SELECT 'fallback';
  END IF;
  END;
END;
