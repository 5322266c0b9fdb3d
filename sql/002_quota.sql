-- 002: quota windows, reservations, overrides and task estimates (SPEC §2, §3).
--
-- Why stored procedures: a reservation must check three windows and write a
-- reservation row all-or-nothing, and the hot path may cost one database
-- round trip.  Each procedure below is one short transaction that takes row
-- locks on one user's counter rows only (InnoDB, READ COMMITTED), so it is
-- exact under any number of workers and web nodes, and it holds on Galera:
-- no GET_LOCK, no LOCK TABLES; a certification conflict (1213) aborts the
-- whole transaction, which the client retries (src/db.c).
--
-- Lock order (measured with bench/run.sh; each rule removed deadlocks):
--   1. every writer of a user's counters locks the user's day row first,
--      alone, with a point lookup: it works as the user's queue (range scans
--      over several rows promise no order);
--   2. then the other counter rows, then reservation rows;
--   3. counter rows are locked with SELECT ... FOR UPDATE and inserted only
--      at a window's first use (INSERT IGNORE on an existing row takes a
--      shared lock, and upgrading it deadlocks);
--   4. expired reservations are looked for with a plain read first.
-- CHAR parameters compared with ascii columns are declared ascii: a
-- parameter in the database's utf8mb4 would convert the column and lose
-- its index (a settle scanned the whole reservations table).
-- Times are epoch seconds (UTC) passed in by the caller, so tests can set the
-- clock.  Counter rows are keyed (user, window kind, window start) and kept
-- for history; quotacachectl quota prune removes old ones.

CREATE TABLE IF NOT EXISTS task_estimates (
  task    VARCHAR(64) NOT NULL PRIMARY KEY,
  tokens  BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- 'default' is the estimate of any task not listed
INSERT IGNORE INTO task_estimates (task, tokens) VALUES
  ('extraction', 2000), ('cv_drafting', 4000), ('cover_letter', 2500),
  ('interview_notes', 3000), ('default', 1500);

-- A limit column: NULL = not overridden (the plan's limit applies),
-- -1 = unlimited, otherwise the limit.
CREATE TABLE IF NOT EXISTS quota_overrides (
  user_id          BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  tokens_per_day   BIGINT NULL,
  tokens_per_month BIGINT NULL,
  calls_per_hour   BIGINT NULL,
  expires_at       BIGINT NULL,        -- epoch; NULL = until removed
  reason           VARCHAR(255) NOT NULL DEFAULT '',
  created_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT fk_overrides_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS quota_counters (
  user_id      BIGINT UNSIGNED NOT NULL,
  window_kind  ENUM('day','month','hour') NOT NULL,
  window_start BIGINT NOT NULL,          -- epoch of the window's start
  used         BIGINT NOT NULL DEFAULT 0, -- committed tokens
  reserved     BIGINT NOT NULL DEFAULT 0, -- tokens held by active reservations
  calls        BIGINT NOT NULL DEFAULT 0, -- admitted calls
  overruns     BIGINT NOT NULL DEFAULT 0, -- commits with actual > estimate
  PRIMARY KEY (user_id, window_kind, window_start),
  KEY idx_counters_start (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS quota_reservations (
  id           CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  user_id      BIGINT UNSIGNED NOT NULL,
  task         VARCHAR(64) NOT NULL,
  estimate     BIGINT NOT NULL,
  day_start    BIGINT NOT NULL,
  month_start  BIGINT NOT NULL,
  hour_start   BIGINT NOT NULL,
  created_at   BIGINT NOT NULL,
  expires_at   BIGINT NOT NULL,
  state        ENUM('active','committed','released','expired') NOT NULL DEFAULT 'active',
  actual       BIGINT NULL,
  settled_at   BIGINT NULL,
  KEY idx_res_user_state (user_id, state, expires_at),
  KEY idx_res_state_expires (state, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Settle one reservation that the caller has locked and knows is active:
-- its estimate leaves `reserved` of its day and month windows, `p_actual`
-- (NULL for release/expiry) goes to `used`.  The call stays counted.
DROP PROCEDURE IF EXISTS qc_settle_locked;
CREATE PROCEDURE qc_settle_locked(IN p_id CHAR(32) CHARACTER SET ascii, IN p_actual BIGINT,
                                  IN p_state VARCHAR(16), IN p_now BIGINT)
BEGIN
  DECLARE v_user BIGINT UNSIGNED;
  DECLARE v_est, v_day, v_month BIGINT;
  SELECT user_id, estimate, day_start, month_start INTO v_user, v_est, v_day, v_month
    FROM quota_reservations WHERE id = p_id;
  UPDATE quota_counters
     SET reserved = reserved - v_est,
         used = used + COALESCE(p_actual, 0),
         overruns = overruns + IF(COALESCE(p_actual, 0) > v_est, 1, 0)
   WHERE user_id = v_user
     AND ((window_kind = 'day' AND window_start = v_day)
       OR (window_kind = 'month' AND window_start = v_month));
  UPDATE quota_reservations SET state = p_state, actual = p_actual, settled_at = p_now
   WHERE id = p_id;
END;

-- qc_expire_user_locked: defined in 007_billing.sql (one lock order).

-- qc_expire_user: defined in 007_billing.sql.

-- Reserve: one transaction.  Locks the user's current counter rows, and
-- only if no window would pass its limit adds the estimate to the day and
-- month windows, one call to every window, and a reservation row.  With
-- p_flight, the same transaction takes the single-flight row of an
-- identical-miss group (004: qc_flight_take).  Answers one row:
--   outcome ('ok'|'refused'|'nouser'), estimate,
--   day used/reserved, month used/reserved, hour calls,
--   day/month/hour limits, day/month/hour over flags, plan, leader (1/0,
--   NULL without p_flight).
-- qc_reserve: defined in 006_inflight.sql (it gained the per-user in-flight cap).

-- qc_settle and qc_expire_all: defined in 007_billing.sql (a late commit records the
-- truth; every procedure rolls back on any error).

DROP EVENT IF EXISTS qc_expire_reservations;
CREATE EVENT qc_expire_reservations ON SCHEDULE EVERY 1 MINUTE
  DO CALL qc_expire_all(UNIX_TIMESTAMP());
