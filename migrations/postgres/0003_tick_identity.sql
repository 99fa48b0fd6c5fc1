-- A tick has a unique identity, so a batch retried after a lost commit acknowledgement is not
-- stored twice: (symbol, epoch, seq), where `epoch` names the server run (its ingest epoch, µs
-- since the Unix epoch at start-up; `seq` restarts with every run).

-- Write connections carry a statement_timeout (10 x database.timeout_ms); rewriting a large
-- history may take longer, and is bounded by nothing but its own size.
SET LOCAL statement_timeout = 0;

ALTER TABLE ticks ADD COLUMN epoch BIGINT;

-- Rows stored before this migration carry no run id. Exact copies (same seq, same ingest time to
-- the nanosecond, same values) can only be the same tick written twice: keep the first.
DELETE FROM ticks t USING ticks d
WHERE d.id < t.id
  AND d.symbol = t.symbol AND d.seq = t.seq AND d.ingest_ts = t.ingest_ts AND d.ts = t.ts
  AND d.price = t.price AND d.size = t.size AND d.side = t.side;

-- Each remaining old row is its own identity: -id never equals another row's nor a live epoch
-- (live epochs are positive).
UPDATE ticks SET epoch = -id;
ALTER TABLE ticks ALTER COLUMN epoch SET NOT NULL;

CREATE UNIQUE INDEX ticks_identity ON ticks (symbol, epoch, seq);
