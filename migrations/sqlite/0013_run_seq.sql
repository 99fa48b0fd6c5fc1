-- A server run's ticks of one symbol in `seq` order, for replays from a time (`ws/replay.rs`,
-- `store/ticks.rs` RUN_START_SQL and RUN_PAGE_SQL). Since 0011 the identity index orders a run's
-- ticks by time before seq, so a page of a run by seq sorted every remaining tick of the run and
-- symbol, and the first seq of a replay was an aggregate over every tick after its time.
--
-- Partial: only live runs' ticks (epoch > 0, a server run's µs at start-up) are read by seq.
-- Imported ticks (epoch i64::MIN) and ticks migrated from before identities (-id) never are, so
-- `tickcast import` maintains no extra index. The queries carry `epoch > 0` so that both
-- backends' planners can use it.
CREATE INDEX ticks_run_seq ON ticks (symbol, epoch, seq) WHERE epoch > 0;
