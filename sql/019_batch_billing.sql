-- 019: billing several answers in one transaction (issue 10: the database
-- work of a miss).
--
-- qc_finish_generation bills one answer with about a dozen statements; on
-- two cores their per-statement cost is what bounds misses (mariadbd spent
-- 1.44 ms per miss).  When answers come back together (a completion thread
-- finds several in its queue), qc_finish_batch bills them with one statement
-- per table for all of them: measured in the server from one connection,
-- 0.56 ms per answer one by one, 0.30 / 0.20 / 0.14 ms per answer in batches
-- of 4 / 8 / 16.
--
-- It takes only the common case and leaves everything else to the one-by-one
-- procedure, which keeps its every outcome: if any answer's reservation is
-- not active and unexpired, a stored key exists already, a plan has no TTL
-- for the tier or has adaptive TTLs, or a user's byte cap (or first store)
-- is in the way, the whole batch is rolled back and answered 'fallback', and
-- the caller bills each answer with qc_finish_generation as before.  So for
-- each answer the rows written are exactly those qc_finish_generation writes
-- when it settles 'ok' and stores (or skips) the answer.
--
-- p_doc is a JSON array (built by the worker with json-c), one object per
-- answer: id (reservation), u (user), pt, ct (tokens), cost (micro-dollars),
-- st (1: store the answer), tier, k and v (the cache key and the answer,
-- hex: bytes are kept exactly), m (metadata JSON text or null), plan, task,
-- model, lat (ms), est (tokens estimated), fk and ow (the flight, or null),
-- api, str (streamed), exp and arm (the experiment, or null), reg (region).
--
-- Every table joined to the document is read by its primary key (FORCE
-- INDEX): on a small table the optimizer would rather scan it, and a scan
-- locks every row it passes (two batches then deadlock on each other's
-- flight rows: measured, 9 deadlocks in 8 s of misses before the hints).
--
-- Lock order as 018's: the answers' own rows first (reservations, flights,
-- entries), then cache_usage, then the ledger, the counter rows last; the
-- worker sorts the answers by user, and every per-user statement groups by
-- user, so concurrent batches take users' rows in one order (every user's
-- day row is taken before any month row, as every other writer of a user's
-- counters takes its day row first).
DROP PROCEDURE IF EXISTS qc_finish_batch;
CREATE PROCEDURE qc_finish_batch(IN p_doc LONGTEXT, IN p_now BIGINT, IN p_cap BIGINT)
BEGIN
  DECLARE v_n, v_bad, v_users, v_dup, v_ok INT DEFAULT 0;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  SET v_n = JSON_LENGTH(p_doc);
  batch: BEGIN
    -- a plain read first, nothing written yet: the answers to store have
    -- their plan's TTL for the tier, and no adaptive TTL
    SELECT COUNT(*) INTO v_bad
      FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (u BIGINT UNSIGNED PATH '$.u', st INT PATH '$.st',
                                             tier VARCHAR(16) PATH '$.tier')) j
      STRAIGHT_JOIN users u FORCE INDEX (PRIMARY) ON u.id = j.u
      STRAIGHT_JOIN plans p FORCE INDEX (PRIMARY) ON p.name = u.plan
     WHERE j.st = 1 AND (j.u = 0 OR p.ttl_adaptive = 1
            OR IF(j.tier = 'content', p.content_ttl_seconds, p.session_ttl_seconds) IS NULL);
    IF v_bad > 0 THEN LEAVE batch; END IF;
    START TRANSACTION;
    -- every reservation moves now, as qc_settle_mark's 'ok'
    UPDATE JSON_TABLE(p_doc, '$[*]' COLUMNS (id CHAR(32) CHARACTER SET ascii PATH '$.id',
                                             u BIGINT UNSIGNED PATH '$.u',
                                             pt BIGINT PATH '$.pt', ct BIGINT PATH '$.ct')) j
      STRAIGHT_JOIN quota_reservations r FORCE INDEX (PRIMARY) ON r.id = j.id
       SET r.state = 'committed', r.actual = j.pt + j.ct, r.settled_at = p_now
     WHERE r.user_id = j.u AND r.state = 'active' AND r.expires_at > p_now;
    IF ROW_COUNT() <> v_n THEN LEAVE batch; END IF;
    -- their flights end
    DELETE f FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (fk CHAR(64) CHARACTER SET ascii PATH '$.fk',
                                                    ow CHAR(32) CHARACTER SET ascii PATH '$.ow')) j
      STRAIGHT_JOIN generate_flights f FORCE INDEX (PRIMARY) ON f.flight_key = j.fk AND f.owner = j.ow;
    BEGIN
      DECLARE CONTINUE HANDLER FOR 1062 SET v_dup = 1;
      INSERT INTO ai_cache (cache_key, cache_type, user_id, value, value_is_json, metadata,
                            created_at, expires_at, access_count, last_accessed_at, size_bytes,
                            gen_tokens, gen_cost_micro, adapt_ttl, adapt_until, region)
        SELECT UNHEX(j.k), j.tier, j.u, UNHEX(j.v), 0, j.m, FROM_UNIXTIME(p_now),
               FROM_UNIXTIME(p_now + IF(j.tier = 'content', p.content_ttl_seconds, p.session_ttl_seconds)),
               0, NULL, LENGTH(j.v) DIV 2 + COALESCE(LENGTH(j.m), 0), j.pt + j.ct, j.cost, NULL, NULL,
               COALESCE(j.reg, '')
          FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (u BIGINT UNSIGNED PATH '$.u', st INT PATH '$.st',
                                                 tier VARCHAR(16) PATH '$.tier',
                                                 k VARCHAR(510) CHARACTER SET ascii PATH '$.k',
                                                 v LONGTEXT CHARACTER SET ascii PATH '$.v',
                                                 m LONGTEXT PATH '$.m', pt BIGINT PATH '$.pt',
                                                 ct BIGINT PATH '$.ct', cost BIGINT PATH '$.cost',
                                                 reg VARCHAR(16) CHARACTER SET ascii PATH '$.reg')) j
          STRAIGHT_JOIN users u FORCE INDEX (PRIMARY) ON u.id = j.u
          STRAIGHT_JOIN plans p FORCE INDEX (PRIMARY) ON p.name = u.plan
         WHERE j.st = 1;
    END;
    IF v_dup = 1 THEN LEAVE batch; END IF;
    -- each storing user's usage row admits its answers under the cap
    SELECT COUNT(DISTINCT j.u) INTO v_users
      FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (u BIGINT UNSIGNED PATH '$.u', st INT PATH '$.st')) j
     WHERE j.st = 1;
    IF v_users > 0 THEN
      UPDATE (SELECT j.u, SUM(LENGTH(j.v) DIV 2 + COALESCE(LENGTH(j.m), 0)) AS b, COUNT(*) AS n
                FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (u BIGINT UNSIGNED PATH '$.u', st INT PATH '$.st',
                                                       v LONGTEXT CHARACTER SET ascii PATH '$.v',
                                                       m LONGTEXT PATH '$.m')) j
               WHERE j.st = 1 GROUP BY j.u) x
        STRAIGHT_JOIN cache_usage c FORCE INDEX (PRIMARY) ON c.user_id = x.u
         SET c.bytes = c.bytes + x.b, c.entries = c.entries + x.n
       WHERE c.bytes + x.b <= p_cap;
      IF ROW_COUNT() <> v_users THEN LEAVE batch; END IF;
    END IF;
    -- the ledger rows
    INSERT INTO usage_events (user_id, plan, task, model, prompt_tokens, completion_tokens, cost_micro,
                              saved_tokens, saved_micro, cached, outcome, latency_ms, created_at, estimated,
                              api, streamed, cache_type, stored, experiment_id, arm)
      SELECT j.u, j.plan, j.task, j.model, j.pt, j.ct, j.cost, 0, 0, 0, 'ok', j.lat, p_now, j.est,
             j.api, j.str, j.tier, j.st, j.exp, j.arm
        FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (u BIGINT UNSIGNED PATH '$.u', plan VARCHAR(32) PATH '$.plan',
                                               task VARCHAR(64) PATH '$.task', model VARCHAR(64) PATH '$.model',
                                               pt BIGINT PATH '$.pt', ct BIGINT PATH '$.ct',
                                               cost BIGINT PATH '$.cost', lat INT PATH '$.lat',
                                               est INT PATH '$.est', api VARCHAR(16) PATH '$.api',
                                               str INT PATH '$.str', tier VARCHAR(16) PATH '$.tier',
                                               st INT PATH '$.st', exp INT UNSIGNED PATH '$.exp',
                                               arm VARCHAR(16) PATH '$.arm')) j;
    -- the counter rows last: each user's day row, then each user's month row
    -- (one derived row per counter row: a multi-table UPDATE changes a row
    -- once, whatever else matches it)
    UPDATE (SELECT r.user_id, 'day' AS kind, r.day_start AS ws, SUM(r.estimate) AS est,
                   SUM(r.actual) AS act, SUM(r.actual > r.estimate) AS ovr
              FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (id CHAR(32) CHARACTER SET ascii PATH '$.id')) j
              STRAIGHT_JOIN quota_reservations r FORCE INDEX (PRIMARY) ON r.id = j.id
             GROUP BY r.user_id, r.day_start
            UNION ALL
            SELECT r.user_id, 'month', r.month_start, SUM(r.estimate), SUM(r.actual),
                   SUM(r.actual > r.estimate)
              FROM JSON_TABLE(p_doc, '$[*]' COLUMNS (id CHAR(32) CHARACTER SET ascii PATH '$.id')) j
              STRAIGHT_JOIN quota_reservations r FORCE INDEX (PRIMARY) ON r.id = j.id
             GROUP BY r.user_id, r.month_start) x
      STRAIGHT_JOIN quota_counters c FORCE INDEX (PRIMARY)
        ON c.user_id = x.user_id AND c.window_kind = x.kind AND c.window_start = x.ws
       SET c.reserved = c.reserved - x.est, c.used = c.used + x.act, c.overruns = c.overruns + x.ovr;
    COMMIT;
    SET v_ok = 1;
  END;
  IF v_ok = 1 THEN
    SELECT 'ok';
  ELSE
    ROLLBACK;
    SELECT 'fallback';
  END IF;
END;
