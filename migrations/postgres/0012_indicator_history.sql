-- Indicator history: one row per symbol per closed 1 s bar, with every indicator field as the
-- wire names it then (`sma_20`, ..., `imbalance`), written behind like ticks and bars.
-- Partitioned by day of `ts` like ticks and bars (migration 0010): `tickcast_ensure_partition`
-- makes its days beside theirs, and retention drops its expired days whole.
CREATE TABLE indicators (
    id     BIGINT GENERATED ALWAYS AS IDENTITY,
    symbol TEXT   NOT NULL,
    ts     BIGINT NOT NULL,  -- start of the closed 1 s bar, ns (exchange time): the partition key
    -- The server run that computed it. A row's identity is (symbol, ts): a retried batch, a
    -- journal replayed twice or two runs that closed the same second store it once.
    epoch  BIGINT NOT NULL,
    fields TEXT   NOT NULL,  -- a JSON object of the wire fields, named as that run named them
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);
-- /indicators: one symbol, a time range, in order; and the row's identity.
CREATE UNIQUE INDEX indicators_identity ON indicators (symbol, ts);
CREATE TABLE indicators_default PARTITION OF indicators DEFAULT;
