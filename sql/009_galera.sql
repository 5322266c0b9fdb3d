-- 009: Galera (SPEC §12), and one index fewer.
--
-- A waiter must not lock the flight row it only reads.  Before, every reserve
-- of an identical miss ran INSERT ... ON DUPLICATE KEY UPDATE on the flight
-- row; for a waiter the update changed nothing, so the row was X-locked but
-- not part of the transaction's write set.  On Galera that lock is invisible
-- to certification: the leader's DELETE of the row, applied on the waiter's
-- node, waited for it while the waiter waited to commit behind the leader
-- ("BF lock wait long"), and the node's commits stalled for seconds.  Now a
-- live flight is seen with a plain read and nothing is locked; the row is
-- written only to take a flight that is absent or lapsed (an INSERT, or an
-- UPDATE that changes it: both certified).  Two nodes taking the same absent
-- flight at once conflict on its key (1213); the retry reads the winner's row.
DROP PROCEDURE IF EXISTS qc_flight_take;
CREATE PROCEDURE qc_flight_take(IN p_flight CHAR(64) CHARACTER SET ascii, IN p_owner CHAR(32) CHARACTER SET ascii, IN p_now BIGINT,
                                IN p_hold BIGINT, OUT o_lead INT)
BEGIN
  DECLARE v_live INT DEFAULT NULL;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_live = NULL;
  SELECT expires_at >= p_now INTO v_live FROM generate_flights WHERE flight_key = p_flight;
  IF v_live = 1 THEN
    SET o_lead = 0;
  ELSE
    INSERT INTO generate_flights (flight_key, owner, started_at, expires_at)
      VALUES (p_flight, p_owner, p_now, p_now + p_hold)
      ON DUPLICATE KEY UPDATE
        owner = IF(expires_at < VALUES(started_at), VALUES(owner), owner),
        started_at = IF(expires_at < VALUES(started_at), VALUES(started_at), started_at),
        expires_at = IF(expires_at < VALUES(started_at), VALUES(expires_at), expires_at);
    SET o_lead = ROW_COUNT() > 0;
  END IF;
END;

-- The unique key (cache_key, cache_type, user_id) serves every lookup by
-- (cache_key, cache_type) too; this second index only cost a write per store.
DROP INDEX IF EXISTS idx_ai_cache_key_type ON ai_cache;
