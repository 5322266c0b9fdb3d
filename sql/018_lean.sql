-- 018: the lean quota and store paths (issue 10: the database work of a miss).
--
-- Single-flight waiters reserve nothing.  Before, each identical miss
-- reserved quota and only then learned, in the same transaction, that
-- another request led its flight; every waiter gave its reservation back
-- when the answer landed.  Fifty identical misses of one user were a hundred
-- writes to that user's counter rows at once; through two Galera nodes they
-- conflicted until some gave up (503).  Now the plain read that fetches the
-- limits also sees a live flight, and the request waits holding nothing,
-- like the cache hit it will be.  A request that loses the race for the
-- flight rolls back and waits too; a waiter that takes over a lapsed flight
-- reserves then (orchestrator.c).  Waiters count no call against
-- calls_per_hour and no generation against max_inflight: neither calls.
--
-- Measured with perf on mariadbd under /generate misses: nearly all of its
-- time went to executing stored-procedure statements (optimising, fixing
-- fields, opening tables), about 39 statements per miss, not to reading
-- rows.  This migration gives the same answers with fewer statements and
-- shorter holds of a user's counter rows:
--
-- * qc_reserve admits in ONE conditional UPDATE of the user's three current
--   counter rows (day, month, hour: the primary-key order, so the day row is
--   still taken first), each row checking its own window's limit.  It takes
--   the flight and inserts the reservation BEFORE that UPDATE, so the user's
--   counter rows are held only from the UPDATE to the commit.  Anything
--   else (a window's first use, a limit reached, the in-flight cap, stale
--   reservations to give back) rolls back and takes the careful path
--   (006's locks and decision, unchanged), which answers exactly as before.
--   The plain read that fetches the limits also reads the user's three
--   counter rows and says whether the user holds a reservation past its
--   expiry.  Missing rows (a window's first use) or a stale reservation go
--   straight to the careful path, which gives the stale one back first (so
--   a reserve still returns a dead worker's tokens, SPEC §3).  The fast
--   path answers with that read plus its own reservation instead of reading
--   the rows again after the UPDATE: the figures are a snapshot from just
--   before the UPDATE, which decides under lock.
-- * A settle is two steps: qc_settle_mark moves the reservation (UPDATE ...
--   WHERE state = 'active': one settle wins) and says what the counters
--   owe; qc_counters_settle applies it.  qc_settle_tx is the two in a row.
-- * qc_cache_store_tx, for a new key (a miss's answer, a first PUT),
--   inserts the entry and then admits it under the cap in one conditional
--   UPDATE of the user's cache_usage row (own row first, the hot row last),
--   without reading the key first.  A key that exists (an expired entry not
--   yet removed, a replacing PUT) fails the INSERT with 1062, which writes
--   no row and no row event; an entry the cap refuses (or a user's first
--   store, without a usage row yet) is deleted again; both then take the
--   careful path (lock, expired entries, eviction).  No savepoint: Galera's
--   appliers replayed the insert of a rolled-back savepoint (1062) and left
--   the cluster.
--
-- Measured in the server alone (a loop of CALL qc_reserve and CALL
-- qc_finish_generation from one connection on the bench database,
-- innodb_flush_log_at_trx_commit = 2 so that only CPU counts), the two cuts
-- of the paragraphs above (the re-read after the admitting UPDATE, the
-- key read before a store) against the versions without them, side by side
-- on the same data: 1.22 -> 1.09 ms per miss.  Through lighttpd
-- (bench/run.sh, same run): /generate misses at 0 ms 725 -> 845 req/s,
-- 0.86 -> 1.00 x Portkey; c = 1,024 at 1 s 0.92 -> 0.97 x Portkey.
-- * qc_finish_generation: the generation's own rows first (reservation,
--   flight, the entry), the user's cache_usage row, the ledger row, the
--   user's counter rows last.
--
-- Why the order matters: under 1,024 generations of one user in flight
-- (bench inflight_1024) InnoDB showed 26 of 27 finishing transactions in
-- LOCK WAIT on that user's cache_usage row, and 264 s of row-lock waits in
-- 10 s: a user's hot rows were held for most of each transaction.
--
-- Every statement over a user's counter rows names the primary key: with
-- the windows' OR on a small table the optimizer chose idx_counters_start
-- (window_start), scanning and locking EVERY user's row of those windows, so
-- one user's reserve waited for another's (bench: 4 users at 256 each ran
-- no faster than one user at 1,024).
--
-- Lock order now: a generation's own rows (flight, reservation, entry)
-- before the user's cache_usage row, before the user's counter rows.  The
-- careful reserve path still locks counters before it takes the flight; an
-- identical request racing it may deadlock, and the loser is retried (1213),
-- as is a settle racing the expiry of the same reservation.

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
  DECLARE v_have INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  -- plain reads, nothing locked: the limits (the counters are what is
  -- decided under lock), and whether an identical miss is calling
  SELECT IF(o.tokens_per_day IS NULL, p.tokens_per_day, NULLIF(o.tokens_per_day, -1)),
         IF(o.tokens_per_month IS NULL, p.tokens_per_month, NULLIF(o.tokens_per_month, -1)),
         IF(o.calls_per_hour IS NULL, p.calls_per_hour, NULLIF(o.calls_per_hour, -1)),
         u.plan, p.max_inflight,
         GREATEST(COALESCE((SELECT tokens FROM task_estimates WHERE task = p_task),
                           (SELECT tokens FROM task_estimates WHERE task = 'default'), 1500),
                  COALESCE(p_min, 0)),
         (SELECT f.expires_at >= p_now FROM generate_flights f WHERE f.flight_key = p_flight),
         EXISTS (SELECT 1 FROM quota_reservations r
                  WHERE r.user_id = u.id AND r.state = 'active' AND r.expires_at <= p_now),
         (d.user_id IS NOT NULL AND m.user_id IS NOT NULL AND h.user_id IS NOT NULL),
         d.used, d.reserved, m.used, m.reserved, h.calls
    INTO l_day, l_month, l_hour, v_plan, l_inflight, v_est, v_lead, v_stale,
         v_have, d_used, d_res, m_used, m_res, h_calls
    FROM users u JOIN plans p ON p.name = u.plan
    LEFT JOIN quota_overrides o ON o.user_id = u.id AND (o.expires_at IS NULL OR o.expires_at > p_now)
    LEFT JOIN quota_counters d ON d.user_id = u.id AND d.window_kind = 'day' AND d.window_start = p_day
    LEFT JOIN quota_counters m ON m.user_id = u.id AND m.window_kind = 'month' AND m.window_start = p_month
    LEFT JOIN quota_counters h ON h.user_id = u.id AND h.window_kind = 'hour' AND h.window_start = p_hour
   WHERE u.id = p_user;
  IF v_done = 1 THEN
    SELECT 'nouser', 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, '', NULL;
  ELSEIF v_lead = 1 THEN
    -- an identical miss is calling: wait for its answer, reserving nothing
    SELECT 'wait', 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, '', 0;
  ELSE
    SET v_lead = NULL;
    IF v_stale = 0 AND v_have = 1 THEN   -- else straight to the careful path
      -- the fast path: this generation's own rows first (its flight, its
      -- reservation), the user's counter rows last, held only to the commit
      START TRANSACTION;
      IF p_flight IS NOT NULL THEN   -- absent or lapsed at the read above
        INSERT INTO generate_flights (flight_key, owner, started_at, expires_at)
          VALUES (p_flight, p_owner, p_now, p_now + p_hold)
          ON DUPLICATE KEY UPDATE
            owner = IF(expires_at < VALUES(started_at), VALUES(owner), owner),
            started_at = IF(expires_at < VALUES(started_at), VALUES(started_at), started_at),
            expires_at = IF(expires_at < VALUES(started_at), VALUES(expires_at), expires_at);
        SET v_lead = ROW_COUNT() > 0;
      END IF;
      IF v_lead = 0 THEN
        -- lost the race for the flight: give everything back and wait
        ROLLBACK;
        SELECT 'wait', 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, '', 0;
      ELSE
        INSERT INTO quota_reservations (id, user_id, task, estimate, day_start, month_start,
                                        hour_start, created_at, expires_at)
          VALUES (p_id, p_user, p_task, v_est, p_day, p_month, p_hour, p_now, p_expires);
        -- every window admits in one conditional UPDATE
        UPDATE quota_counters FORCE INDEX (PRIMARY)
           SET reserved = reserved + IF(window_kind = 'hour', 0, v_est), calls = calls + 1
         WHERE user_id = p_user
           AND ((window_kind = 'day' AND window_start = p_day)
             OR (window_kind = 'month' AND window_start = p_month)
             OR (window_kind = 'hour' AND window_start = p_hour))
           AND CASE window_kind
                 WHEN 'day' THEN l_day IS NULL OR used + reserved + v_est <= l_day
                 WHEN 'month' THEN l_month IS NULL OR used + reserved + v_est <= l_month
                 ELSE l_hour IS NULL OR calls + 1 <= l_hour END;
        SET v_rows = ROW_COUNT();
        -- the plan's cap of generations in flight, counted under the day row
        -- (this reservation included)
        IF v_rows = 3 AND p_gen = 1 AND l_inflight IS NOT NULL THEN
          SELECT COUNT(*) INTO v_inflight FROM quota_reservations
           WHERE user_id = p_user AND state = 'active' AND expires_at > p_now;
          IF v_inflight > l_inflight THEN SET v_rows = 0; END IF;
        END IF;
        IF v_rows = 3 THEN
          COMMIT;
          SELECT 'ok', v_est, d_used, d_res + v_est, m_used, m_res + v_est, h_calls + 1,
                 l_day, l_month, l_hour, 0, 0, 0, v_plan, v_lead;
        END IF;
      END IF;
    END IF;
    IF v_stale = 0 AND v_have = 1 AND (v_lead = 0 OR v_rows = 3) THEN
      DO 0;   -- answered above
    ELSE
    -- the careful path (006's): a window's first use, a limit or the cap
    -- reached, stale reservations: lock, look, decide
    ROLLBACK;
    SET v_lead = NULL, v_inflight = 0;
    START TRANSACTION;
    -- the day row first, alone: every transaction that writes this user's
    -- counters takes it before anything else, so they queue, never cross
    SELECT COUNT(*) INTO v_rows FROM quota_counters FORCE INDEX (PRIMARY)
     WHERE user_id = p_user AND window_kind = 'day' AND window_start = p_day FOR UPDATE;
    -- this user's three current rows, locked in primary-key order
    SELECT COUNT(*), SUM(IF(window_kind = 'day', used, 0)), SUM(IF(window_kind = 'day', reserved, 0)),
           SUM(IF(window_kind = 'month', used, 0)), SUM(IF(window_kind = 'month', reserved, 0)),
           SUM(IF(window_kind = 'hour', calls, 0))
      INTO v_rows, d_used, d_res, m_used, m_res, h_calls
      FROM quota_counters FORCE INDEX (PRIMARY)
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
        FROM quota_counters FORCE INDEX (PRIMARY)
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
        FROM quota_counters FORCE INDEX (PRIMARY)
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
        UPDATE quota_counters FORCE INDEX (PRIMARY)
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
  END IF;
  END;
END;

-- A settle in two steps, so a generation's finish can move its own
-- reservation first and touch the user's counter rows last:
-- qc_settle_mark moves the reservation (only an active one moves, once) and
-- says what the counters owe: o_give tokens back to `reserved`, o_use to
-- `used` (NULL: nothing); qc_counters_settle applies that.
DROP PROCEDURE IF EXISTS qc_settle_mark;
CREATE PROCEDURE qc_settle_mark(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
                                IN p_actual BIGINT, IN p_now BIGINT,
                                OUT o_outcome VARCHAR(16), OUT o_est BIGINT, OUT o_day BIGINT,
                                OUT o_month BIGINT, OUT o_give BIGINT, OUT o_use BIGINT)
BEGIN
  DECLARE v_state VARCHAR(16) DEFAULT NULL;
  DECLARE v_expires BIGINT DEFAULT 0;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  SET o_est = 0, o_day = 0, o_month = 0, o_give = 0, o_use = NULL;
  UPDATE quota_reservations
     SET state = IF(p_actual IS NOT NULL, 'committed', IF(expires_at > p_now, 'released', 'expired')),
         actual = p_actual, settled_at = p_now
   WHERE id = p_id AND user_id = p_user AND state = 'active';
  IF ROW_COUNT() = 1 THEN
    SELECT estimate, day_start, month_start, expires_at INTO o_est, o_day, o_month, v_expires
      FROM quota_reservations WHERE id = p_id;
    SET o_give = o_est, o_use = COALESCE(p_actual, 0),
        o_outcome = IF(v_expires > p_now, 'ok', IF(p_actual IS NULL, 'expired', 'late'));
  ELSE
    SELECT state, estimate, day_start, month_start INTO v_state, o_est, o_day, o_month
      FROM quota_reservations WHERE id = p_id AND user_id = p_user FOR UPDATE;
    IF v_done = 1 THEN
      SET o_outcome = 'notfound';
    ELSEIF v_state = 'expired' AND p_actual IS NOT NULL THEN
      -- the expiry gave the estimate back already: record the truth
      UPDATE quota_reservations SET state = 'committed', actual = p_actual, settled_at = p_now
       WHERE id = p_id;
      SET o_use = p_actual, o_outcome = 'late';
    ELSE
      SET o_outcome = v_state;
    END IF;
  END IF;
END;

DROP PROCEDURE IF EXISTS qc_counters_settle;
CREATE PROCEDURE qc_counters_settle(IN p_user BIGINT UNSIGNED, IN p_day BIGINT, IN p_month BIGINT,
                                    IN p_est BIGINT, IN p_give BIGINT, IN p_use BIGINT)
BEGIN
  IF p_use IS NOT NULL THEN
    UPDATE quota_counters FORCE INDEX (PRIMARY)
       SET reserved = reserved - p_give, used = used + p_use,
           overruns = overruns + IF(p_use > p_est, 1, 0)
     WHERE user_id = p_user
       AND ((window_kind = 'day' AND window_start = p_day)
         OR (window_kind = 'month' AND window_start = p_month));
  END IF;
END;

-- Settle reservation p_id of p_user inside the caller's transaction (same
-- outcomes as 007's: ok, late, expired, notfound, or the state it had).
DROP PROCEDURE IF EXISTS qc_settle_tx;
CREATE PROCEDURE qc_settle_tx(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
                              IN p_actual BIGINT, IN p_now BIGINT,
                              OUT o_outcome VARCHAR(16), OUT o_est BIGINT, OUT o_actual BIGINT)
BEGIN
  DECLARE v_day, v_month, v_give, v_use BIGINT;
  CALL qc_settle_mark(p_id, p_user, p_actual, p_now, o_outcome, o_est, v_day, v_month, v_give, v_use);
  CALL qc_counters_settle(p_user, v_day, v_month, o_est, v_give, v_use);
  SET o_actual = IF(o_outcome IN ('ok', 'late'), p_actual, NULL);
END;

-- 002's qc_settle_locked (the expiry's settle), with the index hint: the
-- windows' OR made the optimizer pick idx_counters_start on a small table,
-- scanning (and locking) every user's row of those windows
DROP PROCEDURE IF EXISTS qc_settle_locked;
CREATE PROCEDURE qc_settle_locked(IN p_id CHAR(32) CHARACTER SET ascii, IN p_actual BIGINT,
                                  IN p_state VARCHAR(16), IN p_now BIGINT)
BEGIN
  DECLARE v_user BIGINT UNSIGNED;
  DECLARE v_est, v_day, v_month BIGINT;
  SELECT user_id, estimate, day_start, month_start INTO v_user, v_est, v_day, v_month
    FROM quota_reservations WHERE id = p_id;
  UPDATE quota_counters FORCE INDEX (PRIMARY)
     SET reserved = reserved - v_est,
         used = used + COALESCE(p_actual, 0),
         overruns = overruns + IF(COALESCE(p_actual, 0) > v_est, 1, 0)
   WHERE user_id = v_user
     AND ((window_kind = 'day' AND window_start = v_day)
       OR (window_kind = 'month' AND window_start = v_month));
  UPDATE quota_reservations SET state = p_state, actual = p_actual, settled_at = p_now
   WHERE id = p_id;
END;

DROP PROCEDURE IF EXISTS qc_cache_store_tx;
CREATE PROCEDURE qc_cache_store_tx(IN p_user BIGINT UNSIGNED, IN p_type VARCHAR(16),
    IN p_key VARBINARY(255), IN p_value MEDIUMBLOB, IN p_is_json INT,
    IN p_meta LONGTEXT, IN p_ttl BIGINT, IN p_now BIGINT, IN p_cap BIGINT,
    IN p_gen_tokens BIGINT, IN p_gen_cost BIGINT, IN p_region VARCHAR(16),
    OUT o_outcome VARCHAR(8), OUT o_expires BIGINT, OUT o_bytes BIGINT)
BEGIN
  DECLARE v_ttl BIGINT DEFAULT NULL;
  DECLARE v_plan_ttl BIGINT DEFAULT NULL;
  DECLARE v_bytes BIGINT DEFAULT NULL;
  DECLARE v_old, v_old_n, v_gone, v_gone_n BIGINT DEFAULT 0;
  DECLARE v_size BIGINT;
  DECLARE v_exp DATETIME DEFAULT NULL;
  DECLARE v_adaptive, v_cold_pct, v_max_pct INT DEFAULT 0;
  DECLARE v_adapt_ttl BIGINT DEFAULT NULL;
  DECLARE v_adapt_until DATETIME DEFAULT NULL;
  DECLARE v_evict INT DEFAULT 0;
  DECLARE v_dup INT DEFAULT 0;
  DECLARE v_freed, v_freed_n BIGINT DEFAULT 0;
  -- the system tier is shared by every region
  DECLARE v_region VARCHAR(16) DEFAULT IF(p_user = 0, '', COALESCE(p_region, ''));

  SET v_size = LENGTH(p_value) + COALESCE(LENGTH(p_meta), 0), o_expires = NULL, o_bytes = 0;
  IF p_user = 0 THEN
    SET v_ttl = p_ttl;
  ELSE
    SELECT IF(p_type = 'content', p.content_ttl_seconds, p.session_ttl_seconds),
           p.ttl_adaptive, p.ttl_cold_pct, p.ttl_max_pct, p.cache_full_policy = 'evict_lowest_value'
      INTO v_plan_ttl, v_adaptive, v_cold_pct, v_max_pct, v_evict
      FROM users u JOIN plans p ON p.name = u.plan WHERE u.id = p_user;
    SET v_ttl = IF(p_ttl IS NULL, v_plan_ttl, LEAST(p_ttl, v_plan_ttl));
    -- adaptive TTL (an entry stored without a TTL of its own): it starts
    -- with ttl_cold_pct of the plan's TTL; each hit gives it the plan's TTL
    -- from the hit, never past ttl_max_pct of it from its creation
    IF p_ttl IS NULL AND v_adaptive = 1 AND v_plan_ttl IS NOT NULL THEN
      SET v_ttl = GREATEST(1, v_plan_ttl * v_cold_pct DIV 100),
          v_adapt_ttl = v_plan_ttl,
          v_adapt_until = FROM_UNIXTIME(p_now + v_plan_ttl * v_max_pct DIV 100);
    END IF;
  END IF;
  IF p_user <> 0 AND v_plan_ttl IS NULL THEN
    SET o_outcome = 'plan';
  ELSE
    IF v_ttl IS NOT NULL THEN SET v_exp = FROM_UNIXTIME(p_now + v_ttl); END IF;
    -- the fast path, for a new key (a miss's answer, a first PUT): the
    -- entry is written, then the user's usage row admits it under the cap
    -- in one conditional UPDATE (own rows first, the hot row last).  A key
    -- that exists (an expired entry, a replacing PUT) fails the INSERT,
    -- which writes nothing (a failed statement leaves no row event, unlike
    -- a rolled-back savepoint, which Galera's appliers replayed: 1062), and
    -- the careful path runs; an entry the cap refuses is deleted again.
    BEGIN
      DECLARE CONTINUE HANDLER FOR 1062 SET v_dup = 1;
      INSERT INTO ai_cache (cache_key, cache_type, user_id, value, value_is_json, metadata,
                            created_at, expires_at, access_count, last_accessed_at, size_bytes,
                            gen_tokens, gen_cost_micro, adapt_ttl, adapt_until, region)
        VALUES (p_key, p_type, p_user, p_value, p_is_json, p_meta, FROM_UNIXTIME(p_now), v_exp,
                0, NULL, v_size, p_gen_tokens, p_gen_cost, v_adapt_ttl, v_adapt_until, v_region);
    END;
    IF v_dup = 0 THEN
      UPDATE cache_usage SET bytes = bytes + v_size, entries = entries + 1
       WHERE user_id = p_user AND (p_user = 0 OR bytes + v_size <= p_cap);
      IF ROW_COUNT() = 0 THEN
        DELETE FROM ai_cache WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user
           AND region = v_region;
        SET v_dup = 1;   -- the careful path decides (a first store, the cap)
      END IF;
    END IF;
    IF v_dup = 0 THEN
      SET o_outcome = 'stored', o_expires = UNIX_TIMESTAMP(v_exp), o_bytes = NULL;
    ELSE
    -- the careful path: a key that exists, a first store, the cap in the way
    SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) INTO v_old, v_old_n FROM ai_cache
     WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user AND region = v_region FOR UPDATE;
    -- the user's usage row (created at its first store)
    SELECT bytes INTO v_bytes FROM cache_usage WHERE user_id = p_user FOR UPDATE;
    IF v_bytes IS NULL THEN
      INSERT IGNORE INTO cache_usage (user_id) VALUES (p_user);
      SELECT bytes INTO v_bytes FROM cache_usage WHERE user_id = p_user FOR UPDATE;
    END IF;
    -- expired entries of this user leave when they stand in the way of the
    -- cap (else the hourly qc_cache_cleanup takes them)
    IF p_user <> 0 AND v_bytes - v_old + v_size > p_cap THEN
      SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) INTO v_gone, v_gone_n FROM ai_cache
       WHERE user_id = p_user AND expires_at <= FROM_UNIXTIME(p_now)
         AND NOT (cache_key = p_key AND cache_type = p_type AND region = v_region) FOR UPDATE;
      IF v_gone_n > 0 THEN
        DELETE FROM ai_cache WHERE user_id = p_user AND expires_at <= FROM_UNIXTIME(p_now)
           AND NOT (cache_key = p_key AND cache_type = p_type AND region = v_region);
      END IF;
    END IF;
    -- over the cap under evict_lowest_value: the user's other live entries
    -- leave, lowest value per byte first (what their generation cost, times
    -- one more than their hits, per byte; then least recently used), until
    -- the new one fits.  An entry larger than the cap evicts nothing.
    IF p_user <> 0 AND v_evict = 1 AND v_size <= p_cap
       AND v_bytes - v_gone - v_old + v_size > p_cap THEN
      BEGIN
        DECLARE v_done INT DEFAULT 0;
        DECLARE c_id, c_size BIGINT;
        DECLARE cur CURSOR FOR
          SELECT id, size_bytes FROM ai_cache
           WHERE user_id = p_user AND NOT (cache_key = p_key AND cache_type = p_type AND region = v_region)
           ORDER BY (gen_cost_micro + 1) * (access_count + 1) / CAST(GREATEST(size_bytes, 1) AS DOUBLE),
                    COALESCE(last_accessed_at, created_at), id
             FOR UPDATE;
        DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
        OPEN cur;
        evict: LOOP
          IF v_bytes - v_gone - v_old - v_freed + v_size <= p_cap THEN LEAVE evict; END IF;
          FETCH cur INTO c_id, c_size;
          IF v_done = 1 THEN LEAVE evict; END IF;
          DELETE FROM ai_cache WHERE id = c_id;
          SET v_freed = v_freed + c_size, v_freed_n = v_freed_n + 1;
        END LOOP;
        CLOSE cur;
      END;
      SET v_gone = v_gone + v_freed, v_gone_n = v_gone_n + v_freed_n;
      UPDATE cache_usage SET evicted = evicted + v_freed_n WHERE user_id = p_user;
    END IF;
    IF p_user <> 0 AND v_bytes - v_gone - v_old + v_size > p_cap THEN
      UPDATE cache_usage SET bytes = bytes - v_gone, entries = entries - v_gone_n WHERE user_id = p_user;
      SET o_outcome = 'full', o_bytes = v_bytes - v_gone;
    ELSE
      INSERT INTO ai_cache (cache_key, cache_type, user_id, value, value_is_json, metadata,
                            created_at, expires_at, access_count, last_accessed_at, size_bytes,
                            gen_tokens, gen_cost_micro, adapt_ttl, adapt_until, region)
        VALUES (p_key, p_type, p_user, p_value, p_is_json, p_meta, FROM_UNIXTIME(p_now), v_exp,
                0, NULL, v_size, p_gen_tokens, p_gen_cost, v_adapt_ttl, v_adapt_until, v_region)
        ON DUPLICATE KEY UPDATE value = VALUES(value), value_is_json = VALUES(value_is_json),
          metadata = VALUES(metadata), created_at = VALUES(created_at),
          expires_at = VALUES(expires_at), access_count = 0, last_accessed_at = NULL,
          size_bytes = VALUES(size_bytes), gen_tokens = VALUES(gen_tokens),
          gen_cost_micro = VALUES(gen_cost_micro), adapt_ttl = VALUES(adapt_ttl),
          adapt_until = VALUES(adapt_until);
      UPDATE cache_usage SET bytes = bytes - v_gone - v_old + v_size,
                             entries = entries - v_gone_n - v_old_n + 1
       WHERE user_id = p_user;
      SET o_outcome = 'stored', o_expires = UNIX_TIMESTAMP(v_exp), o_bytes = v_bytes - v_gone - v_old + v_size;
    END IF;
    END IF;
  END IF;
END;

DROP PROCEDURE IF EXISTS qc_finish_generation;
CREATE PROCEDURE qc_finish_generation(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
    IN p_now BIGINT, IN p_prompt_tokens BIGINT, IN p_completion_tokens BIGINT, IN p_cost BIGINT,
    IN p_store INT, IN p_type VARCHAR(16), IN p_key VARBINARY(255), IN p_value MEDIUMBLOB,
    IN p_meta LONGTEXT, IN p_cap BIGINT,
    IN p_plan VARCHAR(32), IN p_task VARCHAR(64), IN p_model VARCHAR(64), IN p_latency INT,
    IN p_estimated INT,
    IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii,
    IN p_outcome VARCHAR(16), IN p_api VARCHAR(16), IN p_streamed INT,
    IN p_experiment INT UNSIGNED, IN p_arm VARCHAR(16), IN p_region VARCHAR(16))
BEGIN
  DECLARE v_settle VARCHAR(16);
  DECLARE v_store VARCHAR(8) DEFAULT 'skipped';
  DECLARE v_est, v_exp, v_bytes, v_day, v_month, v_give, v_use BIGINT;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  -- this generation's own rows first: its reservation moves, its flight
  -- ends; then the user's cache_usage row (the store takes it last); the
  -- user's counter rows last of all
  CALL qc_settle_mark(p_id, p_user, p_prompt_tokens + p_completion_tokens, p_now,
                      v_settle, v_est, v_day, v_month, v_give, v_use);
  IF p_flight IS NOT NULL THEN
    DELETE FROM generate_flights WHERE flight_key = p_flight AND owner = p_owner;
  END IF;
  IF p_store = 1 THEN
    CALL qc_cache_store_tx(p_user, p_type, p_key, p_value, 0, p_meta, NULL, p_now, p_cap,
                           p_prompt_tokens + p_completion_tokens, p_cost, p_region, v_store, v_exp, v_bytes);
  END IF;
  INSERT INTO usage_events (user_id, plan, task, model, prompt_tokens, completion_tokens, cost_micro,
                            saved_tokens, saved_micro, cached, outcome, latency_ms, created_at, estimated,
                            api, streamed, cache_type, stored, experiment_id, arm)
    VALUES (p_user, p_plan, p_task, p_model, p_prompt_tokens, p_completion_tokens, p_cost,
            0, 0, 0, p_outcome, p_latency, p_now, p_estimated, p_api, p_streamed,
            IF(p_outcome = 'ok', p_type, NULL), v_store = 'stored', p_experiment, p_arm);
  CALL qc_counters_settle(p_user, v_day, v_month, v_est, v_give, v_use);
  COMMIT;
  SELECT v_settle, v_store, LAST_INSERT_ID();
END;
