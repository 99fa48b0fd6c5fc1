-- Exact money: trade quantities and prices, and the positions kept from them, become decimal
-- text (SQLite has no decimal type; a NUMERIC or REAL column would store 0.3 as the nearest
-- binary float). The store writes and reads them as text and computes in 96-bit decimal.
--
-- Existing trades keep their value as SQLite prints a REAL (15 significant digits, which is how
-- the value was sent: 0.1 stored as 0.1000000000000000055... becomes '0.1'). SQLite cannot
-- change a column's type, so both tables are rebuilt. Positions are marked stale: each is
-- rebuilt from its trades, in decimal, the first time it is read or traded.

CREATE TABLE trades_exact (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    symbol          TEXT    NOT NULL,
    side            INTEGER NOT NULL,   -- 0 buy, 1 sell
    quantity        TEXT    NOT NULL,   -- decimal text, e.g. '0.3'
    price           TEXT    NOT NULL,   -- decimal text
    ts              INTEGER NOT NULL,   -- fill time, ns since the epoch
    idempotency_key TEXT,
    created_ms      INTEGER NOT NULL,
    time_sent       INTEGER NOT NULL DEFAULT 1
);
INSERT INTO trades_exact (id, user_id, symbol, side, quantity, price, ts, idempotency_key,
    created_ms, time_sent)
SELECT id, user_id, symbol, side, CAST(quantity AS TEXT), CAST(price AS TEXT), ts,
    idempotency_key, created_ms, time_sent
FROM trades;
DROP TABLE trades;
ALTER TABLE trades_exact RENAME TO trades;
-- NULL keys are distinct, so trades without a key never collide.
CREATE UNIQUE INDEX trades_idempotency ON trades (user_id, idempotency_key);
CREATE INDEX trades_user_ts ON trades (user_id, ts, id);

CREATE TABLE positions_exact (
    user_id  INTEGER NOT NULL REFERENCES users (id),
    symbol   TEXT NOT NULL,
    quantity TEXT NOT NULL, -- decimal text, signed: negative is short
    avg_cost TEXT NOT NULL, -- decimal text
    realized TEXT NOT NULL, -- decimal text
    trades   INTEGER NOT NULL, -- fills folded in
    last_ts  INTEGER NOT NULL, -- the latest fill folded in, by (ts, id): a fill before it (a late
    last_id  INTEGER NOT NULL, -- report) makes the position be rebuilt from the trades, in order
    stale    INTEGER NOT NULL, -- 1: rebuild from the trades before use
    PRIMARY KEY (user_id, symbol)
);
INSERT INTO positions_exact (user_id, symbol, quantity, avg_cost, realized, trades, last_ts,
    last_id, stale)
SELECT user_id, symbol, '0', '0', '0', 0, 0, 0, 1 FROM positions;
DROP TABLE positions;
ALTER TABLE positions_exact RENAME TO positions;
