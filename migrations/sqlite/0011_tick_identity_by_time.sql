-- The tick identity's unique index takes the tick's time before its seq: (symbol, epoch, ts,
-- seq). Every stored identity stays unique (a tick written twice, by a retried batch, a journal
-- replay or a re-import, carries the same time as the first copy), but rows now enter the index
-- in time order within a symbol and run, as they enter the other indexes. An imported tick's
-- seq is a hash of its content: ordered by seq alone, a bulk load inserted into the index at
-- random places, and once the index outgrew the page cache nearly every row cost a read.
DROP INDEX ticks_identity;
CREATE UNIQUE INDEX ticks_identity ON ticks (symbol, epoch, ts, seq);
