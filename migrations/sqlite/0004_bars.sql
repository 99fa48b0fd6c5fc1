-- Stored bars: the pipeline's closed 1 s and 1 m bars, written behind like ticks, so that
-- /bars reads the bars it returns (5m, 1h and 1d are rolled up from 1 m bars) instead of
-- aggregating every tick under them.

CREATE TABLE bars (
    id          INTEGER PRIMARY KEY,
    symbol      TEXT NOT NULL,
    interval_ns INTEGER NOT NULL,  -- 1000000000 (1 s) or 60000000000 (1 m)
    ts          INTEGER NOT NULL,  -- bar start, ns since the epoch
    -- The server run that built the bar (0 for bars rebuilt from stored ticks below). A window
    -- that spans a restart has one partial bar per run; /bars merges them (open of the first
    -- run, close of the last). With it, a retried batch stores each bar once.
    epoch       INTEGER NOT NULL,
    open        REAL NOT NULL,
    high        REAL NOT NULL,
    low         REAL NOT NULL,
    close       REAL NOT NULL,
    volume      REAL NOT NULL,
    trades      INTEGER NOT NULL
);
-- /bars: one symbol and interval, a time range, in order; and the bar's identity.
CREATE UNIQUE INDEX bars_identity ON bars (symbol, interval_ns, ts, epoch);
-- retention: delete by time across symbols.
CREATE INDEX bars_ts ON bars (ts);

-- History stored before this migration: rebuild its 1 s and 1 m bars from the ticks, open and
-- close by exchange time (then arrival), as /bars computed them until now.
INSERT INTO bars (symbol, interval_ns, ts, epoch, open, high, low, close, volume, trades)
SELECT symbol, w, bucket * w, 0, MIN(o), MAX(price), MIN(price), MIN(c), SUM(size), COUNT(*)
FROM (
    SELECT symbol, w, ts / w AS bucket, price, size,
        FIRST_VALUE(price) OVER p AS o, LAST_VALUE(price) OVER p AS c
    FROM ticks CROSS JOIN (SELECT 1000000000 AS w UNION ALL SELECT 60000000000) widths
    WHERE ts >= 0
    WINDOW p AS (PARTITION BY symbol, w, ts / w ORDER BY ts, id
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) t
GROUP BY symbol, w, bucket;
