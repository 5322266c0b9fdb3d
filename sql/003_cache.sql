-- 003: the three-tier cache (SPEC §4) and its statistics.
--
-- Keys are VARBINARY: compared byte for byte (A/a, é/e, ss/ß, "key"/"key "
-- are different keys).  user_id 0 is the shared system tier.  Times are UTC
-- DATETIMEs (each connection runs with time_zone '+00:00'); callers pass the
-- clock in so tests can set it.  cache_usage keeps each user's stored bytes
-- so the per-user cap is checked in the same transaction as the write.
-- Every writer locks the user's cache_usage row first (SELECT ... FOR
-- UPDATE, inserted only when missing: an INSERT IGNORE on an existing row
-- takes a shared lock whose upgrade deadlocked concurrent writers).

CREATE TABLE IF NOT EXISTS ai_cache (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  cache_key        VARBINARY(255) NOT NULL,
  cache_type       ENUM('system','session','content','extraction') NOT NULL,
  user_id          BIGINT UNSIGNED NOT NULL,
  value            MEDIUMBLOB NOT NULL,          -- bytes as given (text or JSON)
  value_is_json    TINYINT NOT NULL DEFAULT 0,   -- 1: value holds a JSON document
  metadata         LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL CHECK (metadata IS NULL OR JSON_VALID(metadata)),
  created_at       DATETIME NOT NULL,
  expires_at       DATETIME NULL,                -- NULL = never
  access_count     BIGINT NOT NULL DEFAULT 0,
  last_accessed_at DATETIME NULL,
  size_bytes       BIGINT NOT NULL,
  UNIQUE KEY uq_ai_cache_key_type_user (cache_key, cache_type, user_id),
  KEY idx_ai_cache_key_type (cache_key, cache_type),
  KEY idx_ai_cache_user_expires (user_id, expires_at),
  KEY idx_ai_cache_expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS cache_usage (
  user_id  BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  bytes    BIGINT NOT NULL DEFAULT 0,
  entries  BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB;

-- hits and misses per hour bucket x user x tier x plan, with the dollars
-- saved in micro-dollars (exact integers); workers add to it in one
-- statement at most every second.
CREATE TABLE IF NOT EXISTS cache_stats (
  bucket       BIGINT NOT NULL,                 -- epoch of the hour
  user_id      BIGINT UNSIGNED NOT NULL,
  cache_type   ENUM('system','session','content','extraction') NOT NULL,
  plan         VARCHAR(32) NOT NULL,
  hits         BIGINT NOT NULL DEFAULT 0,
  misses       BIGINT NOT NULL DEFAULT 0,
  saved_micro  BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket, user_id, cache_type, plan),
  KEY idx_cache_stats_user (user_id, bucket)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Lock (or create) a user's cache_usage row.
DROP PROCEDURE IF EXISTS qc_lock_usage;
CREATE PROCEDURE qc_lock_usage(IN p_user BIGINT UNSIGNED, OUT o_bytes BIGINT, OUT o_entries BIGINT)
BEGIN
  DECLARE v_found INT DEFAULT 1;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_found = 0;
  SELECT bytes, entries INTO o_bytes, o_entries FROM cache_usage WHERE user_id = p_user FOR UPDATE;
  IF v_found = 0 THEN
    INSERT IGNORE INTO cache_usage (user_id) VALUES (p_user);
    SET v_found = 1;
    SELECT bytes, entries INTO o_bytes, o_entries FROM cache_usage WHERE user_id = p_user FOR UPDATE;
  END IF;
END;

-- qc_cache_put: defined in 007_billing.sql (it gained the generation's own saving columns).

-- Delete one entry of a user (or of the system tier, user 0).  Answers the
-- number of rows deleted.
DROP PROCEDURE IF EXISTS qc_cache_delete;
CREATE PROCEDURE qc_cache_delete(IN p_user BIGINT UNSIGNED, IN p_type VARCHAR(16),
                                 IN p_key VARBINARY(255))
BEGIN
  DECLARE v_bytes, v_entries, v_size, v_n BIGINT DEFAULT 0;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
  START TRANSACTION;
  CALL qc_lock_usage(p_user, v_bytes, v_entries);
  SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) INTO v_size, v_n FROM ai_cache
   WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user FOR UPDATE;
  DELETE FROM ai_cache WHERE cache_key = p_key AND cache_type = p_type AND user_id = p_user;
  UPDATE cache_usage SET bytes = bytes - v_size, entries = entries - v_n WHERE user_id = p_user;
  COMMIT;
  SELECT v_n;
END;

-- qc_cache_remove: defined in 007_billing.sql (rolls back on any error).

DROP EVENT IF EXISTS qc_cache_cleanup;
CREATE EVENT qc_cache_cleanup ON SCHEDULE EVERY 1 HOUR
  DO CALL qc_cache_remove(NULL, 0, UNIX_TIMESTAMP());
