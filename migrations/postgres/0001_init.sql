-- tickcast schema, PostgreSQL flavour. Times are integers (ns since the epoch for ticks and
-- trades, ms for bookkeeping) so every query is the same on both backends.

CREATE TABLE ticks (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order; tie-break
    symbol    TEXT             NOT NULL,
    ts        BIGINT           NOT NULL,  -- exchange time, ns since the epoch
    ingest_ts BIGINT           NOT NULL,  -- server ingest time, ns (the wire `ts`)
    seq       BIGINT           NOT NULL,  -- per-channel seq at ingest (restarts with the process)
    price     DOUBLE PRECISION NOT NULL,
    size      DOUBLE PRECISION NOT NULL,
    side      SMALLINT         NOT NULL   -- 0 buy, 1 sell
);
-- /ticks and /bars: one symbol, a time range, ordered by (ts, id).
CREATE INDEX ticks_symbol_ts ON ticks (symbol, ts, id);
-- retention: delete by time across symbols.
CREATE INDEX ticks_ts ON ticks (ts);

CREATE TABLE users (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT   NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    key_hash   TEXT   NOT NULL UNIQUE, -- SHA-256 hex of the key; the key itself is never stored
    created_ms BIGINT NOT NULL
);

CREATE TABLE trades (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT           NOT NULL REFERENCES users (id),
    symbol          TEXT             NOT NULL,
    side            SMALLINT         NOT NULL, -- 0 buy, 1 sell
    quantity        DOUBLE PRECISION NOT NULL,
    price           DOUBLE PRECISION NOT NULL,
    ts              BIGINT           NOT NULL, -- fill time, ns since the epoch
    idempotency_key TEXT,
    created_ms      BIGINT           NOT NULL
);
-- NULL keys are distinct, so trades without a key never collide.
CREATE UNIQUE INDEX trades_idempotency ON trades (user_id, idempotency_key);
CREATE INDEX trades_user_ts ON trades (user_id, ts, id);
