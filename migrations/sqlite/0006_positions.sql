-- Positions maintained with each trade (in the same transaction as its insert), so
-- GET /portfolio reads one row per symbol instead of every trade the user ever made.
CREATE TABLE positions (
    user_id  INTEGER NOT NULL REFERENCES users (id),
    symbol   TEXT NOT NULL,
    quantity REAL NOT NULL, -- signed: negative is short
    avg_cost REAL NOT NULL,
    realized REAL NOT NULL,
    trades   INTEGER NOT NULL, -- fills folded in
    last_ts  INTEGER NOT NULL, -- the latest fill folded in, by (ts, id): a fill before it (a late
    last_id  INTEGER NOT NULL, -- report) makes the position be rebuilt from the trades, in order
    stale    INTEGER NOT NULL, -- 1: rebuild from the trades before use
    PRIMARY KEY (user_id, symbol)
);

-- Trades recorded before this migration: their positions are rebuilt on first use.
INSERT INTO positions (user_id, symbol, quantity, avg_cost, realized, trades, last_ts, last_id,
    stale)
SELECT user_id, symbol, 0, 0, 0, 0, 0, 0, 1 FROM trades GROUP BY user_id, symbol;
