-- The /ticks page reads its rows from the index alone. A page is 1,000 consecutive entries of
-- `ticks_symbol_ts` (one symbol, in time order), but the table is stored in rowid (arrival)
-- order, interleaved with every other symbol's ticks: each row of a page was a table B-tree
-- lookup on a page of its own. With every selected column in the index (SQLite has no INCLUDE:
-- they follow the key) the page is a covering-index scan of a few dozen pages.
DROP INDEX ticks_symbol_ts;
CREATE INDEX ticks_symbol_ts ON ticks (symbol, ts, id, ingest_ts, epoch, seq, price, size, side);
