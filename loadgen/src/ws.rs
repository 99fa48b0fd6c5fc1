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

use crate::args::Encoding;
use crate::auth::{Auth, url_with_token};
use crate::frame::{Event, for_each_msgpack_event, msgpack_list_symbols};
use crate::scan::for_each_event;
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
    /// Subscribes `book:*`, with `"depth"` and `"throttle_ms"` when set (0: none).
    Books {
        depth: Option<u32>,
        throttle_ms: u64,
    },
    /// Subscribes `ticker:*` and `bbo:*`, with `"throttle_ms"` when set (0: none).
    Watchlist { throttle_ms: u64 },
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
            Role::Books { depth, throttle_ms } => {
                let mut sub = serde_json::json!({
                    "op": "subscribe", "id": 1, "channels": ["book:*"],
                });
                if let Some(d) = depth {
                    sub["depth"] = (*d).into();
                }
                if *throttle_ms > 0 {
                    sub["throttle_ms"] = (*throttle_ms).into();
                }
                vec![sub.to_string()]
            }
            Role::Watchlist { throttle_ms } => {
                let mut sub = serde_json::json!({
                    "op": "subscribe", "id": 1, "channels": ["ticker:*", "bbo:*"],
                });
                if *throttle_ms > 0 {
                    sub["throttle_ms"] = (*throttle_ms).into();
                }
                vec![sub.to_string()]
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
    /// The encoding every connection asked for: the frame type and reader it expects.
    pub encoding: Encoding,
    /// Server frames (text or binary) and live events inside the window.
    pub frames_measured: AtomicU64,
    pub events_measured: AtomicU64,
    /// Payload bytes of those frames (WebSocket headers not counted), for bytes per event.
    pub bytes_measured: AtomicU64,
    /// Server frames and live events over the whole run, for the progress line.
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
    /// `now - ts` of `book` events inside the window, µs (ts is ingest time, as for ticks).
    pub latency_book: ShardedHistogram,
}

impl Shared {
    pub fn new(shards: usize, encoding: Encoding) -> Self {
        Self {
            encoding,
            measuring: AtomicBool::new(false),
            frames_measured: AtomicU64::new(0),
            events_measured: AtomicU64::new(0),
            bytes_measured: AtomicU64::new(0),
            frames_seen: AtomicU64::new(0),
            events_seen: AtomicU64::new(0),
            attempted: AtomicU64::new(0),
            established: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            latency: ShardedHistogram::new(shards),
            latency_other: ShardedHistogram::new(shards),
            latency_book: ShardedHistogram::new(shards),
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
    /// Live events inside the window that carried `"reset": true` (a `book` event holding the
    /// whole book: what a slow consumer gets instead of the deltas it missed, or a resync).
    pub live_resets: u64,
    /// Of the window's gap events (a `seq` jump), those on an event with `"reset": true`: gaps
    /// the client could repair from the event itself.
    pub gaps_reset: u64,
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
    Book = 3,
    Other = 4,
}

impl EventKind {
    pub const COUNT: usize = 5;
    pub const ALL: [EventKind; Self::COUNT] = [
        EventKind::Tick,
        EventKind::Bar,
        EventKind::Indicators,
        EventKind::Book,
        EventKind::Other,
    ];

    pub fn of(kind: &str) -> Self {
        match kind {
            "tick" => EventKind::Tick,
            "bar" => EventKind::Bar,
            "indicators" => EventKind::Indicators,
            "book" => EventKind::Book,
            _ => EventKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Tick => "tick",
            EventKind::Bar => "bar",
            EventKind::Indicators => "indicators",
            EventKind::Book => "book",
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

/// Opens one WebSocket to the checked loopback address, presenting `token` as `?token=`.
pub async fn connect(target: &Target, token: Option<&str>) -> anyhow::Result<Ws> {
    let req = match token {
        Some(t) => url_with_token(&target.ws_url, t).into_client_request()?,
        None => target.ws_url.as_str().into_client_request()?,
    };
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
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
    /// The token each socket presents at connect.
    pub auth: Arc<Auth>,
    /// When the measured window closes and every socket closes.
    pub end: Instant,
    pub stop: watch::Receiver<bool>,
}

/// Why a socket did not open (its label is in the outcome's `failure`).
enum NotOpened {
    /// Its token could not be minted: no later attempt can do better.
    Token,
    /// The server refused the handshake or the connection failed.
    Refused,
    /// The handshake did not complete within the connect timeout.
    TimedOut,
}

/// Opens one socket for connection `idx`, counting the attempt in `shared` and, in `out` and
/// `shared`, its failure or that it is established and open; returns it with the time the
/// server's handshake took.
async fn open_socket(
    idx: usize,
    cfg: &ConnConfig,
    out: &mut ConnOutcome,
) -> Result<(Ws, Duration), NotOpened> {
    let shared = &cfg.shared;
    shared.attempted.fetch_add(1, Relaxed);
    let failed = |out: &mut ConnOutcome, label: String| {
        shared.failed.fetch_add(1, Relaxed);
        out.failure = Some(label);
    };
    // Minted before the clock starts: the connect time is the server's handshake, not our signing.
    let token = match cfg.auth.token_for(idx) {
        Ok(t) => t,
        Err(e) => {
            failed(out, format!("token: {e:#}"));
            return Err(NotOpened::Token);
        }
    };
    let started = Instant::now();
    match timeout(cfg.connect_timeout, connect(&cfg.target, token.as_deref())).await {
        Ok(Ok(ws)) => {
            out.established = true;
            shared.established.fetch_add(1, Relaxed);
            shared.open.fetch_add(1, Relaxed);
            Ok((ws, started.elapsed()))
        }
        Ok(Err(e)) => {
            failed(out, failure_label(&e));
            Err(NotOpened::Refused)
        }
        Err(_) => {
            failed(out, "connect_timeout".into());
            Err(NotOpened::TimedOut)
        }
    }
}

/// Runs one connection from connect to close.
pub async fn run_conn(idx: usize, role: Role, cfg: ConnConfig) -> ConnOutcome {
    if let Role::Churn { symbols, seed } = role {
        return run_churn(idx, &symbols, seed, cfg).await;
    }
    let mut out = ConnOutcome::default();
    let Ok((ws, took)) = open_socket(idx, &cfg, &mut out).await else {
        return out;
    };
    let ConnConfig {
        shared,
        end,
        mut stop,
        ..
    } = cfg;
    shared.connect.record_all(idx, &[took.as_micros() as u64]);
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
                    on_frame(idx, Payload::Text(text.as_str()), shared, out, &mut lat);
                }
                Some(Ok(Message::Binary(data))) => {
                    on_frame(idx, Payload::Binary(&data), shared, out, &mut lat);
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
                Some(Ok(_)) => {} // pings are answered by tungstenite
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
    let mut out = ConnOutcome::default();
    let mut lat = Latencies::default();
    let mut rng = SplitMix::new(seed);
    let mut stop = cfg.stop.clone();
    let (shared, end) = (cfg.shared.clone(), cfg.end);
    while Instant::now() < end && !*stop.borrow() {
        let mut ws = match open_socket(idx, &cfg, &mut out).await {
            Ok((ws, _)) => ws,
            Err(NotOpened::Token) => return out,
            Err(NotOpened::Refused) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(NotOpened::TimedOut) => continue,
        };
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
                        on_frame(idx, Payload::Text(text.as_str()), &shared, &mut out, &mut lat);
                    }
                    Some(Ok(Message::Binary(data))) => {
                        on_frame(idx, Payload::Binary(&data), &shared, &mut out, &mut lat);
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

/// One server frame's payload, as the socket delivered it.
#[derive(Clone, Copy)]
enum Payload<'a> {
    /// A text frame: JSON, one event or an array of them.
    Text(&'a str),
    /// A binary frame: with `--encoding msgpack`, one MessagePack array of messages.
    Binary(&'a [u8]),
}

impl Payload<'_> {
    fn len(self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        }
    }
}

/// Accounts one server frame: every event in it, latency against one clock read per frame.
/// A frame that does not parse, or whose type is not the connection's encoding (binary on a
/// JSON connection, text on a MessagePack one), is a parse error; the events before the error in
/// a frame that breaks off are still counted.
fn on_frame(
    idx: usize,
    payload: Payload<'_>,
    shared: &Shared,
    out: &mut ConnOutcome,
    lat: &mut Latencies,
) {
    let measuring = shared.measuring.load(Relaxed);
    let now = epoch_ns();
    lat.ticks.clear();
    lat.other.clear();
    lat.books.clear();
    let by_kind = &mut out.by_kind;
    let mut live = 0u64;
    let seqs = &mut out.seqs;
    let (snapshots, resets, replies, errors) = (
        &mut out.snapshots,
        &mut out.resets,
        &mut out.replies,
        &mut out.errors,
    );
    let (live_resets, gaps_reset) = (&mut out.live_resets, &mut out.gaps_reset);
    let on_event = |ev: Event<'_>| match ev.kind.as_ref() {
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
            let mut missed = 0;
            if let (Some(ch), Some(seq)) = (ev.ch.as_deref(), ev.seq) {
                missed = seqs.on_event(ch, seq, measuring);
            }
            if measuring {
                let kind = EventKind::of(&ev.kind);
                by_kind[kind as usize] += 1;
                if ev.reset {
                    *live_resets += 1;
                    *gaps_reset += u64::from(missed > 0);
                }
                if let Some(ts) = ev.ts {
                    let us = now.saturating_sub(ts) / 1000;
                    match kind {
                        EventKind::Tick => lat.ticks.push(us),
                        EventKind::Book => lat.books.push(us),
                        _ => lat.other.push(us),
                    }
                }
            }
        }
    };
    let parsed = match (shared.encoding, payload) {
        (Encoding::Json, Payload::Text(text)) => for_each_event(text, on_event).is_ok(),
        (Encoding::Msgpack, Payload::Binary(data)) => {
            for_each_msgpack_event(data, on_event).is_ok()
        }
        _ => false,
    };
    if !parsed {
        out.parse_errors += 1;
    }
    shared.frames_seen.fetch_add(1, Relaxed);
    shared.events_seen.fetch_add(live, Relaxed);
    if measuring {
        shared.frames_measured.fetch_add(1, Relaxed);
        shared.events_measured.fetch_add(live, Relaxed);
        shared
            .bytes_measured
            .fetch_add(payload.len() as u64, Relaxed);
        shared.latency.record_all(idx, &lat.ticks);
        shared.latency_other.record_all(idx, &lat.other);
        shared.latency_book.record_all(idx, &lat.books);
    }
}

/// Per-connection scratch buffers for one frame's latencies, reused across frames.
#[derive(Default)]
struct Latencies {
    ticks: Vec<u64>,
    other: Vec<u64>,
    books: Vec<u64>,
}

/// Asks the server for its symbols with the `list` op over a short-lived connection.
pub async fn discover_symbols(target: &Target, auth: &Auth) -> anyhow::Result<Vec<String>> {
    let run = async {
        let token = auth.token_for(0)?;
        let mut ws = connect(target, token.as_deref())
            .await
            .context("connecting for the list op")?;
        ws.send(Message::text(r#"{"op":"list","id":1}"#)).await?;
        while let Some(msg) = ws.next().await {
            let text = match msg? {
                Message::Text(text) => text,
                Message::Binary(data) => match msgpack_list_symbols(&data)? {
                    Some(syms) => {
                        let _ = ws.close(None).await;
                        return Ok(syms);
                    }
                    None => continue,
                },
                _ => continue,
            };
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
    use crate::frame::tests::Mp;

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
    fn books_ops() {
        let op = |role: Role| -> serde_json::Value {
            let ops = role.subscribe_ops();
            assert_eq!(ops.len(), 1);
            serde_json::from_str(&ops[0]).unwrap()
        };
        let full = op(Role::Books {
            depth: None,
            throttle_ms: 0,
        });
        assert_eq!(
            full,
            serde_json::json!({"op": "subscribe", "id": 1, "channels": ["book:*"]}),
            "the server's full depth, unthrottled: the shared path"
        );
        let narrow = op(Role::Books {
            depth: Some(5),
            throttle_ms: 100,
        });
        assert_eq!(narrow["channels"], serde_json::json!(["book:*"]));
        assert_eq!(
            (narrow["depth"].as_u64(), narrow["throttle_ms"].as_u64()),
            (Some(5), Some(100))
        );
        assert_eq!(
            op(Role::Watchlist { throttle_ms: 0 }),
            serde_json::json!({"op": "subscribe", "id": 1, "channels": ["ticker:*", "bbo:*"]})
        );
    }

    #[test]
    fn on_frame_accounts_book_events_in_both_encodings() {
        let ts = epoch_ns() - 2_000_000;
        let t = ts as i64;
        let book = |ch: &str, seq: u64, reset: bool| {
            format!(
                r#"{{"type":"book","ch":"{ch}","seq":{seq},"ts":{ts},"reset":{reset},"bids":[[42000.5,1.25],[41999,0]],"asks":[[42001,3]],"checksum":2374859382}}"#
            )
        };
        // A snapshot (its book event is data, not a live event), deltas, a gap healed by a
        // reset event (a conflating slow consumer), and a gap without one.
        let frames = [
            (
                format!(
                    r#"{{"type":"snapshot","ch":"book:A","seq":10,"data":[{}]}}"#,
                    book("book:A", 10, true)
                ),
                Mp::default()
                    .arr(1)
                    .map(4)
                    .s("type")
                    .s("snapshot")
                    .s("ch")
                    .s("book:A")
                    .s("seq")
                    .u(10)
                    .s("data")
                    .arr(1)
                    .book("book:A", 10, t, true)
                    .0,
            ),
            (
                format!(
                    "[{},{},{}]",
                    book("book:A", 11, false),
                    book("book:A", 12, false),
                    book("book:B", 1, false)
                ),
                Mp::default()
                    .arr(3)
                    .book("book:A", 11, t, false)
                    .book("book:A", 12, t, false)
                    .book("book:B", 1, t, false)
                    .0,
            ),
            (
                book("book:A", 20, true),
                Mp::default().arr(1).book("book:A", 20, t, true).0,
            ),
            (
                format!(
                    "[{},{}]",
                    book("book:A", 21, false),
                    book("book:A", 23, false)
                ),
                Mp::default()
                    .arr(2)
                    .book("book:A", 21, t, false)
                    .book("book:A", 23, t, false)
                    .0,
            ),
        ];
        let mut runs = Vec::new();
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            let shared = Shared::new(1, encoding);
            shared.measuring.store(true, Relaxed);
            let mut out = ConnOutcome::default();
            let mut buf = Latencies::default();
            for (json, mp) in &frames {
                let payload = match encoding {
                    Encoding::Json => Payload::Text(json),
                    Encoding::Msgpack => Payload::Binary(mp),
                };
                on_frame(0, payload, &shared, &mut out, &mut buf);
            }
            assert_eq!(out.parse_errors, 0, "{encoding:?}");
            assert_eq!((out.live_resets, out.gaps_reset), (1, 1), "{encoding:?}");
            assert_eq!(shared.latency_book.merged().len(), 6, "{encoding:?}");
            assert!(shared.latency_book.merged().min() >= 2000, "latency ≥ 2 ms");
            assert_eq!(shared.latency.merged().len(), 0, "no ticks");
            runs.push(summary(&shared, &out));
        }
        assert_eq!(runs[0], runs[1], "same counts in both encodings");
        assert!(
            runs[0].contains("events 6 frames 4 by_kind [0, 0, 0, 6, 0] snapshots 1"),
            "{}",
            runs[0]
        );
        assert!(
            runs[0].contains(
                r#"("book:A", ChannelGaps { gap_events: 2, missed: 8, out_of_order: 0 })"#
            ),
            "{}",
            runs[0]
        );
    }

    #[test]
    fn on_frame_accounts_json_frames() {
        let shared = Shared::new(1, Encoding::Json);
        let mut out = ConnOutcome::default();
        let mut buf = Latencies::default();
        let ts = epoch_ns() - 2_000_000;
        on_frame(
            0,
            Payload::Text(r#"{"type":"snapshot","ch":"ticks:A","seq":5,"data":[]}"#),
            &shared,
            &mut out,
            &mut buf,
        );
        shared.measuring.store(true, Relaxed);
        let frame = format!(
            r#"[{{"type":"tick","ch":"ticks:A","seq":6,"ts":{ts}}},{{"type":"tick","ch":"ticks:A","seq":9,"ts":{ts}}}]"#
        );
        on_frame(0, Payload::Text(&frame), &shared, &mut out, &mut buf);
        on_frame(
            0,
            Payload::Text(r#"{"type":"error","code":"rate_limited","message":"x"}"#),
            &shared,
            &mut out,
            &mut buf,
        );
        on_frame(0, Payload::Text("not json"), &shared, &mut out, &mut buf);
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
        on_frame(0, Payload::Text(&ind), &shared, &mut out, &mut buf);
        assert_eq!(out.by_kind[EventKind::Indicators as usize], 1);
        assert_eq!(shared.latency_other.merged().len(), 1);
        assert_eq!(shared.latency.merged().len(), 2, "ticks only");
    }

    /// One server frame of the fixture below, in both encodings.
    struct Fixture {
        json: String,
        msgpack: Vec<u8>,
    }

    /// The same conversation in JSON and MessagePack: an ack, a snapshot, a tick batch with a
    /// gap, a bar and indicators, an error.
    fn fixture(ts: u64) -> Vec<Fixture> {
        let t = ts as i64;
        vec![
            Fixture {
                json: r#"{"type":"ack","id":1,"op":"subscribe","channels":["ticks:*"],"epoch":17}"#
                    .into(),
                msgpack: Mp::default()
                    .arr(1)
                    .map(5)
                    .s("type")
                    .s("ack")
                    .s("id")
                    .u(1)
                    .s("op")
                    .s("subscribe")
                    .s("channels")
                    .arr(1)
                    .s("ticks:*")
                    .s("epoch")
                    .u(17)
                    .0,
            },
            Fixture {
                json: format!(
                    r#"{{"type":"snapshot","ch":"ticks:A","seq":5,"data":[{{"type":"tick","ch":"ticks:A","seq":5,"ts":{ts},"price":1.5,"size":1,"side":null,"xts":1}}]}}"#
                ),
                msgpack: Mp::default()
                    .arr(1)
                    .map(4)
                    .s("type")
                    .s("snapshot")
                    .s("ch")
                    .s("ticks:A")
                    .s("seq")
                    .u(5)
                    .s("data")
                    .arr(1)
                    .tick("ticks:A", 5, t)
                    .0,
            },
            Fixture {
                json: format!(
                    r#"[{{"type":"tick","ch":"ticks:A","seq":6,"ts":{ts},"price":189.23,"size":100,"side":"buy","xts":1}},{{"type":"tick","ch":"ticks:A","seq":9,"ts":{ts},"price":189.23,"size":100,"side":"buy","xts":1}},{{"type":"tick","ch":"ticks:B","seq":1,"ts":{ts},"price":189.23,"size":100,"side":"buy","xts":1}}]"#
                ),
                msgpack: Mp::default()
                    .arr(3)
                    .tick("ticks:A", 6, t)
                    .tick("ticks:A", 9, t)
                    .tick("ticks:B", 1, t)
                    .0,
            },
            Fixture {
                json: format!(
                    r#"[{{"type":"bar","ch":"bars.1s:A","seq":1,"ts":{ts},"start":1,"open":1.0,"high":1.2,"low":0.9,"close":1.1,"volume":300.5,"trades":3,"final":true}},{{"type":"indicators","ch":"indicators:A","seq":1,"ts":{ts},"sma_20":null,"ema_20":1.0,"rsi_14":null,"volatility":0.012,"vwap":1.05}}]"#
                ),
                msgpack: Mp::default()
                    .arr(2)
                    .bar("bars.1s:A", 1, t)
                    .indicators("indicators:A", 1, t)
                    .0,
            },
            Fixture {
                json: r#"{"type":"error","code":"rate_limited","message":"x"}"#.into(),
                msgpack: Mp::default()
                    .arr(1)
                    .map(3)
                    .s("type")
                    .s("error")
                    .s("code")
                    .s("rate_limited")
                    .s("message")
                    .s("x")
                    .0,
            },
        ]
    }

    /// What a connection counted, everything but the bytes (which differ by encoding).
    fn summary(shared: &Shared, out: &ConnOutcome) -> String {
        let mut gaps = HashMap::new();
        out.seqs.merge_into(&mut gaps);
        let mut gaps: Vec<_> = gaps.into_iter().collect();
        gaps.sort_by(|a, b| a.0.cmp(&b.0));
        format!(
            "events {} frames {} by_kind {:?} snapshots {} resets {} replies {} parse_errors {} \
             errors {:?} gaps {:?} tick latencies {} other latencies {}",
            shared.events_measured.load(Relaxed),
            shared.frames_measured.load(Relaxed),
            out.by_kind,
            out.snapshots,
            out.resets,
            out.replies,
            out.parse_errors,
            out.errors,
            gaps,
            shared.latency.merged().len(),
            shared.latency_other.merged().len(),
        )
    }

    #[test]
    fn on_frame_accounts_msgpack_frames_like_json() {
        let ts = epoch_ns() - 2_000_000;
        let mut runs = Vec::new();
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            let shared = Shared::new(1, encoding);
            shared.measuring.store(true, Relaxed);
            let mut out = ConnOutcome::default();
            let mut buf = Latencies::default();
            let mut bytes = 0;
            for f in fixture(ts) {
                let payload = match encoding {
                    Encoding::Json => Payload::Text(&f.json),
                    Encoding::Msgpack => Payload::Binary(&f.msgpack),
                };
                bytes += payload.len() as u64;
                on_frame(0, payload, &shared, &mut out, &mut buf);
            }
            assert_eq!(out.parse_errors, 0, "{encoding:?}");
            assert_eq!(shared.bytes_measured.load(Relaxed), bytes);
            assert!(shared.latency.merged().min() >= 2000, "latency ≥ 2 ms");
            // A frame of the other type, and garbage of the right type, are parse errors.
            let mp = Mp::default().arr(1).tick("ticks:A", 10, ts as i64).0;
            let json = format!(r#"{{"type":"tick","ch":"ticks:A","seq":10,"ts":{ts}}}"#);
            let (wrong, garbage) = match encoding {
                Encoding::Json => (Payload::Binary(&mp), Payload::Text("{")),
                Encoding::Msgpack => (Payload::Text(&json), Payload::Binary(&[0x91, 0x98])),
            };
            on_frame(0, wrong, &shared, &mut out, &mut buf);
            on_frame(0, garbage, &shared, &mut out, &mut buf);
            assert_eq!(out.parse_errors, 2, "{encoding:?}");
            runs.push((summary(&shared, &out), bytes));
        }
        assert_eq!(runs[0].0, runs[1].0, "same counts in both encodings");
        assert!(
            runs[0]
                .0
                .contains("events 5 frames 7 by_kind [3, 1, 1, 0, 0] snapshots 1"),
            "{}",
            runs[0].0
        );
        assert!(runs[0].0.contains("missed: 2"), "{}", runs[0].0);
        assert!(runs[1].1 < runs[0].1, "msgpack is smaller: {runs:?}");
    }

    /// Serves the fixture over a real WebSocket on loopback, in the encoding the client's URL
    /// asks for, and returns the query string the client connected with.
    // The handshake callback's error type is tungstenite's `ErrorResponse`, not ours to shrink.
    #[allow(clippy::result_large_err)]
    async fn serve_fixture(listener: tokio::net::TcpListener, ts: u64) -> String {
        use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
        let (stream, _) = listener.accept().await.expect("accept");
        let mut query = String::new();
        let mut ws =
            tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
                query = req.uri().query().unwrap_or("").to_string();
                Ok(resp)
            })
            .await
            .expect("handshake");
        let msgpack = query.split('&').any(|kv| kv == "encoding=msgpack");
        let op = ws.next().await.expect("an op").expect("op frame");
        assert!(op.is_text(), "ops stay JSON text: {op:?}");
        for f in fixture(ts) {
            let msg = if msgpack {
                Message::binary(f.msgpack)
            } else {
                Message::text(f.json)
            };
            ws.send(msg).await.expect("send");
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        ws.send(Message::Close(Some(close))).await.expect("close");
        while let Some(Ok(_)) = ws.next().await {}
        query
    }

    #[tokio::test]
    async fn loadgen_counts_msgpack_over_a_socket_like_json() {
        let mut runs = Vec::new();
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let ts = epoch_ns() - 2_000_000;
            let server = tokio::spawn(serve_fixture(listener, ts));
            let url = encoding
                .apply_to_url(&format!("ws://127.0.0.1:{port}/ws?v=1"))
                .unwrap();
            let shared = Arc::new(Shared::new(1, encoding));
            shared.measuring.store(true, Relaxed);
            let (_stop_tx, stop) = watch::channel(false);
            let cfg = ConnConfig {
                target: Arc::new(Target::resolve(&url).await.unwrap()),
                shared: shared.clone(),
                connect_timeout: Duration::from_secs(5),
                auth: Arc::new(Auth::Anonymous),
                end: Instant::now() + Duration::from_secs(20),
                stop,
            };
            let out = run_conn(0, Role::Bot, cfg).await;
            let query = server.await.expect("server task");
            match encoding {
                Encoding::Json => assert_eq!(query, "v=1"),
                Encoding::Msgpack => assert_eq!(query, "v=1&encoding=msgpack"),
            }
            assert!(out.established);
            assert_eq!(out.server_close, Some(1000), "{encoding:?}: {out:?}");
            assert_eq!(out.parse_errors, 0, "{encoding:?}");
            assert!(shared.latency.merged().min() >= 2000, "latency ≥ 2 ms");
            let bytes: usize = fixture(ts)
                .iter()
                .map(|f| match encoding {
                    Encoding::Json => f.json.len(),
                    Encoding::Msgpack => f.msgpack.len(),
                })
                .sum();
            assert_eq!(shared.bytes_measured.load(Relaxed), bytes as u64);
            runs.push(summary(&shared, &out));
        }
        assert_eq!(runs[0], runs[1], "same counts in both encodings");
        assert!(
            runs[1].contains("events 5 frames 5 by_kind [3, 1, 1, 0, 0] snapshots 1"),
            "{}",
            runs[1]
        );
        assert!(runs[1].contains("missed: 2"), "{}", runs[1]);
        assert!(
            runs[1].contains("tick latencies 3 other latencies 2"),
            "{}",
            runs[1]
        );
    }

    #[tokio::test]
    async fn a_token_goes_on_the_connect_url_and_the_connect_is_timed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve_fixture(listener, epoch_ns()));
        let url = format!("ws://127.0.0.1:{port}/ws?v=1");
        let shared = Arc::new(Shared::new(1, Encoding::Json));
        let (_stop_tx, stop) = watch::channel(false);
        let cfg = ConnConfig {
            target: Arc::new(Target::resolve(&url).await.unwrap()),
            shared: shared.clone(),
            connect_timeout: Duration::from_secs(5),
            auth: Arc::new(Auth::Token("a.b+c".into())),
            end: Instant::now() + Duration::from_secs(20),
            stop,
        };
        let out = run_conn(0, Role::Bot, cfg).await;
        assert_eq!(server.await.expect("server task"), "v=1&token=a.b%2Bc");
        assert!(out.established, "{out:?}");
        assert_eq!(shared.connect.merged().len(), 1, "one connect time");
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
