-- 007: billing that cannot be lost or forged (SPEC §11).
--
-- * A generation's answer is stored, its reservation settled with the actual
--   tokens, its flight row dropped and its billed usage_events row written
--   in ONE transaction (qc_finish_generation): an answer in the cache was
--   always billed.
-- * What a cache hit saves comes from ai_cache.gen_tokens / gen_cost_micro,
--   written only by qc_finish_generation; a user's PUT writes 0 there (and
--   the metadata a user can write feeds nothing).
-- * A commit that arrives after its reservation expired still records the
--   actual tokens (the truth is recorded, SPEC §3).
-- * Every procedure that opens a transaction rolls it back on any error.
--
-- Lock order, for every writer of a user's rows (extends 002's rules):
--   1. the user's CURRENT day counter row (the day of p_now), alone: the
--      user's queue;
--   2. the counter rows of the reservation(s) involved (day, then month);
--   3. reservation rows;
--   4. the user's cache_usage row, then ai_cache rows;
--   5. usage_events (insert only), then generate_flights rows.

ALTER TABLE ai_cache
  ADD COLUMN IF NOT EXISTS gen_tokens BIGINT NOT NULL DEFAULT 0 AFTER size_bytes,
  ADD COLUMN IF NOT EXISTS gen_cost_micro BIGINT NOT NULL DEFAULT 0 AFTER gen_tokens;
-- the models a plan may use: NULL = every configured model, else a
-- comma-separated list (each must also be in upstream_prices)
ALTER TABLE plans ADD COLUMN IF NOT EXISTS models VARCHAR(500) NULL AFTER max_inflight;
-- 1: the tokens of this row were estimated from the text (no upstream usage)
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS estimated TINYINT NOT NULL DEFAULT 0 AFTER cached;

-- Expire every active reservation of one user whose time is up, inside the
-- caller's transaction; the caller holds the user's current day row.
DROP PROCEDURE IF EXISTS qc_expire_user_locked;
CREATE PROCEDURE qc_expire_user_locked(IN p_user BIGINT UNSIGNED, IN p_now BIGINT)
BEGIN
  DECLARE v_id CHAR(32) CHARACTER SET ascii DEFAULT NULL;
  DECLARE v_day, v_month, v_n BIGINT DEFAULT 0;
  DECLARE v_state VARCHAR(16) DEFAULT NULL;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  expire_loop: LOOP
    SET v_done = 0, v_id = NULL;
    -- a plain read finds one; its counter rows are locked before it
    SELECT id, day_start, month_start INTO v_id, v_day, v_month FROM quota_reservations
     WHERE user_id = p_user AND state = 'active' AND expires_at <= p_now LIMIT 1;
    IF v_done = 1 OR v_id IS NULL THEN LEAVE expire_loop; END IF;
    SELECT COUNT(*) INTO v_n FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'day' AND window_start = v_day FOR UPDATE;
    SELECT COUNT(*) INTO v_n FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'month' AND window_start = v_month FOR UPDATE;
    SELECT state INTO v_state FROM quota_reservations WHERE id = v_id FOR UPDATE;
    IF v_state = 'active' THEN
      CALL qc_settle_locked(v_id, NULL, 'expired', p_now);
    END IF;
  END LOOP;
END;

-- Settle one user's expired reservations in a transaction of its own (the
-- status read calls it when it sees one; rare).
DROP PROCEDURE IF EXISTS qc_expire_user;
CREATE PROCEDURE qc_expire_user(IN p_user BIGINT UNSIGNED, IN p_now BIGINT)
BEGIN
  DECLARE v_n BIGINT DEFAULT 0;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  SELECT COUNT(*) INTO v_n FROM quota_counters
   WHERE user_id = p_user AND window_kind = 'day' AND window_start = p_now - MOD(p_now, 86400) FOR UPDATE;
  CALL qc_expire_user_locked(p_user, p_now);
  COMMIT;
END;

-- Expire every user's stale reservations (the minutely event, the CLI): one
-- transaction per user, the user's current day row first.
DROP PROCEDURE IF EXISTS qc_expire_all;
CREATE PROCEDURE qc_expire_all(IN p_now BIGINT)
BEGIN
  DECLARE v_user BIGINT UNSIGNED;
  DECLARE v_n BIGINT DEFAULT 0;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  BEGIN
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    user_loop: LOOP
      SET v_done = 0;
      SELECT user_id INTO v_user FROM quota_reservations
       WHERE state = 'active' AND expires_at <= p_now LIMIT 1;
      IF v_done = 1 THEN LEAVE user_loop; END IF;
      START TRANSACTION;
      SELECT COUNT(*) INTO v_n FROM quota_counters
       WHERE user_id = v_user AND window_kind = 'day' AND window_start = p_now - MOD(p_now, 86400)
       FOR UPDATE;
      CALL qc_expire_user_locked(v_user, p_now);
      COMMIT;
    END LOOP;
  END;
END;

-- Settle reservation p_id of p_user inside the caller's transaction: commit
-- (p_actual >= 0) or release (p_actual NULL).  o_outcome:
--   'ok'        settled now;
--   'late'      a commit after the reservation expired: the actual tokens
--               are recorded all the same (the reservation's tokens were
--               already given back by the expiry);
--   'expired'   a release after expiry (nothing to give back);
--   'notfound', 'committed', 'released': nothing changed.
DROP PROCEDURE IF EXISTS qc_settle_tx;
CREATE PROCEDURE qc_settle_tx(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
                              IN p_actual BIGINT, IN p_now BIGINT,
                              OUT o_outcome VARCHAR(16), OUT o_est BIGINT, OUT o_actual BIGINT)
BEGIN
  DECLARE v_state VARCHAR(16) DEFAULT NULL;
  DECLARE v_day, v_month, v_expires, v_n BIGINT DEFAULT 0;
  DECLARE v_done INT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  SET o_est = 0, o_actual = NULL;
  -- 1. the user's current day row; 2. the reservation's counter rows;
  -- 3. the reservation (a plain read first says which windows)
  SELECT COUNT(*) INTO v_n FROM quota_counters
   WHERE user_id = p_user AND window_kind = 'day' AND window_start = p_now - MOD(p_now, 86400) FOR UPDATE;
  SELECT day_start, month_start INTO v_day, v_month
    FROM quota_reservations WHERE id = p_id AND user_id = p_user;
  IF v_done = 1 THEN
    SET o_outcome = 'notfound';
  ELSE
    SELECT COUNT(*) INTO v_n FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'day' AND window_start = v_day FOR UPDATE;
    SELECT COUNT(*) INTO v_n FROM quota_counters
     WHERE user_id = p_user AND window_kind = 'month' AND window_start = v_month FOR UPDATE;
    SELECT state, estimate, expires_at INTO v_state, o_est, v_expires
      FROM quota_reservations WHERE id = p_id AND user_id = p_user FOR UPDATE;
    IF v_state = 'active' AND (p_actual IS NOT NULL OR v_expires > p_now) THEN
      CALL qc_settle_locked(p_id, p_actual, IF(p_actual IS NULL, 'released', 'committed'), p_now);
      SET o_outcome = IF(v_expires <= p_now, 'late', 'ok'), o_actual = p_actual;
    ELSEIF v_state = 'active' THEN
      -- a release past the expiry: settle it as expired
      CALL qc_settle_locked(p_id, NULL, 'expired', p_now);
      SET o_outcome = 'expired';
    ELSEIF v_state = 'expired' AND p_actual IS NOT NULL THEN
      -- the expiry gave the estimate back already: record the truth
      UPDATE quota_counters
         SET used = used + p_actual,
             overruns = overruns + IF(p_actual > o_est, 1, 0)
       WHERE user_id = p_user
         AND ((window_kind = 'day' AND window_start = v_day)
           OR (window_kind = 'month' AND window_start = v_month));
      UPDATE quota_reservations SET state = 'committed', actual = p_actual, settled_at = p_now
       WHERE id = p_id;
      SET o_outcome = 'late', o_actual = p_actual;
    ELSE
      SET o_outcome = v_state;
    END IF;
  END IF;
END;

-- Commit or release in a transaction of its own (POST /quota/commit and
-- /quota/release, failures of a generation).  With p_flight, the same
-- transaction drops the caller's single-flight row.  Answers one row:
-- outcome (see qc_settle_tx), estimate, actual.
DROP PROCEDURE IF EXISTS qc_settle;
CREATE PROCEDURE qc_settle(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
                           IN p_actual BIGINT, IN p_now BIGINT,
                           IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii)
BEGIN
  DECLARE v_outcome VARCHAR(16);
  DECLARE v_est, v_actual BIGINT;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  CALL qc_settle_tx(p_id, p_user, p_actual, p_now, v_outcome, v_est, v_actual);
  IF v_outcome IN ('ok', 'late', 'expired') AND p_flight IS NOT NULL THEN
    DELETE FROM generate_flights WHERE flight_key = p_flight AND owner = p_owner;
  END IF;
  COMMIT;
  SELECT v_outcome, v_est, v_actual;
END;

-- Store an entry inside the caller's transaction.  p_ttl: seconds asked
-- (NULL = the plan's; a caller can only shorten it); the system tier (user
-- 0) keeps p_ttl or never expires.  p_gen_tokens / p_gen_cost: what the
-- generation cost (only qc_finish_generation passes non-zero).
-- o_outcome 'stored' | 'plan' (the plan does not cache) | 'full' (cap).
DROP PROCEDURE IF EXISTS qc_cache_store_tx;
CREATE PROCEDURE qc_cache_store_tx(IN p_user BIGINT UNSIGNED, IN p_type VARCHAR(16),
    IN p_key VARBINARY(255), IN p_value MEDIUMBLOB, IN p_is_json INT,
    IN p_meta LONGTEXT, IN p_ttl BIGINT, IN p_now BIGINT, IN p_cap BIGINT,
    IN p_gen_tokens BIGINT, IN p_gen_cost BIGINT,
    OUT o_outcome VARCHAR(8), OUT o_expires BIGINT, OUT o_bytes BIGINT)
BEGIN
  DECLARE v_ttl BIGINT DEFAULT NULL;
  DECLARE v_plan_ttl BIGINT DEFAULT NULL;
  DECLARE v_bytes, v_entries BIGINT DEFAULT 0;
  DECLARE v_old, v_old_n, v_gone, v_gone_n BIGINT DEFAULT 0;
  DECLARE v_size BIGINT;
  DECLARE v_exp DATETIME DEFAULT NULL;

  SET v_size = LENGTH(p_value) + COALESCE(LENGTH(p_meta), 0), o_expires = NULL, o_bytes = 0;
  IF p_user = 0 THEN
    SET v_ttl = p_ttl;
  ELSE
    SELECT IF(p_type = 'content', p.content_ttl_seconds, p.session_ttl_seconds)
      INTO v_plan_ttl FROM users u JOIN plans p ON p.name = u.plan WHERE u.id = p_user;
    SET v_ttl = IF(p_ttl IS NULL, v_plan_ttl, LEAST(p_ttl, v_plan_ttl));
  END IF;
  IF p_user <> 0 AND v_plan_ttl IS NULL THEN
    SET o_outcome = 'plan';
  ELSE
    IF v_ttl IS NOT NULL THEN SET v_exp = FROM_UNIXTIME(p_now + v_ttl); END IF;
    CALL qc_lock_usage(p_user, v_bytes, v_entries);
    -- expired entries of this user leave first (a plain read decides)
    SELECT COUNT(*) INTO v_gone_n FROM ai_cache
     WHERE user_id = p_user AND expires_at <= FROM_UNIXTIME(p_now);
    IF v_gone_n > 0 THEN
      SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) INTO v_gone, v_gone_n FROM ai_cache
       WHERE user_id = p_user AND expires_at <= FROM_UNIXTIME(p_now) FOR UPDATE;
      DELETE FROM ai_cache WHERE user_id = p_user AND expires_at <= FROM_UNIXTIME(p_now);
    END IF;
    SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) INTO v_old, v_old_n FROM ai_cache
     WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user FOR UPDATE;
    IF p_user <> 0 AND v_bytes - v_gone - v_old + v_size > p_cap THEN
      UPDATE cache_usage SET bytes = bytes - v_gone, entries = entries - v_gone_n WHERE user_id = p_user;
      SET o_outcome = 'full', o_bytes = v_bytes - v_gone;
    ELSE
      INSERT INTO ai_cache (cache_key, cache_type, user_id, value, value_is_json, metadata,
                            created_at, expires_at, access_count, last_accessed_at, size_bytes,
                            gen_tokens, gen_cost_micro)
        VALUES (p_key, p_type, p_user, p_value, p_is_json, p_meta, FROM_UNIXTIME(p_now), v_exp,
                0, NULL, v_size, p_gen_tokens, p_gen_cost)
        ON DUPLICATE KEY UPDATE value = VALUES(value), value_is_json = VALUES(value_is_json),
          metadata = VALUES(metadata), created_at = VALUES(created_at),
          expires_at = VALUES(expires_at), access_count = 0, last_accessed_at = NULL,
          size_bytes = VALUES(size_bytes), gen_tokens = VALUES(gen_tokens),
          gen_cost_micro = VALUES(gen_cost_micro);
      UPDATE cache_usage SET bytes = bytes - v_gone - v_old + v_size,
                             entries = entries - v_gone_n - v_old_n + 1
       WHERE user_id = p_user;
      SET o_outcome = 'stored', o_expires = UNIX_TIMESTAMP(v_exp), o_bytes = v_bytes - v_gone - v_old + v_size;
    END IF;
  END IF;
END;

-- PUT /cache/{tier}/{key} and the system tier: a transaction of its own.
-- Answers one row: outcome, expires_at epoch (NULL = never), the user's
-- stored bytes after the write.  A user's entry saves nothing when hit.
DROP PROCEDURE IF EXISTS qc_cache_put;
CREATE PROCEDURE qc_cache_put(IN p_user BIGINT UNSIGNED, IN p_type VARCHAR(16),
    IN p_key VARBINARY(255), IN p_value MEDIUMBLOB, IN p_is_json INT,
    IN p_meta LONGTEXT, IN p_ttl BIGINT, IN p_now BIGINT, IN p_cap BIGINT)
BEGIN
  DECLARE v_outcome VARCHAR(8);
  DECLARE v_exp, v_bytes BIGINT;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  CALL qc_cache_store_tx(p_user, p_type, p_key, p_value, p_is_json, p_meta, p_ttl, p_now, p_cap,
                         0, 0, v_outcome, v_exp, v_bytes);
  COMMIT;
  SELECT v_outcome, v_exp, v_bytes;
END;

-- The end of a generation that got its answer from the upstream, in ONE
-- transaction: settle the reservation with the actual tokens, store the
-- answer (p_store = 1; with what it cost, for the savings of later hits),
-- write the billed usage_events row, drop the flight row.  Answers one row:
-- settle outcome (qc_settle_tx), cache outcome ('stored'|'plan'|'full'|
-- 'skipped'), the usage_events id.
DROP PROCEDURE IF EXISTS qc_finish_generation;
CREATE PROCEDURE qc_finish_generation(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
    IN p_now BIGINT, IN p_prompt_tokens BIGINT, IN p_completion_tokens BIGINT, IN p_cost BIGINT,
    IN p_store INT, IN p_type VARCHAR(16), IN p_key VARBINARY(255), IN p_value MEDIUMBLOB,
    IN p_meta LONGTEXT, IN p_cap BIGINT,
    IN p_plan VARCHAR(32), IN p_task VARCHAR(64), IN p_model VARCHAR(64), IN p_latency INT,
    IN p_estimated INT,
    IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii)
BEGIN
  DECLARE v_settle VARCHAR(16);
  DECLARE v_store VARCHAR(8) DEFAULT 'skipped';
  DECLARE v_est, v_actual, v_exp, v_bytes BIGINT;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  CALL qc_settle_tx(p_id, p_user, p_prompt_tokens + p_completion_tokens, p_now, v_settle, v_est, v_actual);
  IF p_store = 1 THEN
    CALL qc_cache_store_tx(p_user, p_type, p_key, p_value, 0, p_meta, NULL, p_now, p_cap,
                           p_prompt_tokens + p_completion_tokens, p_cost, v_store, v_exp, v_bytes);
  END IF;
  INSERT INTO usage_events (user_id, plan, task, model, prompt_tokens, completion_tokens, cost_micro,
                            saved_tokens, saved_micro, cached, outcome, latency_ms, created_at, estimated)
    VALUES (p_user, p_plan, p_task, p_model, p_prompt_tokens, p_completion_tokens, p_cost,
            0, 0, 0, 'ok', p_latency, p_now, p_estimated);
  IF p_flight IS NOT NULL THEN
    DELETE FROM generate_flights WHERE flight_key = p_flight AND owner = p_owner;
  END IF;
  COMMIT;
  SELECT v_settle, v_store, LAST_INSERT_ID();
END;

-- Remove entries: expired ones (p_user NULL: every user) or all of one user
-- (p_all = 1).  Keeps cache_usage exact.  Answers the number of rows removed.
DROP PROCEDURE IF EXISTS qc_cache_remove;
CREATE PROCEDURE qc_cache_remove(IN p_user BIGINT UNSIGNED, IN p_all INT, IN p_now BIGINT)
BEGIN
  DECLARE v_user BIGINT UNSIGNED;
  DECLARE v_bytes, v_entries, v_size, v_n, v_total BIGINT DEFAULT 0;
  DECLARE v_done INT DEFAULT 0;
  DECLARE cur CURSOR FOR
    SELECT DISTINCT user_id FROM ai_cache
     WHERE (p_user IS NULL OR user_id = p_user)
       AND (p_all = 1 OR expires_at <= FROM_UNIXTIME(p_now));
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
  BEGIN
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    OPEN cur;
    users_loop: LOOP
      FETCH cur INTO v_user;
      IF v_done = 1 THEN LEAVE users_loop; END IF;
      START TRANSACTION;
      CALL qc_lock_usage(v_user, v_bytes, v_entries);
      SET v_done = 0;
      SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) INTO v_size, v_n FROM ai_cache
       WHERE user_id = v_user AND (p_all = 1 OR expires_at <= FROM_UNIXTIME(p_now)) FOR UPDATE;
      DELETE FROM ai_cache WHERE user_id = v_user AND (p_all = 1 OR expires_at <= FROM_UNIXTIME(p_now));
      UPDATE cache_usage SET bytes = bytes - v_size, entries = entries - v_n WHERE user_id = v_user;
      COMMIT;
      SET v_total = v_total + v_n;
    END LOOP;
    CLOSE cur;
  END;
  SELECT v_total;
END;
