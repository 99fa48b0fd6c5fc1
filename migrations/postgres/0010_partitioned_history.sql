-- Ticks and bars partitioned by exchange time (native declarative partitioning, RANGE on `ts`,
-- one partition per UTC day), so retention drops whole days instead of deleting rows one by one,
-- and a read of a time range touches only the days it covers.
--
-- A unique key of a partitioned table must include the partition key: the tick identity becomes
-- (symbol, epoch, seq, ts) and the row key (ts, id). A tick's `ts` is part of what it is (the
-- same tick retried, or the same line re-imported, has the same ts), so a retried batch or a
-- re-import still stores nothing twice. Bar identity (symbol, interval_ns, ts, epoch) already
-- holds `ts`.
--
-- The rows stored so far move into their days' partitions here, ids kept (the /ticks cursor
-- holds them): this rewrites both tables once, in this migration's transaction.

-- Write connections carry a statement_timeout (10 x database.timeout_ms); rewriting a large
-- history may take longer, and is bounded by nothing but its own size.
SET LOCAL statement_timeout = 0;

-- The one place a day's partition is made, here for the history already stored and by the store
-- (`Store::ensure_partitions`) for every later day: `<parent>_YYYYMMDD` over [day, day + 1 day).
-- Rows of that day that went to `<parent>_default` (the safety net, so no insert ever fails for
-- want of a partition) move into the new partition first. Returns whether it made one.
CREATE FUNCTION tickcast_ensure_partition(parent TEXT, day_start BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $fn$
DECLARE
    day_end BIGINT := day_start + 86400000000000;
    part TEXT := parent || '_' || to_char(to_timestamp(day_start / 1e9) AT TIME ZONE 'UTC', 'YYYYMMDD');
    fallback TEXT := parent || '_default';
    strays BOOLEAN;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    -- The recorder, the maintenance task and an import may ask at once (any process).
    PERFORM pg_advisory_xact_lock(hashtext('tickcast_ensure_partition'));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE ts >= %s AND ts < %s)',
        fallback, day_start, day_end) INTO strays;
    IF strays THEN
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, parent);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE ts >= %s AND ts < %s RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved', fallback, day_start, day_end, part);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
            parent, part, day_start, day_end);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
            part, parent, day_start, day_end);
    END IF;
    RETURN TRUE;
END
$fn$;

-- The previous tables keep their rows until they are copied, under other names.
ALTER TABLE ticks RENAME TO ticks_unpartitioned;
ALTER TABLE ticks_unpartitioned RENAME CONSTRAINT ticks_pkey TO ticks_unpartitioned_pkey;
ALTER INDEX ticks_symbol_ts RENAME TO ticks_unpartitioned_symbol_ts;
ALTER INDEX ticks_ts RENAME TO ticks_unpartitioned_ts;
ALTER INDEX ticks_identity RENAME TO ticks_unpartitioned_identity;
ALTER TABLE bars RENAME TO bars_unpartitioned;
ALTER TABLE bars_unpartitioned RENAME CONSTRAINT bars_pkey TO bars_unpartitioned_pkey;
ALTER INDEX bars_identity RENAME TO bars_unpartitioned_identity;
ALTER INDEX bars_ts RENAME TO bars_unpartitioned_ts;

CREATE TABLE ticks (
    id        BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order; the cursor's tie-break
    symbol    TEXT             NOT NULL,
    ts        BIGINT           NOT NULL,  -- exchange time, ns since the epoch: the partition key
    ingest_ts BIGINT           NOT NULL,  -- server ingest time, ns (the wire `ts`)
    seq       BIGINT           NOT NULL,  -- per-channel seq at ingest (restarts with the process)
    price     DOUBLE PRECISION NOT NULL,
    size      DOUBLE PRECISION NOT NULL,
    side      SMALLINT         NOT NULL,  -- 0 buy, 1 sell, 2 none
    epoch     BIGINT           NOT NULL,  -- the server run that assigned seq
    -- Also retention's index for a day it expires only in part (whole days are dropped).
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);
-- /ticks: one symbol, a time range, ordered by (ts, id).
CREATE INDEX ticks_symbol_ts ON ticks (symbol, ts, id);
CREATE UNIQUE INDEX ticks_identity ON ticks (symbol, epoch, seq, ts);
CREATE TABLE ticks_default PARTITION OF ticks DEFAULT;

CREATE TABLE bars (
    id          BIGINT GENERATED ALWAYS AS IDENTITY,
    symbol      TEXT NOT NULL,
    interval_ns BIGINT NOT NULL,
    ts          BIGINT NOT NULL,  -- bar start, ns since the epoch: the partition key
    epoch       BIGINT NOT NULL,
    open        DOUBLE PRECISION NOT NULL,
    high        DOUBLE PRECISION NOT NULL,
    low         DOUBLE PRECISION NOT NULL,
    close       DOUBLE PRECISION NOT NULL,
    volume      DOUBLE PRECISION NOT NULL,
    trades      BIGINT NOT NULL,
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);
-- /bars: one symbol and interval, a time range, in order; and the bar's identity.
CREATE UNIQUE INDEX bars_identity ON bars (symbol, interval_ns, ts, epoch);
CREATE TABLE bars_default PARTITION OF bars DEFAULT;

-- A partition for every day that has rows, then the rows, ids kept.
SELECT tickcast_ensure_partition('ticks', day)
FROM (SELECT DISTINCT ts - ((ts % 86400000000000) + 86400000000000) % 86400000000000 AS day
      FROM ticks_unpartitioned) days
ORDER BY day;
SELECT tickcast_ensure_partition('bars', day)
FROM (SELECT DISTINCT ts - ((ts % 86400000000000) + 86400000000000) % 86400000000000 AS day
      FROM bars_unpartitioned) days
ORDER BY day;

INSERT INTO ticks (id, symbol, ts, ingest_ts, seq, price, size, side, epoch) OVERRIDING SYSTEM VALUE
SELECT id, symbol, ts, ingest_ts, seq, price, size, side, epoch FROM ticks_unpartitioned;
INSERT INTO bars (id, symbol, interval_ns, ts, epoch, open, high, low, close, volume, trades)
    OVERRIDING SYSTEM VALUE
SELECT id, symbol, interval_ns, ts, epoch, open, high, low, close, volume, trades
FROM bars_unpartitioned;

-- New rows continue after the ids carried over.
SELECT setval(pg_get_serial_sequence('ticks', 'id'),
    COALESCE((SELECT MAX(id) FROM ticks_unpartitioned), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('bars', 'id'),
    COALESCE((SELECT MAX(id) FROM bars_unpartitioned), 0) + 1, false);

DROP TABLE ticks_unpartitioned;
DROP TABLE bars_unpartitioned;
