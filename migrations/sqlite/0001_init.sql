-- tickcast schema, SQLite flavour. Times are integers (ns since the epoch for ticks and trades,
-- ms for bookkeeping) so every query is the same on both backends.

CREATE TABLE ticks (
    id        INTEGER PRIMARY KEY,      -- insertion order; tie-break for equal times
    symbol    TEXT    NOT NULL,
    ts        INTEGER NOT NULL,         -- exchange time, ns since the epoch
    ingest_ts INTEGER NOT NULL,         -- server ingest time, ns (the wire `ts`)
    seq       INTEGER NOT NULL,         -- per-channel seq at ingest (restarts with the process)
    price     REAL    NOT NULL,
    size      REAL    NOT NULL,
    side      INTEGER NOT NULL          -- 0 buy, 1 sell
);
-- /ticks and /bars: one symbol, a time range, ordered by (ts, id).
CREATE INDEX ticks_symbol_ts ON ticks (symbol, ts, id);
-- retention: delete by time across symbols.
CREATE INDEX ticks_ts ON ticks (ts);

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    key_hash   TEXT    NOT NULL UNIQUE, -- SHA-256 hex of the key; the key itself is never stored
    created_ms INTEGER NOT NULL
);

CREATE TABLE trades (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    symbol          TEXT    NOT NULL,
    side            INTEGER NOT NULL,   -- 0 buy, 1 sell
    quantity        REAL    NOT NULL,
    price           REAL    NOT NULL,
    ts              INTEGER NOT NULL,   -- fill time, ns since the epoch
    idempotency_key TEXT,
    created_ms      INTEGER NOT NULL
);
-- NULL keys are distinct, so trades without a key never collide.
CREATE UNIQUE INDEX trades_idempotency ON trades (user_id, idempotency_key);
CREATE INDEX trades_user_ts ON trades (user_id, ts, id);
