-- 013: A/B experiments with and without caching (SPEC §13, issue 14).
--
-- An experiment splits users by a hash of (its name, the user id) into a
-- control arm, whose generations neither read nor write the cache, and a
-- treatment arm served as usual.  Admins create it (draft), start it and stop
-- it; at most one runs at a time (the unique running_guard: NULL for every
-- state but 'running').  Every usage_events row written while it runs says
-- the experiment and the arm, so the per-arm figures (requests, hits,
-- latency, billed and saved dollars, upstream calls) are sums over the ledger.
CREATE TABLE IF NOT EXISTS experiments (
  id            INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name          VARCHAR(64) NOT NULL,
  description   VARCHAR(500) NOT NULL DEFAULT '',
  control_pct   TINYINT UNSIGNED NOT NULL DEFAULT 50 CHECK (control_pct BETWEEN 1 AND 99),
  state         ENUM('draft','running','stopped') NOT NULL DEFAULT 'draft',
  created_at    BIGINT NOT NULL,
  started_at    BIGINT NULL,
  stopped_at    BIGINT NULL,
  running_guard TINYINT AS (IF(state = 'running', 1, NULL)) PERSISTENT,
  UNIQUE KEY uq_experiments_name (name),
  UNIQUE KEY uq_experiments_running (running_guard)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

ALTER TABLE usage_events
  ADD COLUMN IF NOT EXISTS experiment_id INT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS arm ENUM('control','treatment') NULL,
  ADD INDEX IF NOT EXISTS idx_usage_experiment (experiment_id, arm);

DROP PROCEDURE IF EXISTS qc_finish_generation;
CREATE PROCEDURE qc_finish_generation(IN p_id CHAR(32) CHARACTER SET ascii, IN p_user BIGINT UNSIGNED,
    IN p_now BIGINT, IN p_prompt_tokens BIGINT, IN p_completion_tokens BIGINT, IN p_cost BIGINT,
    IN p_store INT, IN p_type VARCHAR(16), IN p_key VARBINARY(255), IN p_value MEDIUMBLOB,
    IN p_meta LONGTEXT, IN p_cap BIGINT,
    IN p_plan VARCHAR(32), IN p_task VARCHAR(64), IN p_model VARCHAR(64), IN p_latency INT,
    IN p_estimated INT,
    IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii,
    IN p_outcome VARCHAR(16), IN p_api VARCHAR(16), IN p_streamed INT,
    IN p_experiment INT UNSIGNED, IN p_arm VARCHAR(16))
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
