-- The tick identity's unique index takes the tick's time before its seq: (symbol, epoch, ts,
-- seq) instead of 0010's (symbol, epoch, seq, ts). The same columns, so the same identities are
-- unique (and the partition key is in it), but rows now enter the index in time order within a
-- symbol and run, as they enter the other indexes. An imported tick's seq is a hash of its
-- content: ordered by seq first, a bulk load inserted into the index at random places, and once
-- a day's index outgrew the buffer cache nearly every row cost a read (BENCHMARKS.md "Import,
-- second pass": 15.9 against 13.1 s of backend CPU per million imported ticks).

-- Write connections carry a statement_timeout; rebuilding the index of a large history may take
-- longer, and is bounded by nothing but its size.
SET LOCAL statement_timeout = 0;

-- On the partitioned table: dropped from every day, and made again on every day (days made
-- later take the parent's indexes).
DROP INDEX ticks_identity;
CREATE UNIQUE INDEX ticks_identity ON ticks (symbol, epoch, ts, seq);
