//! Events that both count and log: one struct per event, one `emit` call that bumps its metrics
//! and writes its log line with structured fields, so the two cannot drift apart (vector's
//! `internal_events` style).
//!
//! Events carry plain values (errors as `&dyn Display`), so this module depends on no component.
//! Each log line keeps the target of the module that emitted it before events existed, so
//! `RUST_LOG` directives such as `tickcast::store=debug` select the same lines as before.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::metrics::Metrics;
use crate::model::{SymbolId, now_ms};

const STORE: &str = "tickcast::store::recorder";
const PIPELINE: &str = "tickcast::pipeline";
const SESSION: &str = "tickcast::ws::session";
const INGEST: &str = "tickcast::ingest";

// --- store ----------------------------------------------------------------------------------

/// The write-behind queue was full: `rows` ticks will not be persisted. Counted every time,
/// logged at most once per [`LogThrottle`] interval with the total since the last line.
#[derive(Debug)]
pub(crate) struct TicksNotPersisted<'a> {
    pub rows: u64,
    pub capacity: usize,
    pub throttle: &'a LogThrottle,
}

impl TicksNotPersisted<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .db_rows_dropped
            .fetch_add(self.rows, Ordering::Relaxed);
        if let Some(dropped) = self.throttle.add(self.rows, now_ms()) {
            tracing::warn!(
                target: STORE,
                dropped,
                capacity = self.capacity,
                "write-behind queue full: ticks not persisted"
            );
        }
    }
}

/// Shutdown's grace ran out with `lost` rows still unwritten.
#[derive(Debug)]
pub(crate) struct WriteBehindAbandoned {
    pub lost: u64,
}

impl WriteBehindAbandoned {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .db_rows_dropped
            .fetch_add(self.lost, Ordering::Relaxed);
        tracing::error!(
            target: STORE,
            lost = self.lost,
            "shutdown grace elapsed before the database took every tick; rows dropped"
        );
    }
}

/// One batch of tick rows committed.
#[derive(Debug)]
pub(crate) struct TickBatchWritten {
    /// Rows stored by this batch.
    pub rows: u64,
    /// Rows of the batch that were already stored (a retry after a lost acknowledgement).
    pub duplicates: u64,
    /// Closed bars stored by this batch.
    pub bars: u64,
    /// Rows of indicator history stored by this batch.
    pub indicators: u64,
    pub elapsed: Duration,
    /// Consecutive failures before this write, when they had opened the circuit breaker.
    pub recovered_after: Option<u32>,
}

impl TickBatchWritten {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.db_batch_seconds.observe(self.elapsed);
        metrics
            .db_rows_written
            .fetch_add(self.rows, Ordering::Relaxed);
        metrics
            .db_bars_written
            .fetch_add(self.bars, Ordering::Relaxed);
        metrics
            .db_indicators_written
            .fetch_add(self.indicators, Ordering::Relaxed);
        if self.duplicates > 0 {
            metrics
                .db_rows_duplicate
                .fetch_add(self.duplicates, Ordering::Relaxed);
            tracing::info!(
                target: STORE,
                duplicates = self.duplicates,
                "tick rows already stored were skipped (a retried batch)"
            );
        }
        if let Some(failures) = self.recovered_after {
            tracing::info!(
                target: STORE,
                failures,
                "database writes recovered; circuit breaker closed"
            );
        }
    }
}

/// What the writer does after a failed batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AfterWriteFailure {
    /// Below the breaker's threshold: retry after the backoff.
    Retry { delay: Duration },
    /// This failure opened the breaker; `backlog` rows are waiting.
    BreakerOpened { backlog: u64 },
    /// The breaker was already open: the probe failed too (counted, not logged again).
    StillOpen,
}

/// A batch write failed.
pub(crate) struct TickBatchWriteFailed<'a> {
    pub error: &'a dyn fmt::Display,
    /// Consecutive failures, this one included.
    pub failures: u32,
    pub then: AfterWriteFailure,
}

impl TickBatchWriteFailed<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.db_write_errors.fetch_add(1, Ordering::Relaxed);
        let (error, failures) = (self.error, self.failures);
        match self.then {
            AfterWriteFailure::Retry { delay } => tracing::warn!(
                target: STORE,
                %error,
                failures,
                retry_in_ms = delay.as_millis() as u64,
                "tick batch write failed"
            ),
            AfterWriteFailure::BreakerOpened { backlog } => tracing::error!(
                target: STORE,
                %error,
                failures,
                backlog,
                "database writes failing; circuit breaker open, probing"
            ),
            AfterWriteFailure::StillOpen => {}
        }
    }
}

// --- pipeline -------------------------------------------------------------------------------

/// A pipeline batch started `late_ms` after its due time.
#[derive(Debug)]
pub(crate) struct PipelineBatchLate {
    pub late_ms: i64,
}

impl PipelineBatchLate {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .pipeline_late_batches
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: PIPELINE,
            late_ms = self.late_ms,
            "pipeline batch started late"
        );
    }
}

/// A pipeline batch took longer than its interval.
#[derive(Debug)]
pub(crate) struct PipelineBatchOverran {
    pub took: Duration,
}

impl PipelineBatchOverran {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .pipeline_late_batches
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: PIPELINE,
            took_ms = self.took.as_millis() as u64,
            "pipeline batch overran its interval"
        );
    }
}

/// The ring evicted `missed` ticks of `symbol` before the pipeline read them.
#[derive(Debug)]
pub(crate) struct PipelineTicksMissed {
    pub symbol: SymbolId,
    pub missed: u64,
}

impl PipelineTicksMissed {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .pipeline_missed_ticks
            .fetch_add(self.missed, Ordering::Relaxed);
        tracing::warn!(
            target: PIPELINE,
            symbol = self.symbol.0,
            missed = self.missed,
            "ticks evicted before the pipeline read them"
        );
    }
}

// --- ingest -------------------------------------------------------------------------------

/// Live-feed ticks dated more than `feeds.max_future_skew_ms` ahead of the server clock were
/// refused (they would hold a symbol's bars and VWAP session in the future). Counted every time,
/// logged at most once per [`LogThrottle`] interval with the total since the last line.
#[derive(Debug)]
pub(crate) struct FutureTicksRejected<'a> {
    pub rejected: u64,
    /// The symbol and how far ahead (ms) of the latest one refused.
    pub symbol: &'a str,
    pub ahead_ms: i64,
    pub max_ms: i64,
    pub throttle: &'a LogThrottle,
}

impl FutureTicksRejected<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .ticks_future
            .fetch_add(self.rejected, Ordering::Relaxed);
        metrics
            .ticks_rejected
            .fetch_add(self.rejected, Ordering::Relaxed);
        if let Some(rejected) = self.throttle.add(self.rejected, now_ms()) {
            tracing::warn!(
                target: INGEST,
                rejected,
                symbol = self.symbol,
                ahead_ms = self.ahead_ms,
                max_future_skew_ms = self.max_ms,
                "live ticks dated in the future refused"
            );
        }
    }
}

// --- WebSocket sessions ---------------------------------------------------------------------

/// A WebSocket session started.
#[derive(Debug)]
pub(crate) struct ConnectionOpened;

impl ConnectionOpened {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: SESSION, "connection opened");
    }
}

/// A WebSocket session ended; its outbox conflated and dropped these many events.
#[derive(Debug)]
pub(crate) struct ConnectionClosed<C> {
    pub conflated: u64,
    pub dropped: u64,
    /// Why it closed, as the session records it.
    pub close: C,
}

impl<C: fmt::Debug> ConnectionClosed<C> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .events_conflated
            .fetch_add(self.conflated, Ordering::Relaxed);
        metrics
            .events_dropped
            .fetch_add(self.dropped, Ordering::Relaxed);
        metrics.connections.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(
            target: SESSION,
            conflated = self.conflated,
            dropped = self.dropped,
            close = ?self.close,
            "connection closed"
        );
    }
}

/// A connection stayed behind (or its writes stalled) and is closed with 1013.
#[derive(Debug)]
pub(crate) struct SlowConsumerClosed {
    pub conn: u64,
}

impl SlowConsumerClosed {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .slow_consumers_closed
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: SESSION, conn = self.conn, "slow consumer closed");
    }
}

// --- upstream feeds -------------------------------------------------------------------------

const UPSTREAM: &str = "tickcast::feed::upstream";

/// A venue refused a subscription: counted (in `feed_errors` and the feed's own errors),
/// logged at warn, and remembered on the feed so `/readyz` is degraded, naming it, until the
/// next connection.
#[derive(Debug)]
pub(crate) struct UpstreamSubscriptionRefused<'a> {
    pub feed: &'a str,
    pub reason: &'a str,
}

impl UpstreamSubscriptionRefused<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics, status: &super::feeds::FeedStatus) {
        metrics.feed_errors.fetch_add(1, Ordering::Relaxed);
        status.errors.fetch_add(1, Ordering::Relaxed);
        status.set_refused(Some(self.reason.to_owned()));
        tracing::warn!(
            target: UPSTREAM,
            feed = self.feed,
            reason = self.reason,
            "venue refused a subscription; feed degraded until it reconnects"
        );
    }
}

// --- log throttling -------------------------------------------------------------------------

/// At most one log line per second for an event that can happen on every batch; the line
/// reports everything counted since the previous one. Lock-free: the ingest thread calls it.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    /// Wall-clock ms of the last line (0 = none yet, so the first event logs at once).
    last_ms: AtomicI64,
    since_last: AtomicU64,
}

impl LogThrottle {
    const INTERVAL_MS: i64 = 1000;

    /// Adds `n` occurrences at `now_ms`; `Some(total since the last line)` when a line is due.
    pub(crate) fn add(&self, n: u64, now_ms: i64) -> Option<u64> {
        let pending = self.since_last.fetch_add(n, Ordering::Relaxed) + n;
        let last = self.last_ms.load(Ordering::Relaxed);
        // The compare-exchange elects one caller when several race past the interval.
        if now_ms - last >= Self::INTERVAL_MS
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since_last.fetch_sub(pending, Ordering::Relaxed);
            return Some(pending);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    #[test]
    fn throttle_logs_once_per_interval_with_the_total() {
        let t = LogThrottle::default();
        // (rows, now_ms) -> what the log line would report.
        let cases = [
            (3, 5_000, Some(3)),
            (2, 5_500, None),
            (4, 5_999, None),
            (1, 6_000, Some(7)),
            (5, 6_001, None),
            (1, 9_000, Some(6)),
        ];
        for (n, now, want) in cases {
            assert_eq!(t.add(n, now), want, "add({n}) at {now}");
        }
    }

    #[test]
    fn store_events_count() {
        let m = Metrics::default();
        let throttle = LogThrottle::default();
        for rows in [3, 4] {
            TicksNotPersisted {
                rows,
                capacity: 10,
                throttle: &throttle,
            }
            .emit(&m);
        }
        WriteBehindAbandoned { lost: 5 }.emit(&m);
        assert_eq!(load(&m.db_rows_dropped), 12);

        TickBatchWritten {
            rows: 100,
            duplicates: 7,
            bars: 3,
            indicators: 4,
            elapsed: Duration::from_millis(2),
            recovered_after: Some(3),
        }
        .emit(&m);
        assert_eq!(load(&m.db_rows_written), 100);
        assert_eq!(load(&m.db_rows_duplicate), 7);
        assert_eq!(load(&m.db_indicators_written), 4);
        assert_eq!(load(&m.db_bars_written), 3);
        assert_eq!(m.db_batch_seconds.count(), 1);

        let error = "connection refused";
        for then in [
            AfterWriteFailure::Retry {
                delay: Duration::from_millis(100),
            },
            AfterWriteFailure::BreakerOpened { backlog: 7 },
            AfterWriteFailure::StillOpen,
        ] {
            TickBatchWriteFailed {
                error: &error,
                failures: 1,
                then,
            }
            .emit(&m);
        }
        assert_eq!(load(&m.db_write_errors), 3);
    }

    #[test]
    fn pipeline_events_count() {
        let m = Metrics::default();
        PipelineBatchLate { late_ms: 600 }.emit(&m);
        PipelineBatchOverran {
            took: Duration::from_millis(1500),
        }
        .emit(&m);
        PipelineTicksMissed {
            symbol: SymbolId(4),
            missed: 9,
        }
        .emit(&m);
        assert_eq!(load(&m.pipeline_late_batches), 2);
        assert_eq!(load(&m.pipeline_missed_ticks), 9);
    }

    #[test]
    fn future_ticks_count_as_rejected() {
        let m = Metrics::default();
        let throttle = LogThrottle::default();
        for _ in 0..2 {
            FutureTicksRejected {
                rejected: 3,
                symbol: "AAPL",
                ahead_ms: 86_400_000,
                max_ms: 5_000,
                throttle: &throttle,
            }
            .emit(&m);
        }
        assert_eq!(load(&m.ticks_future), 6);
        assert_eq!(load(&m.ticks_rejected), 6);
    }

    #[test]
    fn session_events_count_and_balance_the_gauge() {
        let m = Metrics::default();
        ConnectionOpened.emit(&m);
        ConnectionOpened.emit(&m);
        ConnectionClosed {
            conflated: 2,
            dropped: 1,
            close: "gone",
        }
        .emit(&m);
        SlowConsumerClosed { conn: 1 }.emit(&m);
        assert_eq!(load(&m.connections), 1);
        assert_eq!(load(&m.connections_total), 2);
        assert_eq!(load(&m.events_conflated), 2);
        assert_eq!(load(&m.events_dropped), 1);
        assert_eq!(load(&m.slow_consumers_closed), 1);
    }
}
