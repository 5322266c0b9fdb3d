-- 001: users, API keys and plans (SPEC §2).  InnoDB, every table has a
-- primary key (Galera).  Times are UTC (each connection sets time_zone).

CREATE TABLE IF NOT EXISTS plans (
  name                VARCHAR(32)  NOT NULL PRIMARY KEY,
  display_name        VARCHAR(64)  NOT NULL,
  tokens_per_day      BIGINT       NULL,      -- NULL = unlimited
  tokens_per_month    BIGINT       NULL,
  calls_per_hour      BIGINT       NULL,
  session_ttl_seconds INT          NULL,      -- NULL = no caching
  content_ttl_seconds INT          NULL,
  sort_order          INT          NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT IGNORE INTO plans
  (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,
   session_ttl_seconds, content_ttl_seconds, sort_order) VALUES
  ('freemium',    'Freemium',        10000,     100000,   100, NULL,  NULL,  1),
  ('payg',        'Pay as you go',   50000,     500000,   500, 1800,  3600,  2),
  ('pro_monthly', 'Pro (monthly)', 1000000,   30000000,  5000, 1800,  3600,  3),
  ('pro_annual',  'Pro (annual)',  2000000,   60000000, 10000, 3600,  7200,  4),
  ('enterprise',  'Enterprise',       NULL,       NULL,  NULL, 7200, 14400,  5);

CREATE TABLE IF NOT EXISTS users (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email       VARCHAR(254) NOT NULL,
  plan        VARCHAR(32)  NOT NULL,
  role        ENUM('user','admin') NOT NULL DEFAULT 'user',
  created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE KEY uq_users_email (email),
  CONSTRAINT fk_users_plan FOREIGN KEY (plan) REFERENCES plans (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS api_keys (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id     BIGINT UNSIGNED NOT NULL,
  key_hash    CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  key_prefix  VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  revoked_at  DATETIME     NULL,
  UNIQUE KEY uq_api_keys_hash (key_hash),
  KEY idx_api_keys_user (user_id),
  CONSTRAINT fk_api_keys_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
