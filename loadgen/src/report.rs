//! The run report: one struct, printed either for people or as one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::rest::RestReport;
use crate::stats::{ChannelGaps, Percentiles};

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub url: String,
    pub config: RunConfig,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// Length of the measured window actually observed.
    pub measured_s: f64,
    pub connections: Connections,
    /// Live events (tick, bar, indicators, book) delivered inside the window.
    pub events: u64,
    pub frames: u64,
    pub events_per_s: f64,
    pub frames_per_s: f64,
    /// Payload bytes of the server frames inside the window (text or binary, per `--encoding`;
    /// WebSocket frame headers not counted), replies and snapshots included.
    pub bytes: u64,
    /// `bytes / events`: what one live event costs on the wire, to compare encodings.
    pub bytes_per_event: f64,
    /// Time to open each established connection (TCP connect + handshake), whole run.
    pub connect_latency: Percentiles,
    /// Live events inside the window by `type` (tick, bar, indicators, book, other).
    pub events_by_type: BTreeMap<&'static str, u64>,
    /// `now - ts` of `tick` events inside the window.
    pub latency: Percentiles,
    /// `now - ts` of bars and indicators (ts = when computed) inside the window.
    pub latency_other: Percentiles,
    /// `now - ts` of `book` events (ts = ingest time) inside the window.
    pub latency_book: Percentiles,
    pub gaps: Gaps,
    /// Soak: connect-subscribe-unsubscribe-close cycles completed over the whole run.
    pub cycles: u64,
    /// Counted over the whole run.
    pub snapshots: u64,
    /// Snapshots with `"reset": true`.
    pub resets: u64,
    /// Live events with `"reset": true` inside the window (book events carrying the whole book).
    pub live_resets: u64,
    pub replies: u64,
    pub parse_errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Close codes of closes the server started, over the whole run.
    pub close_codes: BTreeMap<u16, u64>,
    pub loadgen: Loadgen,
    pub server: Option<Server>,
    pub rest: Option<RestReport>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RunConfig {
    pub connections: u64,
    /// Encoding of the server's frames: `json` or `msgpack`.
    pub encoding: &'static str,
    /// How sockets authenticated: `anonymous`, `token` (--token) or `jwt_hs256` (one minted
    /// token per socket).
    pub auth: &'static str,
    pub ramp_s: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub threads: usize,
    pub symbols_per_socket: usize,
    pub throttle_ms: u64,
    /// Books: the `depth` sent with `book:*` (none: the server's full depth).
    pub book_depth: Option<u32>,
    pub rate: f64,
    pub concurrency: usize,
    pub symbols_known: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Connections {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub failure_reasons: BTreeMap<String, u64>,
    /// Closed by the server with a close frame before the end of the run.
    pub closed_by_server: u64,
    /// Ended without any close frame (reset, EOF, protocol error).
    pub dropped: u64,
    pub drop_reasons: BTreeMap<String, u64>,
    /// Our close at the end was answered.
    pub clean_closes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Gaps {
    /// Events that followed a `seq` jump, inside the window.
    pub gap_events: u64,
    /// Events never seen: sum of `seq - last - 1`.
    pub missed: u64,
    pub out_of_order: u64,
    /// Of `gap_events`, those on an event with `"reset": true` (a book event carrying the whole
    /// book): gaps the client repaired from the event itself.
    pub gap_events_with_reset: u64,
    /// Distinct concrete channels that showed a gap on any connection.
    pub channels_with_gaps: usize,
    /// `missed / (events + missed)`.
    pub missed_ratio: f64,
    pub worst_channels: Vec<ChannelGap>,
}

#[derive(Debug, Serialize)]
pub struct ChannelGap {
    pub ch: String,
    #[serde(flatten)]
    pub gaps: ChannelGaps,
}

#[derive(Debug, Serialize)]
pub struct Loadgen {
    /// CPU cores the loadgen kept busy inside the window.
    pub cpu_cores: f64,
    pub threads: usize,
    pub rss_mb: f64,
    /// Share of the whole machine's cores busy inside the window (all processes, softirq).
    pub machine_busy: f64,
}

#[derive(Debug, Serialize)]
pub struct Server {
    pub pid: u32,
    pub cpu_cores: f64,
    /// At the end of the window.
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
    /// At the start of the window, and how much RSS grew over it (the soak's leak figure).
    pub rss_start_mb: Option<f64>,
    pub rss_drift_mb: Option<f64>,
}

fn map_line<K: std::fmt::Display, V: std::fmt::Display>(m: &BTreeMap<K, V>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pct_line(p: &Percentiles) -> String {
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms  (n={})",
        p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms, p.count
    )
}

impl Report {
    /// The summary for people.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let c = &self.connections;
        let _ = writeln!(
            s,
            "tickcast-loadgen {} against {}{}",
            self.scenario,
            self.url,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "  measured       {:.2} s", self.measured_s);
        if self.config.connections > 0 {
            let _ = writeln!(
                s,
                "  connections    attempted {}  established {}  failed {}  closed by server {}  dropped {}  clean closes {}",
                c.attempted, c.established, c.failed, c.closed_by_server, c.dropped, c.clean_closes
            );
            let _ = writeln!(
                s,
                "  connect time   {}  auth {}",
                pct_line(&self.connect_latency),
                self.config.auth
            );
            if !c.failure_reasons.is_empty() {
                let _ = writeln!(s, "  connect fails  {}", map_line(&c.failure_reasons));
            }
            if !c.drop_reasons.is_empty() {
                let _ = writeln!(s, "  drop reasons   {}", map_line(&c.drop_reasons));
            }
            let _ = writeln!(
                s,
                "  throughput     {:.0} events/s  {:.0} frames/s  ({:.2} events/frame)",
                self.events_per_s,
                self.frames_per_s,
                if self.frames > 0 {
                    self.events as f64 / self.frames as f64
                } else {
                    0.0
                }
            );
            let _ = writeln!(
                s,
                "  wire bytes     {:.1} bytes/event  ({} bytes of {} frames)",
                self.bytes_per_event, self.bytes, self.config.encoding
            );
            let _ = writeln!(s, "  by type        {}", map_line(&self.events_by_type));
            let _ = writeln!(s, "  tick latency   {}", pct_line(&self.latency));
            if self.latency_other.count > 0 {
                let _ = writeln!(s, "  bar/ind lat.   {}", pct_line(&self.latency_other));
            }
            if self.latency_book.count > 0 {
                let _ = writeln!(s, "  book latency   {}", pct_line(&self.latency_book));
            }
            let g = &self.gaps;
            let _ = writeln!(
                s,
                "  seq gaps       {} gap events ({} on a reset event), {} missed ({:.3}%), {} out of order, {} channels",
                g.gap_events,
                g.gap_events_with_reset,
                g.missed,
                g.missed_ratio * 100.0,
                g.out_of_order,
                g.channels_with_gaps
            );
            if !g.worst_channels.is_empty() {
                let worst: Vec<String> = g
                    .worst_channels
                    .iter()
                    .take(5)
                    .map(|w| format!("{}={}", w.ch, w.gaps.missed))
                    .collect();
                let _ = writeln!(s, "  worst channels {}", worst.join(" "));
            }
            let _ = writeln!(
                s,
                "  protocol       snapshots {}  resets {}  live resets {}  replies {}  parse errors {}  soak cycles {}",
                self.snapshots,
                self.resets,
                self.live_resets,
                self.replies,
                self.parse_errors,
                self.cycles
            );
            let _ = writeln!(s, "  errors         {}", map_line(&self.errors_by_code));
            let _ = writeln!(s, "  close codes    {}", map_line(&self.close_codes));
        }
        if let Some(r) = &self.rest {
            let _ = writeln!(
                s,
                "  rest           {}: {} requests ({:.1}/s of {:.1} target), {} 2xx, {} skipped at concurrency {}",
                r.base,
                r.requests,
                r.requests_per_s,
                r.target_rate,
                r.ok_2xx,
                r.skipped,
                r.concurrency
            );
            let _ = writeln!(s, "  rest latency   {}", pct_line(&r.latency));
            for e in &r.endpoints {
                let _ = writeln!(
                    s,
                    "    {:<12} n={:<6} status {}  errors {}  p99 {:.3} ms",
                    e.endpoint,
                    e.requests,
                    map_line(&e.statuses),
                    map_line(&e.errors),
                    e.latency.p99_ms
                );
            }
        }
        let _ = writeln!(
            s,
            "  loadgen        {:.2} cores of {} threads, rss {:.0} MB; machine {:.0}% busy",
            self.loadgen.cpu_cores,
            self.loadgen.threads,
            self.loadgen.rss_mb,
            self.loadgen.machine_busy * 100.0
        );
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server pid {}  {:.2} cores, rss {:.0} MB (peak {:.0} MB; {:+.1} MB over the window)",
                sv.pid,
                sv.cpu_cores,
                sv.rss_mb,
                sv.peak_rss_mb,
                sv.rss_drift_mb.unwrap_or(0.0)
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  WARNING: {w}");
        }
        s
    }
}
