-- Exact money: trade quantities and prices, and the positions kept from them, become NUMERIC
-- (unconstrained: every digit a client sent is kept). The store computes in 96-bit decimal.
--
-- Existing trades keep their value as PostgreSQL converts a double (15 significant digits, which
-- is how the value was sent: 0.1 stored as 0.1000000000000000055... becomes 0.1). Positions are
-- marked stale: each is rebuilt from its trades, in decimal, the first time it is read or traded.

-- Write connections carry a statement_timeout (10 x database.timeout_ms); rewriting a large
-- history may take longer, and is bounded by nothing but its own size.
SET LOCAL statement_timeout = 0;
ALTER TABLE trades
    ALTER COLUMN quantity TYPE NUMERIC USING quantity::numeric,
    ALTER COLUMN price TYPE NUMERIC USING price::numeric;
ALTER TABLE positions
    ALTER COLUMN quantity TYPE NUMERIC USING 0,
    ALTER COLUMN avg_cost TYPE NUMERIC USING 0,
    ALTER COLUMN realized TYPE NUMERIC USING 0;
UPDATE positions SET trades = 0, last_ts = 0, last_id = 0, stale = 1;
