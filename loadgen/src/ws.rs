//! WebSocket connections: connect, subscribe, read and account every frame until the deadline,
//! then close with 1000.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::frame::for_each_event;
use crate::stats::{SeqTracker, ShardedHistogram};
use crate::target::Target;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer per socket. tungstenite's default (128 KiB) would cost 1.3 GB at 10k sockets;
/// frames larger than this still arrive whole, the buffer just grows for them.
const READ_BUFFER: usize = 16 * 1024;

/// Time allowed for the close handshake at the end of a run.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// What one connection does once open.
#[derive(Debug, Clone)]
pub enum Role {
    /// Subscribes `ticks:*`.
    Bot,
    /// Subscribes these symbols' `ticks:SYM` with `throttle_ms`, and their `indicators:SYM`.
    Dashboard {
        symbols: Vec<String>,
        throttle_ms: u64,
    },
    /// Subscribes to nothing.
    Idle,
    /// Soak: cycles of connect, a random subscription mix over `symbols`, a short read, an
    /// unsubscribe, close, until the run ends. `seed` varies the mix per connection.
    Churn { symbols: Vec<String>, seed: u64 },
}

impl Role {
    /// The subscribe ops this role sends, as JSON text.
    pub fn subscribe_ops(&self) -> Vec<String> {
        match self {
            Role::Bot => {
                vec![r#"{"op":"subscribe","id":1,"channels":["ticks:*"]}"#.to_string()]
            }
            Role::Dashboard {
                symbols,
                throttle_ms,
            } => {
                let chans = |kind: &str| -> Vec<String> {
                    symbols.iter().map(|s| format!("{kind}:{s}")).collect()
                };
                let mut ticks = serde_json::json!({
                    "op": "subscribe", "id": 1, "channels": chans("ticks"),
                });
                if *throttle_ms > 0 {
                    ticks["throttle_ms"] = (*throttle_ms).into();
                }
                let ind = serde_json::json!({
                    "op": "subscribe", "id": 2, "channels": chans("indicators"),
                });
                vec![ticks.to_string(), ind.to_string()]
            }
            Role::Idle => Vec::new(),
            Role::Churn { symbols, seed } => churn_ops(symbols, *seed).0,
        }
    }
}

/// One churn cycle's ops: the subscribes, and the unsubscribe sent before closing.
fn churn_ops(symbols: &[String], seed: u64) -> (Vec<String>, String) {
    let mut rng = SplitMix::new(seed);
    let picked = rng.pick(symbols, 3);
    let mut channels: Vec<String> = picked.iter().map(|s| format!("ticks:{s}")).collect();
    channels.extend(picked.iter().map(|s| format!("indicators:{s}")));
    if rng.next_u64().is_multiple_of(2) {
        channels.push("bars.1s:*".into());
    }
    let mut sub = serde_json::json!({"op": "subscribe", "id": 1, "channels": channels});
    if rng.next_u64().is_multiple_of(3) {
        sub["snapshot"] = 64.into();
    }
    if rng.next_u64().is_multiple_of(2) {
        sub["throttle_ms"] = 100.into();
    }
    let unsub =
        serde_json::json!({"op": "unsubscribe", "id": 2, "channels": [channels[0].clone()]});
    (vec![sub.to_string()], unsub.to_string())
}

/// Counters every connection task updates, read by the progress line and the final report.
pub struct Shared {
    /// True only inside the measured window.
    pub measuring: AtomicBool,
    /// Text frames and live events inside the window.
    pub frames_measured: AtomicU64,
    pub events_measured: AtomicU64,
    /// Text frames and live events over the whole run, for the progress line.
    pub frames_seen: AtomicU64,
    pub events_seen: AtomicU64,
    pub attempted: AtomicU64,
    pub established: AtomicU64,
    pub failed: AtomicU64,
    /// Connections open right now.
    pub open: AtomicU64,
    /// Soak: connect-subscribe-unsubscribe-close cycles completed.
    pub cycles: AtomicU64,
    /// `now - ts` of `tick` events inside the window, µs.
    pub latency: ShardedHistogram,
    /// TCP connect plus WebSocket handshake of each established connection, µs.
    pub connect: ShardedHistogram,
    /// `now - ts` of other live events (bars, indicators: ts is when they were computed), µs.
    pub latency_other: ShardedHistogram,
}

impl Shared {
    pub fn new(shards: usize) -> Self {
        Self {
            measuring: AtomicBool::new(false),
            frames_measured: AtomicU64::new(0),
            events_measured: AtomicU64::new(0),
            frames_seen: AtomicU64::new(0),
            events_seen: AtomicU64::new(0),
            attempted: AtomicU64::new(0),
            established: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            latency: ShardedHistogram::new(shards),
            latency_other: ShardedHistogram::new(shards),
            connect: ShardedHistogram::new(shards),
        }
    }
}

/// What one connection saw over the whole run (gaps only inside the window).
#[derive(Debug, Default)]
pub struct ConnOutcome {
    pub established: bool,
    /// Why the connection could not be opened.
    pub failure: Option<String>,
    pub seqs: SeqTracker,
    /// Live events inside the window by `type`, see [`EventKind`].
    pub by_kind: [u64; EventKind::COUNT],
    pub snapshots: u64,
    pub resets: u64,
    pub replies: u64,
    pub parse_errors: u64,
    pub errors: HashMap<String, u64>,
    /// Close code of a close the server started (before our own close).
    pub server_close: Option<u16>,
    /// Set when the connection ended without any close frame (reset, EOF, protocol error).
    pub dropped: Option<String>,
    /// Our close at the end was answered by the server.
    pub clean_close: bool,
}

/// Live event types counted apart in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Tick = 0,
    Bar = 1,
    Indicators = 2,
    Other = 3,
}

impl EventKind {
    pub const COUNT: usize = 4;
    pub const ALL: [EventKind; Self::COUNT] = [
        EventKind::Tick,
        EventKind::Bar,
        EventKind::Indicators,
        EventKind::Other,
    ];

    pub fn of(kind: &str) -> Self {
        match kind {
            "tick" => EventKind::Tick,
            "bar" => EventKind::Bar,
            "indicators" => EventKind::Indicators,
            _ => EventKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Tick => "tick",
            EventKind::Bar => "bar",
            EventKind::Indicators => "indicators",
            EventKind::Other => "other",
        }
    }
}

/// Nanoseconds since the Unix epoch, the unit of the server's `ts`.
pub fn epoch_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Opens one WebSocket to the checked loopback address.
pub async fn connect(target: &Target) -> anyhow::Result<Ws> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let req = target.ws_url.as_str().into_client_request()?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(
        req,
        MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await?;
    Ok(ws)
}

/// Short, stable label for a connect failure, for the report's histogram of reasons.
fn failure_label(e: &anyhow::Error) -> String {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.raw_os_error() == Some(libc::EMFILE) {
            return "too_many_open_files".into();
        }
        return format!("io_{:?}", io.kind()).to_lowercase();
    }
    if let Some(t) = e.downcast_ref::<tungstenite::Error>() {
        return match t {
            tungstenite::Error::Http(resp) => format!("http_{}", resp.status().as_u16()),
            tungstenite::Error::Io(io) => format!("io_{:?}", io.kind()).to_lowercase(),
            other => format!("handshake: {other}"),
        };
    }
    e.to_string()
}

/// Static per-run settings for connection tasks.
#[derive(Clone)]
pub struct ConnConfig {
    pub target: Arc<Target>,
    pub shared: Arc<Shared>,
    pub connect_timeout: Duration,
    /// When the measured window closes and every socket closes.
    pub end: Instant,
    pub stop: watch::Receiver<bool>,
}

/// Runs one connection from connect to close.
pub async fn run_conn(idx: usize, role: Role, cfg: ConnConfig) -> ConnOutcome {
    if let Role::Churn { symbols, seed } = role {
        return run_churn(idx, &symbols, seed, cfg).await;
    }
    let ConnConfig {
        target,
        shared,
        connect_timeout,
        end,
        mut stop,
    } = cfg;
    let mut out = ConnOutcome::default();
    shared.attempted.fetch_add(1, Relaxed);
    let started = Instant::now();
    let ws = match timeout(connect_timeout, connect(&target)).await {
        Ok(Ok(ws)) => {
            let us = started.elapsed().as_micros() as u64;
            shared.connect.record_all(idx, &[us]);
            ws
        }
        Ok(Err(e)) => {
            shared.failed.fetch_add(1, Relaxed);
            out.failure = Some(failure_label(&e));
            return out;
        }
        Err(_) => {
            shared.failed.fetch_add(1, Relaxed);
            out.failure = Some("connect_timeout".into());
            return out;
        }
    };
    out.established = true;
    shared.established.fetch_add(1, Relaxed);
    shared.open.fetch_add(1, Relaxed);
    session(idx, ws, &role, &shared, end, &mut stop, &mut out).await;
    shared.open.fetch_sub(1, Relaxed);
    out
}

async fn session(
    idx: usize,
    mut ws: Ws,
    role: &Role,
    shared: &Shared,
    end: Instant,
    stop: &mut watch::Receiver<bool>,
    out: &mut ConnOutcome,
) {
    for op in role.subscribe_ops() {
        if let Err(e) = ws.send(Message::text(op)).await {
            out.dropped = Some(format!("send: {e}"));
            return;
        }
    }
    let mut lat = Latencies::default();
    let deadline = sleep_until(end);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            _ = &mut deadline => break,
            _ = stop.changed() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    on_text(idx, text.as_str(), shared, out, &mut lat);
                }
                Some(Ok(Message::Close(frame))) => {
                    out.server_close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    // Let tungstenite send its close reply, briefly.
                    let _ = timeout(Duration::from_secs(1), async {
                        while ws.next().await.is_some() {}
                    })
                    .await;
                    return;
                }
                Some(Ok(_)) => {} // pings are answered by tungstenite; binary is not in v1
                Some(Err(e)) => {
                    out.dropped = Some(drop_label(&e));
                    return;
                }
                None => {
                    out.dropped = Some("eof".into());
                    return;
                }
            },
        }
    }
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if ws.close(Some(close)).await.is_err() {
        return;
    }
    // Drain until the server echoes the close; frames arriving now are not counted.
    let drained = timeout(CLOSE_GRACE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None => return true,
                Some(Ok(_)) => {}
                Some(Err(_)) => return false,
            }
        }
    })
    .await;
    out.clean_close = matches!(drained, Ok(true));
}

/// Soak: connect, subscribe a random mix, read for a random 0.2-1.5 s, unsubscribe one channel,
/// close; again, until the run ends. Every cycle leaves the server with nothing of this socket's
/// to hold, so whatever the server's RSS keeps growing by is a leak.
async fn run_churn(idx: usize, symbols: &[String], seed: u64, cfg: ConnConfig) -> ConnOutcome {
    let ConnConfig {
        target,
        shared,
        connect_timeout,
        end,
        mut stop,
    } = cfg;
    let mut out = ConnOutcome::default();
    let mut lat = Latencies::default();
    let mut rng = SplitMix::new(seed);
    while Instant::now() < end && !*stop.borrow() {
        shared.attempted.fetch_add(1, Relaxed);
        let mut ws = match timeout(connect_timeout, connect(&target)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                shared.failed.fetch_add(1, Relaxed);
                out.failure = Some(failure_label(&e));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                shared.failed.fetch_add(1, Relaxed);
                out.failure = Some("connect_timeout".into());
                continue;
            }
        };
        out.established = true;
        shared.established.fetch_add(1, Relaxed);
        shared.open.fetch_add(1, Relaxed);
        let (subscribes, unsubscribe) = churn_ops(symbols, rng.next_u64());
        for op in subscribes {
            let _ = ws.send(Message::text(op)).await;
        }
        let dwell = Duration::from_millis(200 + rng.next_u64() % 1300);
        let until = (Instant::now() + dwell).min(end);
        loop {
            tokio::select! {
                biased;
                _ = sleep_until(until) => break,
                _ = stop.changed() => break,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        on_text(idx, text.as_str(), &shared, &mut out, &mut lat);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        out.server_close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        out.dropped = Some(drop_label(&e));
                        break;
                    }
                    None => break,
                },
            }
        }
        let _ = ws.send(Message::text(unsubscribe)).await;
        let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
        shared.open.fetch_sub(1, Relaxed);
        shared.cycles.fetch_add(1, Relaxed);
    }
    out
}

fn drop_label(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => format!("io_{:?}", io.kind()).to_lowercase(),
        tungstenite::Error::Protocol(p) => format!("protocol: {p}"),
        tungstenite::Error::Capacity(c) => format!("capacity: {c}"),
        other => other.to_string(),
    }
}

/// Accounts one text frame: every event in it, latency against one clock read per frame.
fn on_text(idx: usize, text: &str, shared: &Shared, out: &mut ConnOutcome, lat: &mut Latencies) {
    let measuring = shared.measuring.load(Relaxed);
    let now = epoch_ns();
    lat.ticks.clear();
    lat.other.clear();
    let by_kind = &mut out.by_kind;
    let mut live = 0u64;
    let seqs = &mut out.seqs;
    let (snapshots, resets, replies, errors) = (
        &mut out.snapshots,
        &mut out.resets,
        &mut out.replies,
        &mut out.errors,
    );
    let res = for_each_event(text, |ev| match ev.kind.as_ref() {
        "snapshot" => {
            *snapshots += 1;
            *resets += u64::from(ev.reset);
            if let (Some(ch), Some(seq)) = (ev.ch.as_deref(), ev.seq) {
                seqs.on_snapshot(ch, seq);
            }
        }
        "error" => {
            let code = ev.code.as_deref().unwrap_or("(none)");
            match errors.get_mut(code) {
                Some(n) => *n += 1,
                None => {
                    errors.insert(code.to_string(), 1);
                }
            }
        }
        "ack" | "pong" | "list" => *replies += 1,
        _ => {
            live += 1;
            if let (Some(ch), Some(seq)) = (ev.ch.as_deref(), ev.seq) {
                seqs.on_event(ch, seq, measuring);
            }
            if measuring {
                let kind = EventKind::of(&ev.kind);
                by_kind[kind as usize] += 1;
                if let Some(ts) = ev.ts {
                    let us = now.saturating_sub(ts) / 1000;
                    match kind {
                        EventKind::Tick => lat.ticks.push(us),
                        _ => lat.other.push(us),
                    }
                }
            }
        }
    });
    if res.is_err() {
        out.parse_errors += 1;
    }
    shared.frames_seen.fetch_add(1, Relaxed);
    shared.events_seen.fetch_add(live, Relaxed);
    if measuring {
        shared.frames_measured.fetch_add(1, Relaxed);
        shared.events_measured.fetch_add(live, Relaxed);
        shared.latency.record_all(idx, &lat.ticks);
        shared.latency_other.record_all(idx, &lat.other);
    }
}

/// Per-connection scratch buffers for one frame's latencies, reused across frames.
#[derive(Default)]
struct Latencies {
    ticks: Vec<u64>,
    other: Vec<u64>,
}

/// Asks the server for its symbols with the `list` op over a short-lived connection.
pub async fn discover_symbols(target: &Target) -> anyhow::Result<Vec<String>> {
    let run = async {
        let mut ws = connect(target)
            .await
            .context("connecting for the list op")?;
        ws.send(Message::text(r#"{"op":"list","id":1}"#)).await?;
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg? else { continue };
            let v: serde_json::Value = serde_json::from_str(text.as_str())?;
            for ev in v.as_array().cloned().unwrap_or_else(|| vec![v]) {
                if ev["type"] == "list" {
                    let syms: Vec<String> = ev["symbols"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let _ = ws.close(None).await;
                    return Ok(syms);
                }
            }
        }
        bail!("connection closed before the list reply")
    };
    let syms = timeout(Duration::from_secs(5), run)
        .await
        .context("no list reply within 5s")??;
    anyhow::ensure!(!syms.is_empty(), "the server listed no symbols");
    Ok(syms)
}

/// A small, seedable generator for picking symbols; no need for a crypto-grade RNG here.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `k` distinct items of `from` (all of them when `k >= from.len()`).
    pub fn pick<T: Clone>(&mut self, from: &[T], k: usize) -> Vec<T> {
        let mut idx: Vec<usize> = (0..from.len()).collect();
        let k = k.min(idx.len());
        for i in 0..k {
            let j = i + (self.next_u64() % (idx.len() - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx[..k].iter().map(|&i| from[i].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_cycles_subscribe_a_valid_mix_and_unsubscribe_part_of_it() {
        let symbols: Vec<String> = ["AAPL", "MSFT", "NVDA", "TSLA"].map(String::from).to_vec();
        let mut with_snapshot = 0;
        for seed in 0..64 {
            let (subs, unsub) = churn_ops(&symbols, seed);
            assert_eq!(subs.len(), 1);
            let sub: serde_json::Value = serde_json::from_str(&subs[0]).expect("json");
            assert_eq!(sub["op"], "subscribe");
            let channels = sub["channels"].as_array().expect("channels");
            assert!(channels.len() >= 6, "{sub}");
            with_snapshot += usize::from(sub.get("snapshot").is_some());
            let unsub: serde_json::Value = serde_json::from_str(&unsub).expect("json");
            assert_eq!(unsub["op"], "unsubscribe");
            assert!(channels.contains(&unsub["channels"][0]), "{unsub}");
            // The same seed gives the same cycle (a soak run is repeatable).
            assert_eq!(churn_ops(&symbols, seed).0, vec![subs[0].clone()]);
        }
        assert!((1..64).contains(&with_snapshot), "a mix, not all or none");
    }

    #[test]
    fn dashboard_ops() {
        let role = Role::Dashboard {
            symbols: vec!["AAPL".into(), "MSFT".into()],
            throttle_ms: 250,
        };
        let ops = role.subscribe_ops();
        let ticks: serde_json::Value = serde_json::from_str(&ops[0]).unwrap();
        assert_eq!(
            ticks["channels"],
            serde_json::json!(["ticks:AAPL", "ticks:MSFT"])
        );
        assert_eq!(ticks["throttle_ms"], 250);
        let ind: serde_json::Value = serde_json::from_str(&ops[1]).unwrap();
        assert_eq!(
            ind["channels"],
            serde_json::json!(["indicators:AAPL", "indicators:MSFT"])
        );
        assert!(ind.get("throttle_ms").is_none());
        let bot: serde_json::Value = serde_json::from_str(&Role::Bot.subscribe_ops()[0]).unwrap();
        assert_eq!(bot["channels"], serde_json::json!(["ticks:*"]));
    }

    #[test]
    fn on_text_accounts_frames() {
        let shared = Shared::new(1);
        let mut out = ConnOutcome::default();
        let mut buf = Latencies::default();
        let ts = epoch_ns() - 2_000_000;
        on_text(
            0,
            r#"{"type":"snapshot","ch":"ticks:A","seq":5,"data":[]}"#,
            &shared,
            &mut out,
            &mut buf,
        );
        shared.measuring.store(true, Relaxed);
        let frame = format!(
            r#"[{{"type":"tick","ch":"ticks:A","seq":6,"ts":{ts}}},{{"type":"tick","ch":"ticks:A","seq":9,"ts":{ts}}}]"#
        );
        on_text(0, &frame, &shared, &mut out, &mut buf);
        on_text(
            0,
            r#"{"type":"error","code":"rate_limited","message":"x"}"#,
            &shared,
            &mut out,
            &mut buf,
        );
        on_text(0, "not json", &shared, &mut out, &mut buf);
        assert_eq!(out.snapshots, 1);
        assert_eq!(out.errors["rate_limited"], 1);
        assert_eq!(out.parse_errors, 1);
        assert_eq!(shared.events_measured.load(Relaxed), 2);
        assert_eq!(shared.frames_measured.load(Relaxed), 3);
        let mut gaps = HashMap::new();
        out.seqs.merge_into(&mut gaps);
        assert_eq!(gaps["ticks:A"].missed, 2);
        let h = shared.latency.merged();
        assert_eq!(h.len(), 2);
        assert!(h.min() >= 2000, "latency ≥ 2 ms, got {} µs", h.min());
        assert_eq!(out.by_kind[EventKind::Tick as usize], 2);
        let ind = format!(r#"{{"type":"indicators","ch":"indicators:A","seq":1,"ts":{ts}}}"#);
        on_text(0, &ind, &shared, &mut out, &mut buf);
        assert_eq!(out.by_kind[EventKind::Indicators as usize], 1);
        assert_eq!(shared.latency_other.merged().len(), 1);
        assert_eq!(shared.latency.merged().len(), 2, "ticks only");
    }

    #[test]
    fn pick_distinct() {
        let mut r = SplitMix::new(7);
        let all: Vec<u32> = (0..10).collect();
        let mut p = r.pick(&all, 4);
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), 4);
        assert_eq!(r.pick(&all, 50).len(), 10);
    }
}
