-- Whether the request that recorded a trade named its fill time. A retry with the same
-- Idempotency-Key and the same body but no `time` (so "now", a different instant) is the same
-- request and replays the first trade; a retry that adds or drops `time` is a different one.
-- Trades recorded before this migration count as sent with a time (the stricter reading).
ALTER TABLE trades ADD COLUMN time_sent SMALLINT NOT NULL DEFAULT 1;
