-- Positions keep their cost basis as a total (what the open quantity cost) instead of a rounded
-- average cost, so unrealized P&L (quantity x price - cost) is exact; the average is computed
-- only for display. Every position is marked stale: it is rebuilt from its trades, in decimal,
-- the first time it is read or traded (until then the column holds the old average, unused).

-- Write connections carry a statement_timeout (10 x database.timeout_ms); marking a large table
-- is bounded by nothing but its own size.
SET LOCAL statement_timeout = 0;
ALTER TABLE positions RENAME COLUMN avg_cost TO cost;
UPDATE positions SET stale = 1;
