//! Process-wide counters, gauges and histograms, rendered as Prometheus text at `/metrics`.
//!
//! Plain atomics: every hot path records with one relaxed add and no allocation. Each metric is
//! declared once, as one row of the [`metrics!`] table below (field, exported name, type, help);
//! the struct, its `Default` and [`Metrics::render`] are generated from that row, so a metric
//! cannot be declared and then left out of `/metrics`.

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
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
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

    pub(crate) fn observe(&self, d: Duration) {
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

/// A Prometheus metric type, as written on its `# TYPE` line.
/// Responses counted by status class, 1xx to 5xx.
#[derive(Debug, Default)]
pub struct StatusClasses([AtomicU64; 5]);

impl StatusClasses {
    pub fn count(&self, status: u16) {
        if let Some(class) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.0.get(i as usize))
        {
            class.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `tickcast_http_responses_total{code="Nxx"}` for every class.
    pub fn render(&self, out: &mut String) {
        let name = "tickcast_http_responses_total";
        let _ = writeln!(
            out,
            "# HELP {name} REST responses by status class\n# TYPE {name} counter"
        );
        for (i, n) in self.0.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{code=\"{}xx\"}} {}",
                i + 1,
                n.load(Ordering::Relaxed)
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// What `/metrics` says about one metric besides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
}

/// One `# HELP`/`# TYPE` header and the value of a counter or gauge.
fn render_scalar(out: &mut String, d: &Descriptor, value: &AtomicU64) {
    let (name, help, kind) = (d.name, d.help, d.kind.as_str());
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
        value.load(Ordering::Relaxed)
    );
}

/// The storage behind each metric type: counters and gauges are one `AtomicU64` (gauges go up
/// and down with `fetch_add`/`fetch_sub` or are `store`d), histograms are a [`Histogram`].
macro_rules! metric_storage {
    (counter) => {
        AtomicU64
    };
    (gauge) => {
        AtomicU64
    };
    (histogram) => {
        Histogram
    };
}

macro_rules! metric_new {
    (counter) => {
        AtomicU64::new(0)
    };
    (gauge) => {
        AtomicU64::new(0)
    };
    (histogram) => {
        Histogram::new(LATENCY_BUCKETS)
    };
}

macro_rules! metric_type {
    (counter) => {
        MetricType::Counter
    };
    (gauge) => {
        MetricType::Gauge
    };
    (histogram) => {
        MetricType::Histogram
    };
}

macro_rules! metric_render {
    (counter, $out:expr, $d:expr, $field:expr) => {
        render_scalar($out, $d, &$field)
    };
    (gauge, $out:expr, $d:expr, $field:expr) => {
        render_scalar($out, $d, &$field)
    };
    (histogram, $out:expr, $d:expr, $field:expr) => {
        $field.render($out, $d.name, $d.help, "")
    };
}

/// Generates [`Metrics`] (one public field per row), its `Default`, [`Metrics::DESCRIPTORS`]
/// and [`Metrics::render`] from one table. Rows render in table order. `internal` fields (listed
/// first) are process state kept beside the metrics but not exported.
macro_rules! metrics {
    (
        internal {
            $( $(#[$idoc:meta])* $ifield:ident: $ity:ty, )*
        }
        $( $(#[$doc:meta])* $kind:ident $field:ident => $name:literal, $help:literal; )*
    ) => {
        /// Every metric tickcast exports.
        #[derive(Debug)]
        pub struct Metrics {
            $( $(#[$doc])* pub $field: metric_storage!($kind), )*
            $( $(#[$idoc])* pub $ifield: $ity, )*
        }

        impl Default for Metrics {
            fn default() -> Self {
                Self {
                    $( $field: metric_new!($kind), )*
                    $( $ifield: <$ity>::default(), )*
                }
            }
        }

        impl Metrics {
            /// Every exported metric, in the order `/metrics` lists them.
            #[cfg(test)]
            pub(crate) const DESCRIPTORS: &'static [Descriptor] = &[
                $( Descriptor { name: $name, kind: metric_type!($kind), help: $help }, )*
            ];

            /// Prometheus text exposition format, version 0.0.4.
            pub(crate) fn render(&self) -> String {
                let mut out = String::with_capacity(8 * 1024);
                $(
                    let d = Descriptor { name: $name, kind: metric_type!($kind), help: $help };
                    metric_render!($kind, &mut out, &d, self.$field);
                )*
                out
            }
        }
    };
}

metrics! {
    internal {
        /// Wall-clock ms when the pipeline last finished a batch (0 = never); `/readyz` reads it.
        pipeline_last_batch_ms: AtomicI64,
        /// Per-upstream-feed counters (labelled by feed) and health; rendered after the table.
        upstreams: super::feeds::FeedRegistry,
        /// REST responses by status class (`tickcast_http_responses_total{code="2xx"}`).
        http_responses: StatusClasses,
    }

    counter ticks_ingested => "tickcast_ticks_ingested_total", "ticks accepted by ingest";
    counter ticks_rejected => "tickcast_ticks_rejected_total", "ticks refused by validation";
    /// Also counted in `ticks_rejected`.
    counter ticks_future => "tickcast_ticks_future_total",
        "live-feed ticks refused for an exchange time too far ahead of the server clock";
    counter book_updates => "tickcast_book_updates_total",
        "order book updates that changed a published view (one book event each)";
    counter book_updates_rejected => "tickcast_book_updates_rejected_total",
        "order book updates refused by validation";
    counter book_levels_dropped => "tickcast_book_levels_dropped_total",
        "book levels dropped past book.max_levels (the farthest from the touch)";
    counter events_published => "tickcast_events_published_total", "events published to rooms";
    counter events_fanned_out => "tickcast_events_fanned_out_total",
        "event copies queued to subscribers";
    counter frames_sent => "tickcast_ws_frames_sent_total", "websocket frames written";
    counter events_sent => "tickcast_ws_events_sent_total", "event objects written to sockets";
    counter events_conflated => "tickcast_ws_events_conflated_total",
        "events replaced by a newer one (throttle or slow consumer)";
    counter events_dropped => "tickcast_ws_events_dropped_total",
        "events dropped by a full connection queue";
    counter connections_total => "tickcast_ws_connections_total", "websocket connections accepted";
    counter connections_rejected => "tickcast_ws_connections_rejected_total",
        "websocket connections refused at the cap";
    counter connections_rejected_per_address => "tickcast_ws_connections_rejected_per_address_total",
        "websocket connections refused at the per-address cap";
    counter upgrades_rate_limited => "tickcast_ws_upgrades_rate_limited_total",
        "websocket upgrades refused by the per-address rate limit";
    counter tokens_verified => "tickcast_ws_tokens_verified_total",
        "connection tokens verified (at an upgrade the limits admitted, or in an auth op)";
    counter http_connections_rejected => "tickcast_http_connections_rejected_total",
        "http connections closed at once at server.max_http_connections";
    counter http_connections_rejected_per_address => "tickcast_http_connections_rejected_per_address_total",
        "http connections closed at once at server.max_http_connections_per_ip";
    counter http_rate_limited => "tickcast_http_rate_limited_total",
        "http requests refused by the rate limit";
    counter slow_consumers_closed => "tickcast_ws_slow_consumers_closed_total",
        "connections closed with 1013";
    counter portfolio_opens => "tickcast_ws_portfolio_opens_total",
        "portfolio channels opened by subscribes (each reads the store)";
    counter history_reads => "tickcast_ws_history_reads_total",
        "resume gaps read from history older than the ring (an edge's stream)";
    counter rate_limited_ops => "tickcast_ws_rate_limited_ops_total",
        "inbound ops refused by the rate limit";
    counter feed_errors => "tickcast_feed_errors_total",
        "bad records and connection errors in feeds";
    /// Upstream messages that were not trades (acks, heartbeats, other channels).
    counter feed_ignored => "tickcast_feed_ignored_total", "upstream messages that were not trades";
    counter upstream_reconnects => "tickcast_upstream_reconnects_total",
        "upstream feed reconnect attempts";

    counter pipeline_batches => "tickcast_pipeline_batches_total", "pipeline batches run";
    counter pipeline_late_batches => "tickcast_pipeline_late_batches_total",
        "pipeline batches that started late or overran";
    counter pipeline_late_ticks => "tickcast_pipeline_late_ticks_total",
        "ticks whose exchange time fell in a closed bar";
    counter pipeline_missed_ticks => "tickcast_pipeline_missed_ticks_total",
        "ticks evicted from a ring before the pipeline read them";
    counter db_rows_written => "tickcast_db_rows_written_total", "tick rows persisted";
    counter db_rows_duplicate => "tickcast_db_rows_duplicate_total",
        "tick rows skipped because they were already stored (a retried batch)";
    counter db_bars_written => "tickcast_db_bars_written_total",
        "closed 1 s and 1 m bars persisted";
    counter db_indicators_written => "tickcast_db_indicator_rows_written_total",
        "rows of indicator history persisted (one per symbol per closed 1 s bar)";
    counter db_rows_dropped => "tickcast_db_rows_dropped_total",
        "tick and bar rows dropped: the write-behind queue (and journal) full, or on_overload = drop";
    counter db_write_errors => "tickcast_db_write_errors_total", "failed database write attempts";
    counter db_rows_journaled => "tickcast_db_rows_journaled_total",
        "tick and bar rows appended to the local journal because the write-behind queue was full";
    counter db_rows_replayed => "tickcast_db_rows_replayed_from_journal_total",
        "journaled tick and bar rows committed to the database";
    counter db_journal_skipped_bytes => "tickcast_db_journal_skipped_bytes_total",
        "journal bytes skipped on replay: a torn tail or a record failing its checksum";

    counter cluster_events_published => "tickcast_cluster_events_published_total",
        "events acknowledged by the JetStream stream (ingest)";
    counter cluster_publish_dropped => "tickcast_cluster_publish_dropped_total",
        "events dropped because the stream publish buffer was full (ingest)";
    counter cluster_publish_errors => "tickcast_cluster_publish_errors_total",
        "failed stream publish attempts, retried (ingest)";
    counter cluster_events_received => "tickcast_cluster_events_received_total",
        "events received from the stream (edge)";
    counter cluster_decode_errors => "tickcast_cluster_decode_errors_total",
        "stream messages that were not tickcast events (edge)";
    counter cluster_resumes_from_stream => "tickcast_cluster_resumes_from_stream_total",
        "resumes whose gap was read from the stream, older than the ring (edge)";
    counter cluster_leadership_changes => "tickcast_cluster_leadership_changes_total",
        "times this node took the ingest lease";

    gauge connections => "tickcast_ws_connections", "open websocket connections";
    gauge cluster_leader => "tickcast_cluster_leader", "1 while this node holds the ingest lease";
    gauge cluster_publish_buffer_bytes => "tickcast_cluster_publish_buffer_bytes",
        "encoded events waiting to be published to the stream (ingest)";
    gauge cluster_stream_lag_events => "tickcast_cluster_stream_lag_events",
        "stream messages not yet received by this edge";
    gauge cluster_stream_lag_ms => "tickcast_cluster_stream_lag_ms",
        "age of the newest stream message this edge received, at receipt";
    gauge subscriptions => "tickcast_ws_subscriptions", "active subscriptions";
    gauge ingest_queue_depth => "tickcast_ingest_queue_depth", "tick batches waiting for ingest";
    gauge db_backlog => "tickcast_db_backlog", "tick and bar rows waiting in the write-behind queue";
    gauge db_journal_bytes => "tickcast_db_journal_bytes",
        "bytes of rows in the local journal waiting for the database";

    histogram pipeline_batch_seconds => "tickcast_pipeline_batch_seconds",
        "time to compute one pipeline batch";
    histogram db_batch_seconds => "tickcast_db_write_batch_seconds",
        "time to persist one write-behind batch";
    histogram http_request_seconds => "tickcast_http_request_seconds", "REST request latency";
    histogram ws_delivery_seconds => "tickcast_ws_delivery_seconds",
        "time from an event's queueing for a connection to the end of the write that sent it (the oldest event of each write)";

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
    fn responses_count_by_status_class() {
        let c = StatusClasses::default();
        for status in [200, 204, 404, 429, 503, 99, 600] {
            c.count(status);
        }
        let mut out = String::new();
        c.render(&mut out);
        for line in [
            "tickcast_http_responses_total{code=\"1xx\"} 0\n",
            "tickcast_http_responses_total{code=\"2xx\"} 2\n",
            "tickcast_http_responses_total{code=\"4xx\"} 2\n",
            "tickcast_http_responses_total{code=\"5xx\"} 1\n",
        ] {
            assert!(out.contains(line), "{line}{out}");
        }
    }

    #[test]
    fn render_names_every_counter() {
        let m = Metrics::default();
        m.connections.store(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("tickcast_ws_connections 3\n"));
        assert!(text.contains("# TYPE tickcast_ticks_ingested_total counter"));
    }

    #[test]
    fn every_declared_metric_is_rendered_once_with_help_and_type() {
        let text = Metrics::default().render();
        for d in Metrics::DESCRIPTORS {
            let (name, kind) = (d.name, d.kind.as_str());
            let help = format!("# HELP {name} {}\n", d.help);
            let header = format!("{help}# TYPE {name} {kind}\n");
            assert_eq!(text.matches(&header).count(), 1, "{name}:\n{text}");
            // The value lines follow their header.
            let value = match d.kind {
                MetricType::Counter | MetricType::Gauge => format!("{header}{name} 0\n"),
                MetricType::Histogram => format!("{header}{name}_bucket{{le=\"0.00005\"}} 0\n"),
            };
            assert!(text.contains(&value), "{name}:\n{text}");
        }
        // Nothing rendered that is not declared, and no name declared twice.
        assert_eq!(
            text.matches("# HELP ").count(),
            Metrics::DESCRIPTORS.len(),
            "{text}"
        );
        let mut names: Vec<&str> = Metrics::DESCRIPTORS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metrics::DESCRIPTORS.len());
    }
}
