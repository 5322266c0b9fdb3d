-- 010: adaptive TTL (SPEC §13, issue 14).
--
-- Per plan: ttl_adaptive (0 = fixed TTLs, today's behaviour, the default),
-- ttl_cold_pct (an entry starts with this share of the plan's TTL) and
-- ttl_max_pct (no entry lives longer than this share of the plan's TTL after
-- its creation).  A hit gives the entry the plan's TTL counted from the hit,
-- within that bound: entries that are used live longer, entries never hit
-- leave early.  The extension is applied where hits are counted (the
-- workers' batched hit flush, off the request path), from the hit's own time.
-- An entry stored with an explicit ttl_seconds keeps it (adapt_ttl NULL).
ALTER TABLE plans
  ADD COLUMN IF NOT EXISTS ttl_adaptive TINYINT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS ttl_cold_pct SMALLINT NOT NULL DEFAULT 50 CHECK (ttl_cold_pct BETWEEN 1 AND 100),
  ADD COLUMN IF NOT EXISTS ttl_max_pct SMALLINT NOT NULL DEFAULT 400 CHECK (ttl_max_pct BETWEEN 100 AND 10000);
ALTER TABLE ai_cache
  ADD COLUMN IF NOT EXISTS adapt_ttl INT NULL,          -- the plan TTL a hit grants; NULL: fixed
  ADD COLUMN IF NOT EXISTS adapt_until DATETIME NULL;   -- the latest expiry a hit may give

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
  DECLARE v_adaptive, v_cold_pct, v_max_pct INT DEFAULT 0;
  DECLARE v_adapt_ttl BIGINT DEFAULT NULL;
  DECLARE v_adapt_until DATETIME DEFAULT NULL;

  SET v_size = LENGTH(p_value) + COALESCE(LENGTH(p_meta), 0), o_expires = NULL, o_bytes = 0;
  IF p_user = 0 THEN
    SET v_ttl = p_ttl;
  ELSE
    SELECT IF(p_type = 'content', p.content_ttl_seconds, p.session_ttl_seconds),
           p.ttl_adaptive, p.ttl_cold_pct, p.ttl_max_pct
      INTO v_plan_ttl, v_adaptive, v_cold_pct, v_max_pct
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
     WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user FOR UPDATE;
    IF p_user <> 0 AND v_bytes - v_gone - v_old + v_size > p_cap THEN
      UPDATE cache_usage SET bytes = bytes - v_gone, entries = entries - v_gone_n WHERE user_id = p_user;
      SET o_outcome = 'full', o_bytes = v_bytes - v_gone;
    ELSE
      INSERT INTO ai_cache (cache_key, cache_type, user_id, value, value_is_json, metadata,
                            created_at, expires_at, access_count, last_accessed_at, size_bytes,
                            gen_tokens, gen_cost_micro, adapt_ttl, adapt_until)
        VALUES (p_key, p_type, p_user, p_value, p_is_json, p_meta, FROM_UNIXTIME(p_now), v_exp,
                0, NULL, v_size, p_gen_tokens, p_gen_cost, v_adapt_ttl, v_adapt_until)
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
