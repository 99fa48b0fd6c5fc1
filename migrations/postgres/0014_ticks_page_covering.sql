-- The /ticks page reads its rows from the index alone. A page is 1,000 consecutive entries of
-- `ticks_symbol_ts` (one symbol, in time order), but the rows themselves lie in arrival order,
-- interleaved with every other symbol's: each row of a page was a heap page of its own (about
-- 1,000 reads a page, BENCHMARKS.md "History at scale"). With the selected columns in the index
-- the page is an index-only scan of a few dozen index pages (on days the visibility map covers:
-- autovacuum marks a day all-visible once it stops changing).

-- Rebuilt over every day's partition of a store that may be large: bounded by its size only.
SET LOCAL statement_timeout = 0;

DROP INDEX ticks_symbol_ts;
CREATE INDEX ticks_symbol_ts ON ticks (symbol, ts, id)
    INCLUDE (ingest_ts, epoch, seq, price, size, side);
