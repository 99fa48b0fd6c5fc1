//! Process-wide counters, gauges and histograms, rendered as Prometheus text at `/metrics`.
//!
//! Plain atomics: every hot path records with one relaxed add and no allocation.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A fixed-bucket histogram of durations in seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_ns: AtomicU64,
}

/// Bucket bounds (seconds) for latencies from 50 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {sum}\n{name}_count{braces} {count}"
        );
    }
}

/// Every metric tickcast exports.
#[derive(Debug)]
pub struct Metrics {
    pub ticks_ingested: AtomicU64,
    pub ticks_rejected: AtomicU64,
    pub events_published: AtomicU64,
    pub events_fanned_out: AtomicU64,
    pub frames_sent: AtomicU64,
    pub events_sent: AtomicU64,
    pub events_conflated: AtomicU64,
    pub events_dropped: AtomicU64,
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub subscriptions: AtomicU64,
    pub slow_consumers_closed: AtomicU64,
    pub rate_limited_ops: AtomicU64,
    pub feed_errors: AtomicU64,
    /// Upstream messages that were not trades (acks, heartbeats, other channels).
    pub feed_ignored: AtomicU64,
    pub upstream_reconnects: AtomicU64,
    pub ingest_queue_depth: AtomicU64,
    pub pipeline_batches: AtomicU64,
    pub pipeline_late_batches: AtomicU64,
    pub pipeline_late_ticks: AtomicU64,
    pub pipeline_missed_ticks: AtomicU64,
    pub pipeline_batch_seconds: Histogram,
    /// Wall-clock ms when the pipeline last finished a batch (0 = never); `/readyz` reads it.
    pub pipeline_last_batch_ms: AtomicI64,
    pub db_rows_written: AtomicU64,
    pub db_rows_dropped: AtomicU64,
    pub db_write_errors: AtomicU64,
    pub db_backlog: AtomicU64,
    pub db_batch_seconds: Histogram,
    pub http_request_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Self {
            ticks_ingested: z(),
            ticks_rejected: z(),
            events_published: z(),
            events_fanned_out: z(),
            frames_sent: z(),
            events_sent: z(),
            events_conflated: z(),
            events_dropped: z(),
            connections: z(),
            connections_total: z(),
            connections_rejected: z(),
            subscriptions: z(),
            slow_consumers_closed: z(),
            rate_limited_ops: z(),
            feed_errors: z(),
            feed_ignored: z(),
            upstream_reconnects: z(),
            ingest_queue_depth: z(),
            pipeline_batches: z(),
            pipeline_late_batches: z(),
            pipeline_late_ticks: z(),
            pipeline_missed_ticks: z(),
            pipeline_batch_seconds: Histogram::new(LATENCY_BUCKETS),
            pipeline_last_batch_ms: AtomicI64::new(0),
            db_rows_written: z(),
            db_rows_dropped: z(),
            db_write_errors: z(),
            db_backlog: z(),
            db_batch_seconds: Histogram::new(LATENCY_BUCKETS),
            http_request_seconds: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl Metrics {
    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let counters: &[(&str, &str, &AtomicU64)] = &[
            (
                "tickcast_ticks_ingested_total",
                "ticks accepted by ingest",
                &self.ticks_ingested,
            ),
            (
                "tickcast_ticks_rejected_total",
                "ticks refused by validation",
                &self.ticks_rejected,
            ),
            (
                "tickcast_events_published_total",
                "events published to rooms",
                &self.events_published,
            ),
            (
                "tickcast_events_fanned_out_total",
                "event copies queued to subscribers",
                &self.events_fanned_out,
            ),
            (
                "tickcast_ws_frames_sent_total",
                "websocket frames written",
                &self.frames_sent,
            ),
            (
                "tickcast_ws_events_sent_total",
                "event objects written to sockets",
                &self.events_sent,
            ),
            (
                "tickcast_ws_events_conflated_total",
                "events replaced by a newer one (throttle or slow consumer)",
                &self.events_conflated,
            ),
            (
                "tickcast_ws_events_dropped_total",
                "events dropped by a full connection queue",
                &self.events_dropped,
            ),
            (
                "tickcast_ws_connections_total",
                "websocket connections accepted",
                &self.connections_total,
            ),
            (
                "tickcast_ws_connections_rejected_total",
                "websocket connections refused at the cap",
                &self.connections_rejected,
            ),
            (
                "tickcast_ws_slow_consumers_closed_total",
                "connections closed with 1013",
                &self.slow_consumers_closed,
            ),
            (
                "tickcast_ws_rate_limited_ops_total",
                "inbound ops refused by the rate limit",
                &self.rate_limited_ops,
            ),
            (
                "tickcast_feed_errors_total",
                "bad records and connection errors in feeds",
                &self.feed_errors,
            ),
            (
                "tickcast_feed_ignored_total",
                "upstream messages that were not trades",
                &self.feed_ignored,
            ),
            (
                "tickcast_upstream_reconnects_total",
                "upstream feed reconnect attempts",
                &self.upstream_reconnects,
            ),
            (
                "tickcast_pipeline_batches_total",
                "pipeline batches run",
                &self.pipeline_batches,
            ),
            (
                "tickcast_pipeline_late_batches_total",
                "pipeline batches that started late or overran",
                &self.pipeline_late_batches,
            ),
            (
                "tickcast_pipeline_late_ticks_total",
                "ticks whose exchange time fell in a closed bar",
                &self.pipeline_late_ticks,
            ),
            (
                "tickcast_pipeline_missed_ticks_total",
                "ticks evicted from a ring before the pipeline read them",
                &self.pipeline_missed_ticks,
            ),
            (
                "tickcast_db_rows_written_total",
                "tick rows persisted",
                &self.db_rows_written,
            ),
            (
                "tickcast_db_rows_dropped_total",
                "tick rows dropped because the write-behind queue was full",
                &self.db_rows_dropped,
            ),
            (
                "tickcast_db_write_errors_total",
                "failed database write attempts",
                &self.db_write_errors,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let gauges: &[(&str, &str, &AtomicU64)] = &[
            (
                "tickcast_ws_connections",
                "open websocket connections",
                &self.connections,
            ),
            (
                "tickcast_ws_subscriptions",
                "active subscriptions",
                &self.subscriptions,
            ),
            (
                "tickcast_ingest_queue_depth",
                "tick batches waiting for ingest",
                &self.ingest_queue_depth,
            ),
            (
                "tickcast_db_backlog",
                "tick rows waiting in the write-behind queue",
                &self.db_backlog,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        self.pipeline_batch_seconds.render(
            &mut out,
            "tickcast_pipeline_batch_seconds",
            "time to compute one pipeline batch",
            "",
        );
        self.db_batch_seconds.render(
            &mut out,
            "tickcast_db_write_batch_seconds",
            "time to persist one write-behind batch",
            "",
        );
        self.http_request_seconds.render(
            &mut out,
            "tickcast_http_request_seconds",
            "REST request latency",
            "",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.render(&mut out, "x", "help", "");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn render_names_every_counter() {
        let m = Metrics::default();
        m.connections.store(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("tickcast_ws_connections 3\n"));
        assert!(text.contains("# TYPE tickcast_ticks_ingested_total counter"));
    }
}
