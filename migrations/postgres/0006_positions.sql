-- Positions maintained with each trade (in the same transaction as its insert), so
-- GET /portfolio reads one row per symbol instead of every trade the user ever made.

-- Write connections carry a statement_timeout (10 x database.timeout_ms); rewriting a large
-- history may take longer, and is bounded by nothing but its own size.
SET LOCAL statement_timeout = 0;
CREATE TABLE positions (
    user_id  BIGINT NOT NULL REFERENCES users (id),
    symbol   TEXT NOT NULL,
    quantity DOUBLE PRECISION NOT NULL, -- signed: negative is short
    avg_cost DOUBLE PRECISION NOT NULL,
    realized DOUBLE PRECISION NOT NULL,
    trades   BIGINT NOT NULL, -- fills folded in
    last_ts  BIGINT NOT NULL, -- the latest fill folded in, by (ts, id): a fill before it (a late
    last_id  BIGINT NOT NULL, -- report) makes the position be rebuilt from the trades, in order
    stale    SMALLINT NOT NULL, -- 1: rebuild from the trades before use
    PRIMARY KEY (user_id, symbol)
);

-- Trades recorded before this migration: their positions are rebuilt on first use.
INSERT INTO positions (user_id, symbol, quantity, avg_cost, realized, trades, last_ts, last_id,
    stale)
SELECT user_id, symbol, 0, 0, 0, 0, 0, 0, 1 FROM trades GROUP BY user_id, symbol;
