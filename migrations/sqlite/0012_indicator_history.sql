-- Indicator history: one row per symbol per closed 1 s bar, with every indicator field as the
-- wire names it then (`sma_20`, ..., `imbalance`), written behind like ticks and bars. SQLite
-- keeps a plain table; retention deletes its rows in bounded batches like the others.
CREATE TABLE indicators (
    id     INTEGER PRIMARY KEY,
    symbol TEXT NOT NULL,
    ts     INTEGER NOT NULL,  -- start of the closed 1 s bar, ns since the epoch (exchange time)
    -- The server run that computed it. A row's identity is (symbol, ts): a retried batch, a
    -- journal replayed twice or two runs that closed the same second store it once.
    epoch  INTEGER NOT NULL,
    fields TEXT NOT NULL      -- a JSON object of the wire fields, named as that run named them
);
-- /indicators: one symbol, a time range, in order; and the row's identity.
CREATE UNIQUE INDEX indicators_identity ON indicators (symbol, ts);
-- retention: delete by time across symbols.
CREATE INDEX indicators_ts ON indicators (ts);
