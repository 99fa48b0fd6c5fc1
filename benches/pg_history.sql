-- A partitioned PostgreSQL store of history for the plans in BENCHMARKS.md ("PostgreSQL at
-- scale"): 100 symbols over 30 days ending at the current day, 1,000 ticks per symbol per day
-- (3,000,000 ticks), their 1 s and 1 m bars, and 10,000 trades of one user. Run on a database
-- migrated by `tickcast migrate` (so the partitions function exists):
--
--   DATABASE_URL=postgres://postgres@127.0.0.1/h22pg_bench tickcast migrate
--   psql -h 127.0.0.1 -U postgres -d h22pg_bench -f benches/pg_history.sql
SET statement_timeout = 0;
\set days 30
\set per_day 1000
SELECT (extract(epoch FROM date_trunc('day', now() AT TIME ZONE 'UTC'))::bigint - (:days - 1) * 86400)
    * 1000000000 AS t0 \gset
SELECT tickcast_ensure_partition(p, :t0 + d * 86400000000000)
FROM generate_series(0, :days - 1) d, (VALUES ('ticks'), ('bars')) parents(p);

-- Ticks: symbol S000..S099, spread evenly over each day with a little jitter, a random walk
-- good enough for plans (prices do not matter to them).
INSERT INTO ticks (symbol, ts, ingest_ts, epoch, seq, price, size, side)
SELECT 'S' || lpad(s::text, 3, '0'),
       :t0 + d * 86400000000000 + k * (86400000000000 / :per_day) + s * 1000000 + (k % 7),
       :t0 + d * 86400000000000 + k * (86400000000000 / :per_day) + s * 1000000 + 5000,
       1, d * :per_day + k, 100 + s + sin(k) * 2, 1 + (k % 5), (k % 2)::int2
FROM generate_series(0, :days - 1) d, generate_series(0, :per_day - 1) k, generate_series(0, 99) s;

-- Their bars: one 1 s bar per tick (ticks are 86 s apart per symbol), 1 m bars per minute.
INSERT INTO bars (symbol, interval_ns, ts, epoch, open, high, low, close, volume, trades)
SELECT symbol, w, (ts / w) * w, 1, MIN(price), MAX(price), MIN(price), MAX(price), SUM(size), COUNT(*)
FROM ticks CROSS JOIN (VALUES (1000000000::bigint), (60000000000::bigint)) widths(w)
GROUP BY symbol, w, ts / w;

-- One user with 10,000 trades over 100 symbols, and their positions.
INSERT INTO users (name, created_ms) VALUES ('bench', 0) ON CONFLICT DO NOTHING;
INSERT INTO trades (user_id, symbol, side, quantity, price, ts, idempotency_key, created_ms, time_sent)
SELECT u.id, 'S' || lpad((i % 100)::text, 3, '0'), (i % 2)::int2, 1, 100, :t0 + i::bigint * 1000000000,
       'k' || i, 0, 1
FROM users u, generate_series(1, 10000) i WHERE u.name = 'bench';
INSERT INTO positions (user_id, symbol, quantity, cost, realized, trades, last_ts, last_id, stale)
SELECT user_id, symbol, 0, 0, 0, 0, 0, 0, 1 FROM trades GROUP BY user_id, symbol
ON CONFLICT DO NOTHING;

ANALYZE;
