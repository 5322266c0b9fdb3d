-- 016: the admin console's actions (SPEC §14, issue 15).
--
-- users.disabled_at: a disabled user's keys stop authenticating (within the
-- workers' auth_cache_seconds); re-enabling clears it.  api_keys.expires_at:
-- an optional end of a key.  audit_log: every change made through the admin
-- routes or quotacachectl, in the same transaction as the change: who (the
-- admin's email, or "cli:" and the login of whoever ran quotacachectl), what
-- (action and target), when, and the object before and after (JSON).
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled_at DATETIME NULL;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at DATETIME NULL;

CREATE TABLE IF NOT EXISTS audit_log (
  id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  at           BIGINT NOT NULL,                              -- epoch seconds
  actor        VARCHAR(300) NOT NULL,                        -- admin email, or cli:LOGIN
  actor_id     BIGINT UNSIGNED NULL,                         -- the admin's user id (API)
  source       ENUM('api','cli') NOT NULL,
  action       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  target_user  BIGINT UNSIGNED NULL,
  target       VARCHAR(300) NOT NULL DEFAULT '',
  before_json  LONGTEXT NULL CHECK (before_json IS NULL OR JSON_VALID(before_json)),
  after_json   LONGTEXT NULL CHECK (after_json IS NULL OR JSON_VALID(after_json)),
  KEY idx_audit_at (at),
  KEY idx_audit_user (target_user, at),
  KEY idx_audit_action (action, at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
