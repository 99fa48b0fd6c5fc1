-- A tick has a unique identity, so a batch retried after a lost commit acknowledgement is not
-- stored twice: (symbol, epoch, seq), where `epoch` names the server run (its ingest epoch, µs
-- since the Unix epoch at start-up; `seq` restarts with every run).

-- SQLite cannot add a NOT NULL column without a default; every insert names it.
ALTER TABLE ticks ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

-- Rows stored before this migration carry no run id. Exact copies (same seq, same ingest time to
-- the nanosecond, same values) can only be the same tick written twice: keep the first.
DELETE FROM ticks WHERE EXISTS (
    SELECT 1 FROM ticks d
    WHERE d.id < ticks.id
      AND d.symbol = ticks.symbol AND d.seq = ticks.seq AND d.ingest_ts = ticks.ingest_ts
      AND d.ts = ticks.ts AND d.price = ticks.price AND d.size = ticks.size
      AND d.side = ticks.side
);

-- Each remaining old row is its own identity: -id never equals another row's nor a live epoch
-- (live epochs are positive).
UPDATE ticks SET epoch = -id;

CREATE UNIQUE INDEX ticks_identity ON ticks (symbol, epoch, seq);
