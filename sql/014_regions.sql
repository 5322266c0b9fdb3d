-- 014: regional partitioning (SPEC §13, issue 14).
--
-- A worker has a region (the `region` setting, '' = none); the user tiers'
-- entries carry the region of the worker that stored them and are served only
-- to workers of that region (the region is part of the unique key; a flight is
-- per region too).  The system tier (user 0) is region '' and shared by every
-- region.  ai_cache is partitioned by KEY(region), so a worker's lookups read
-- one partition; every unique key of a partitioned table holds the
-- partitioning column, hence the primary key (id, region).  The per-user byte
-- cap (cache_usage) spans the user's regions.  cache_stats gains the region of
-- the worker that counted the hit or miss, so the statistics split by region.
ALTER TABLE ai_cache
  ADD COLUMN IF NOT EXISTS region VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '';
ALTER TABLE ai_cache
  DROP PRIMARY KEY, ADD PRIMARY KEY (id, region),
  DROP INDEX uq_ai_cache_key_type_user, ADD UNIQUE KEY uq_ai_cache_key_type_user (cache_key, cache_type, user_id, region);
ALTER TABLE ai_cache PARTITION BY KEY (region) PARTITIONS 4;

ALTER TABLE cache_stats
  ADD COLUMN IF NOT EXISTS region VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '';
ALTER TABLE cache_stats DROP PRIMARY KEY, ADD PRIMARY KEY (bucket, user_id, cache_type, plan, region);

DROP PROCEDURE IF EXISTS qc_cache_store_tx;
CREATE PROCEDURE qc_cache_store_tx(IN p_user BIGINT UNSIGNED, IN p_type VARCHAR(16),
    IN p_key VARBINARY(255), IN p_value MEDIUMBLOB, IN p_is_json INT,
    IN p_meta LONGTEXT, IN p_ttl BIGINT, IN p_now BIGINT, IN p_cap BIGINT,
    IN p_gen_tokens BIGINT, IN p_gen_cost BIGINT, IN p_region VARCHAR(16),
    OUT o_outcome VARCHAR(8), OUT o_expires BIGINT, OUT o_bytes BIGINT)
BEGIN
  DECLARE v_ttl BIGINT DEFAULT NULL;
  DECLARE v_plan_ttl BIGINT DEFAULT NULL;
  DECLARE v_bytes, v_entries BIGINT DEFAULT 0;
  DECLARE v_old, v_old_n, v_gone, v_gone_n BIGINT DEFAULT 0;
  DECLARE v_size BIGINT;
  DECLARE v_exp DATETIME DEFAULT NULL;
  DECLARE v_adaptive, v_cold_pct, v_max_pct INT DEFAULT 0;
  DECLARE v_adapt_ttl BIGINT DEFAULT NULL;
  DECLARE v_adapt_until DATETIME DEFAULT NULL;
  DECLARE v_evict INT DEFAULT 0;
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
     WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user AND region = v_region FOR UPDATE;
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
END;

DROP PROCEDURE IF EXISTS qc_cache_put;
CREATE PROCEDURE qc_cache_put(IN p_user BIGINT UNSIGNED, IN p_type VARCHAR(16),
    IN p_key VARBINARY(255), IN p_value MEDIUMBLOB, IN p_is_json INT,
    IN p_meta LONGTEXT, IN p_ttl BIGINT, IN p_now BIGINT, IN p_cap BIGINT, IN p_region VARCHAR(16))
BEGIN
  DECLARE v_outcome VARCHAR(8);
  DECLARE v_exp, v_bytes BIGINT;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  CALL qc_cache_store_tx(p_user, p_type, p_key, p_value, p_is_json, p_meta, p_ttl, p_now, p_cap,
                         0, 0, p_region, v_outcome, v_exp, v_bytes);
  COMMIT;
  SELECT v_outcome, v_exp, v_bytes;
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
  DECLARE v_est, v_actual, v_exp, v_bytes BIGINT;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  CALL qc_settle_tx(p_id, p_user, p_prompt_tokens + p_completion_tokens, p_now, v_settle, v_est, v_actual);
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
  IF p_flight IS NOT NULL THEN
    DELETE FROM generate_flights WHERE flight_key = p_flight AND owner = p_owner;
  END IF;
  COMMIT;
  SELECT v_settle, v_store, LAST_INSERT_ID();
END;

DROP PROCEDURE IF EXISTS qc_cache_delete;
CREATE PROCEDURE qc_cache_delete(IN p_user BIGINT UNSIGNED, IN p_type VARCHAR(16),
                                 IN p_key VARBINARY(255), IN p_region VARCHAR(16))
BEGIN
  DECLARE v_bytes, v_entries, v_size, v_n BIGINT DEFAULT 0;
  DECLARE v_region VARCHAR(16) DEFAULT IF(p_user = 0, '', COALESCE(p_region, ''));
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
  START TRANSACTION;
  CALL qc_lock_usage(p_user, v_bytes, v_entries);
  SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) INTO v_size, v_n FROM ai_cache
   WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user AND region = v_region FOR UPDATE;
  DELETE FROM ai_cache WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user AND region = v_region;
  UPDATE cache_usage SET bytes = bytes - v_size, entries = entries - v_n WHERE user_id = p_user;
  COMMIT;
  SELECT v_n;
END;
