-- 017: ai_cache is no longer partitioned (issue 10, measured).
--
-- 014 partitioned ai_cache BY KEY(region) so a regional lookup reads one
-- partition.  Measured through lighttpd on the 2-core machine (bench/run.sh,
-- the same build, only this changed): PUT /api/v1/cache/content went from
-- 1,185-1,417 to 1,835-1,875 req/s without the partitions, /generate misses
-- from 261 to about 490 req/s.  A lookup by the unique key is one index dive
-- with or without partitions (the region is in the key); everything by user
-- (a store's expired entries, the byte cap, hit-count flushes by id) dived
-- into every partition, and each statement opened and locked four.  The
-- region stays in the unique key (a regional lookup is a const read of it);
-- the primary key is the id again.
DROP PROCEDURE IF EXISTS qc_tmp_unpartition;
CREATE PROCEDURE qc_tmp_unpartition()
BEGIN
  IF EXISTS (SELECT 1 FROM information_schema.partitions
              WHERE table_schema = DATABASE() AND table_name = 'ai_cache'
                AND partition_name IS NOT NULL) THEN
    ALTER TABLE ai_cache REMOVE PARTITIONING;
  END IF;
END;
CALL qc_tmp_unpartition();
DROP PROCEDURE IF EXISTS qc_tmp_unpartition;
ALTER TABLE ai_cache DROP PRIMARY KEY, ADD PRIMARY KEY (id);
