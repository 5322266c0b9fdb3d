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

-- Store an entry.  p_ttl: seconds asked by the caller (NULL = the plan's);
-- a caller can only shorten the plan TTL.  The system tier (user 0) keeps
-- p_ttl or never expires.  Answers one row: outcome ('stored'|'plan'|'full'),
-- expires_at epoch (NULL = never), the user's stored bytes after the write.
DROP PROCEDURE IF EXISTS qc_cache_put;
CREATE PROCEDURE qc_cache_put(IN p_user BIGINT UNSIGNED, IN p_type VARCHAR(16),
    IN p_key VARBINARY(255), IN p_value MEDIUMBLOB, IN p_is_json INT,
    IN p_meta LONGTEXT, IN p_ttl BIGINT, IN p_now BIGINT, IN p_cap BIGINT)
BEGIN
  DECLARE v_ttl BIGINT DEFAULT NULL;
  DECLARE v_plan_ttl BIGINT DEFAULT NULL;
  DECLARE v_bytes, v_entries BIGINT DEFAULT 0;
  DECLARE v_old, v_old_n, v_gone, v_gone_n BIGINT DEFAULT 0;
  DECLARE v_size BIGINT;
  DECLARE v_exp DATETIME DEFAULT NULL;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;

  SET v_size = LENGTH(p_value) + COALESCE(LENGTH(p_meta), 0);
  IF p_user = 0 THEN
    SET v_ttl = p_ttl;
  ELSE
    SELECT IF(p_type = 'content', p.content_ttl_seconds, p.session_ttl_seconds)
      INTO v_plan_ttl FROM users u JOIN plans p ON p.name = u.plan WHERE u.id = p_user;
    SET v_ttl = IF(p_ttl IS NULL, v_plan_ttl, LEAST(p_ttl, v_plan_ttl));
  END IF;
  IF p_user <> 0 AND v_plan_ttl IS NULL THEN
    SELECT 'plan', NULL, 0;
  ELSE
    IF v_ttl IS NOT NULL THEN SET v_exp = FROM_UNIXTIME(p_now + v_ttl); END IF;
    SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
    START TRANSACTION;
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
      COMMIT;
      SELECT 'full', NULL, v_bytes - v_gone;
    ELSE
      INSERT INTO ai_cache (cache_key, cache_type, user_id, value, value_is_json, metadata,
                            created_at, expires_at, access_count, last_accessed_at, size_bytes)
        VALUES (p_key, p_type, p_user, p_value, p_is_json, p_meta, FROM_UNIXTIME(p_now), v_exp,
                0, NULL, v_size)
        ON DUPLICATE KEY UPDATE value = VALUES(value), value_is_json = VALUES(value_is_json),
          metadata = VALUES(metadata), created_at = VALUES(created_at),
          expires_at = VALUES(expires_at), access_count = 0, last_accessed_at = NULL,
          size_bytes = VALUES(size_bytes);
      UPDATE cache_usage SET bytes = bytes - v_gone - v_old + v_size,
                             entries = entries - v_gone_n - v_old_n + 1
       WHERE user_id = p_user;
      COMMIT;
      SELECT 'stored', UNIX_TIMESTAMP(v_exp), v_bytes - v_gone - v_old + v_size;
    END IF;
  END IF;
END;

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
  SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
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
  SELECT v_total;
END;

DROP EVENT IF EXISTS qc_cache_cleanup;
CREATE EVENT qc_cache_cleanup ON SCHEDULE EVERY 1 HOUR
  DO CALL qc_cache_remove(NULL, 0, UNIX_TIMESTAMP());
