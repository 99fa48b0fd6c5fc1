//! The obvious batched fan-out in Rust, as a peer for `benches/compare.sh` (issue 13): one
//! `tokio::sync::broadcast` channel, each batch serialized once (every tick once, plus one JSON
//! array for wildcard subscribers), one write per batch per socket, small buffers.
//!
//! Speaks the tickcast v1 subset the loadgen's bots and dashboards use: `subscribe` (ticks:SYM,
//! ticks:*, indicators:SYM acked and silent), `unsubscribe`, `ping`, `list`; replies `ack`, one
//! `snapshot` per concrete ticks channel, then live ticks with per-channel `seq` and `ts` (ns).
//! A socket that falls more than the channel's capacity behind skips batches (a `seq` jump).
//! Not implemented: `from`, `throttle_ms` (dashboards get every tick), bars, REST.
//!
//! Usage: rust-broadcast-peer --port N --symbols N --rate N --batch-ms N (loopback only).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// One feed batch, serialized once.
struct Batch {
    /// (symbol index, the tick's JSON), in order.
    ticks: Vec<(usize, Bytes)>,
    /// The whole batch as one frame, for `ticks:*`.
    all: Bytes,
}

/// Latest state per symbol, for snapshots.
struct Feed {
    names: Vec<String>,
    seq: Vec<u64>,
    last: Vec<Option<Bytes>>,
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A small xorshift: the peer needs plausible prices, not good randomness.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = arg("port", 8091.0) as u16;
    let nsym = arg("symbols", 100.0) as usize;
    let rate = arg("rate", 1000.0);
    let batch_ms = arg("batch-ms", 10.0).max(1.0);
    let feed = Arc::new(Mutex::new(Feed {
        names: (0..nsym).map(|i| format!("S{i:03}")).collect(),
        seq: vec![0; nsym],
        last: vec![None; nsym],
    }));
    // Small: a socket more than 64 batches behind skips ahead.
    let (tx, _) = broadcast::channel::<Arc<Batch>>(64);
    tokio::spawn(run_feed(feed.clone(), tx.clone(), rate, batch_ms));
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(serve(socket, feed.clone(), tx.subscribe()));
    }
}

async fn run_feed(feed: Arc<Mutex<Feed>>, tx: broadcast::Sender<Arc<Batch>>, rate: f64, ms: f64) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut prices: Vec<f64> = (0..feed.lock().map_or(0, |f| f.names.len()))
        .map(|i| 50.0 + i as f64)
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(ms / 1000.0));
    let mut carry = 0.0;
    let mut last = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        // Ticks owed follow the wall clock, so a late timer makes a bigger batch.
        let now = tokio::time::Instant::now();
        carry += rate * now.duration_since(last).as_secs_f64();
        last = now;
        let n = carry as usize;
        carry -= n as f64;
        if n == 0 || prices.is_empty() {
            continue;
        }
        let mut ticks = Vec::with_capacity(n);
        {
            let Ok(mut f) = feed.lock() else { return };
            for _ in 0..n {
                let s = (rng.next() * prices.len() as f64) as usize % prices.len();
                prices[s] = (prices[s] * (1.0 + (rng.next() - 0.5) * 0.001)).max(1.0);
                f.seq[s] += 1;
                let side = if rng.next() < 0.5 { "buy" } else { "sell" };
                let json = format!(
                    r#"{{"type":"tick","ch":"ticks:{}","seq":{},"ts":{},"price":{:.2},"size":{},"side":"{side}"}}"#,
                    f.names[s],
                    f.seq[s],
                    now_ns(),
                    prices[s],
                    1 + (rng.next() * 500.0) as u32,
                );
                let b = Bytes::from(json);
                f.last[s] = Some(b.clone());
                ticks.push((s, b));
            }
        }
        let mut all = Vec::with_capacity(ticks.iter().map(|t| t.1.len() + 1).sum::<usize>() + 2);
        all.push(b'[');
        for (i, (_, t)) in ticks.iter().enumerate() {
            if i > 0 {
                all.push(b',');
            }
            all.extend_from_slice(t);
        }
        all.push(b']');
        let _ = tx.send(Arc::new(Batch {
            ticks,
            all: Bytes::from(all),
        }));
    }
}

fn text(b: Bytes) -> Message {
    // Every frame is built from UTF-8 JSON above.
    Message::Text(b.try_into().unwrap_or_default())
}

async fn serve(socket: TcpStream, feed: Arc<Mutex<Feed>>, mut rx: broadcast::Receiver<Arc<Batch>>) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 10));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(socket, Some(config)).await else {
        return;
    };
    let mut wild = false;
    let mut subs: HashSet<usize> = HashSet::new();
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { return };
                let Message::Text(t) = msg else { continue };
                let Ok(op) = serde_json::from_str::<serde_json::Value>(t.as_str()) else { continue };
                let replies = handle(&op, &feed, &mut wild, &mut subs);
                for r in replies {
                    if ws.feed(text(r)).await.is_err() { return; }
                }
                if ws.flush().await.is_err() { return; }
            }
            batch = rx.recv() => {
                let batch = match batch {
                    Ok(b) => b,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let frame = if wild {
                    Some(batch.all.clone())
                } else if subs.is_empty() {
                    None
                } else {
                    let mine: Vec<&Bytes> =
                        batch.ticks.iter().filter(|t| subs.contains(&t.0)).map(|t| &t.1).collect();
                    match mine.len() {
                        0 => None,
                        1 => Some(mine[0].clone()),
                        _ => {
                            let mut v = b"[".to_vec();
                            for (i, t) in mine.iter().enumerate() {
                                if i > 0 { v.push(b','); }
                                v.extend_from_slice(t);
                            }
                            v.push(b']');
                            Some(Bytes::from(v))
                        }
                    }
                };
                if let Some(f) = frame && ws.send(text(f)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Answers one op; returns the frames to send.
fn handle(
    op: &serde_json::Value,
    feed: &Mutex<Feed>,
    wild: &mut bool,
    subs: &mut HashSet<usize>,
) -> Vec<Bytes> {
    let id = op.get("id").cloned().unwrap_or(serde_json::Value::Null);
    let Ok(f) = feed.lock() else { return Vec::new() };
    let snapshot = |s: usize| {
        Bytes::from(format!(
            r#"{{"type":"snapshot","ch":"ticks:{}","seq":{},"data":[{}]}}"#,
            f.names[s],
            f.seq[s],
            f.last[s]
                .as_ref()
                .map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned())
        ))
    };
    let channels: Vec<String> = op
        .get("channels")
        .and_then(|c| c.as_array())
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let json = |v: serde_json::Value| Bytes::from(v.to_string());
    match op.get("op").and_then(|o| o.as_str()) {
        Some("subscribe") => {
            let mut out = vec![json(serde_json::json!({
                "type":"ack","id":id,"op":"subscribe","channels":channels}))];
            for ch in &channels {
                let Some((kind, sym)) = ch.split_once(':') else { continue };
                if kind != "ticks" {
                    continue;
                }
                if sym == "*" {
                    if !*wild {
                        *wild = true;
                        out.extend((0..f.names.len()).map(snapshot));
                    }
                } else if let Some(s) = f.names.iter().position(|n| n == sym)
                    && subs.insert(s)
                    && !*wild
                {
                    out.push(snapshot(s));
                }
            }
            out
        }
        Some("unsubscribe") => {
            for ch in &channels {
                match ch.split_once(':') {
                    Some(("ticks", "*")) => *wild = false,
                    Some(("ticks", sym)) => {
                        if let Some(s) = f.names.iter().position(|n| n == sym) {
                            subs.remove(&s);
                        }
                    }
                    _ => {}
                }
            }
            vec![json(serde_json::json!({
                "type":"ack","id":id,"op":"unsubscribe","channels":channels}))]
        }
        Some("ping") => vec![Bytes::from(format!(
            r#"{{"type":"pong","id":{id},"ts":{}}}"#,
            now_ns()
        ))],
        Some("list") => vec![json(serde_json::json!({
            "type":"list","id":id,"symbols":f.names,"kinds":["ticks","indicators"]}))],
        _ => vec![json(serde_json::json!({
            "type":"error","id":id,"code":"bad_request","message":"unknown op"}))],
    }
}
