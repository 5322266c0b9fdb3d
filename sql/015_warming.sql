-- 015: predictive warming (SPEC §13, issue 14).
--
-- Per plan, off unless warm_tokens_per_day > 0:
--   * refresh-ahead: an entry hit at least warm_refresh_hits times in its life
--     is regenerated shortly before it expires (a worker's sweep claims it with
--     ai_cache.warm_claim, a conditional UPDATE, so one worker of one node does
--     it); entries of such plans keep what regenerating needs in their metadata
--     ("regen": prompt, system prompt key, max_tokens);
--   * next-task warming (opt-in: warm_next_pct NOT NULL): a generation may name
--     the user's likely next request; it is generated ahead when the
--     probability of that task following this one, learned from usage_events
--     sequences of the plan, reaches warm_next_pct %.
-- Both spend a warming budget of warm_tokens_per_day per plan and day, held by
-- a warming user of the plan (warming+PLAN@quotacache.invalid, no key) whose
-- daily quota is the budget: the reservation machinery admits a warming call
-- only while used + reserved + its estimate fit, exactly, under concurrency and
-- across nodes.  Its usage_events rows (task 'warm:TASK') are the warming
-- spend, billed to no user; the warmed entry is stored for the user it is for.
ALTER TABLE plans
  ADD COLUMN IF NOT EXISTS warm_tokens_per_day BIGINT NOT NULL DEFAULT 0 CHECK (warm_tokens_per_day >= 0),
  ADD COLUMN IF NOT EXISTS warm_refresh_hits INT NOT NULL DEFAULT 3 CHECK (warm_refresh_hits >= 1),
  ADD COLUMN IF NOT EXISTS warm_next_pct TINYINT NULL CHECK (warm_next_pct BETWEEN 1 AND 100);
ALTER TABLE ai_cache
  ADD COLUMN IF NOT EXISTS warm_claim BIGINT NULL;   -- epoch until which a sweep holds it

-- The warming user of a plan, created on first use, its daily quota kept equal
-- to the plan's warming budget (hours and months unlimited: -1).
DROP PROCEDURE IF EXISTS qc_warming_user;
CREATE PROCEDURE qc_warming_user(IN p_plan VARCHAR(32))
BEGIN
  DECLARE v_id BIGINT UNSIGNED DEFAULT NULL;
  DECLARE v_budget BIGINT DEFAULT NULL;
  DECLARE v_email VARCHAR(254) DEFAULT CONCAT('warming+', p_plan, '@quotacache.invalid');
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_id = v_id;
  SELECT warm_tokens_per_day INTO v_budget FROM plans WHERE name = p_plan;
  IF v_budget IS NOT NULL AND v_budget > 0 THEN
    SELECT id INTO v_id FROM users WHERE email = v_email;
    IF v_id IS NULL THEN
      INSERT IGNORE INTO users (email, plan) VALUES (v_email, p_plan);
      SELECT id INTO v_id FROM users WHERE email = v_email;
    END IF;
    INSERT INTO quota_overrides (user_id, tokens_per_day, tokens_per_month, calls_per_hour, reason)
      VALUES (v_id, v_budget, -1, -1, 'warming budget')
      ON DUPLICATE KEY UPDATE tokens_per_day = IF(tokens_per_day <=> v_budget, tokens_per_day, v_budget);
  END IF;
  SELECT v_id, v_budget;
END;

-- The end of a warming call, in ONE transaction: settle the warming user's
-- reservation (p_user) with the actual tokens, store the answer for the user
-- it is for (p_for, their plan's TTL and cap), and write the warming spend
-- (p_user's usage_events row, task 'warm:TASK').  Answers as
-- qc_finish_generation.
DROP PROCEDURE IF EXISTS qc_finish_warming;
CREATE PROCEDURE qc_finish_warming(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
    IN p_now BIGINT, IN p_prompt_tokens BIGINT, IN p_completion_tokens BIGINT, IN p_cost BIGINT,
    IN p_store INT, IN p_type VARCHAR(16), IN p_key VARBINARY(255), IN p_value MEDIUMBLOB,
    IN p_meta LONGTEXT, IN p_cap BIGINT,
    IN p_plan VARCHAR(32), IN p_task VARCHAR(64), IN p_model VARCHAR(64), IN p_latency INT,
    IN p_estimated INT,
    IN p_region VARCHAR(16), IN p_for BIGINT UNSIGNED)
BEGIN
  DECLARE v_settle VARCHAR(16);
  DECLARE v_store VARCHAR(8) DEFAULT 'skipped';
  DECLARE v_est, v_actual, v_exp, v_bytes BIGINT;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  CALL qc_settle_tx(p_id, p_user, p_prompt_tokens + p_completion_tokens, p_now, v_settle, v_est, v_actual);
  IF p_store = 1 THEN
    CALL qc_cache_store_tx(p_for, p_type, p_key, p_value, 0, p_meta, NULL, p_now, p_cap,
                           p_prompt_tokens + p_completion_tokens, p_cost, p_region, v_store, v_exp, v_bytes);
  END IF;
  INSERT INTO usage_events (user_id, plan, task, model, prompt_tokens, completion_tokens, cost_micro,
                            saved_tokens, saved_micro, cached, outcome, latency_ms, created_at, estimated,
                            cache_type, stored)
    VALUES (p_user, p_plan, CONCAT('warm:', LEFT(p_task, 59)), p_model, p_prompt_tokens, p_completion_tokens,
            p_cost, 0, 0, 0, 'ok', p_latency, p_now, p_estimated, p_type, v_store = 'stored');
  COMMIT;
  SELECT v_settle, v_store, LAST_INSERT_ID();
END;
