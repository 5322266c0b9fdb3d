-- 008: the OpenAI-compatible endpoint and streaming (SPEC §10).
--
-- usage_events says which API a call came through and whether the client
-- streamed it; 'partial' is a stream the upstream broke mid-way, billed for
-- what was streamed and never cached.  qc_finish_generation takes the store
-- decision, the outcome, the api and the streamed flag.
ALTER TABLE usage_events
  ADD COLUMN IF NOT EXISTS api ENUM('generate','openai') NOT NULL DEFAULT 'generate' AFTER estimated,
  ADD COLUMN IF NOT EXISTS streamed TINYINT NOT NULL DEFAULT 0 AFTER api,
  MODIFY outcome ENUM('ok','cached','quota','upstream_error','timeout','error','partial') NOT NULL;

DROP PROCEDURE IF EXISTS qc_finish_generation;
CREATE PROCEDURE qc_finish_generation(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
    IN p_now BIGINT, IN p_prompt_tokens BIGINT, IN p_completion_tokens BIGINT, IN p_cost BIGINT,
    IN p_store INT, IN p_type VARCHAR(16), IN p_key VARBINARY(255), IN p_value MEDIUMBLOB,
    IN p_meta LONGTEXT, IN p_cap BIGINT,
    IN p_plan VARCHAR(32), IN p_task VARCHAR(64), IN p_model VARCHAR(64), IN p_latency INT,
    IN p_estimated INT,
    IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii,
    IN p_outcome VARCHAR(16), IN p_api VARCHAR(16), IN p_streamed INT)
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
                            saved_tokens, saved_micro, cached, outcome, latency_ms, created_at, estimated,
                            api, streamed)
    VALUES (p_user, p_plan, p_task, p_model, p_prompt_tokens, p_completion_tokens, p_cost,
            0, 0, 0, p_outcome, p_latency, p_now, p_estimated, p_api, p_streamed);
  IF p_flight IS NOT NULL THEN
    DELETE FROM generate_flights WHERE flight_key = p_flight AND owner = p_owner;
  END IF;
  COMMIT;
  SELECT v_settle, v_store, LAST_INSERT_ID();
END;
