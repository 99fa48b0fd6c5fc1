//! The replay and upstream feeds, end to end: real server, real files, a real (local) upstream
//! WebSocket server, ticks read back over the public WebSocket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tickcast::config::Config;
use tickcast::feed::replay::ReplayFormat;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{self, Client, TestServer, WAIT};

/// (symbol, price, size, side) as the wire shows them.
type Expected = (String, f64, f64, String);

fn feeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("feeds")
}

fn tick(sym: &str, price: f64, size: f64, side: &str) -> Expected {
    (sym.to_owned(), price, size, side.to_owned())
}

/// The sample CSV read independently of the feed's parser (the file is simple by design).
fn sample_csv() -> Vec<Expected> {
    let text = std::fs::read_to_string(feeds_dir().join("sample_ticks.csv")).expect("sample");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            tick(f[1], f[2].parse().unwrap(), f[3].parse().unwrap(), f[4])
        })
        .collect()
}

/// Bounded wait until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Checks ticks read from the WebSocket against the expected ones: same order, and per channel
/// `seq` 1, 2, 3, ...
fn check(got: &[Value], want: &[Expected]) {
    assert_eq!(got.len(), want.len(), "tick count");
    let mut seqs: HashMap<String, u64> = HashMap::new();
    for (i, (e, w)) in got.iter().zip(want).enumerate() {
        let seq = seqs.entry(w.0.clone()).or_default();
        *seq += 1;
        let have = (
            e["ch"].as_str().unwrap_or_default().to_owned(),
            e["price"].as_f64(),
            e["size"].as_f64(),
            e["side"].as_str().unwrap_or_default().to_owned(),
            e["seq"].as_u64(),
        );
        let expect = (
            format!("ticks:{}", w.0),
            Some(w.1),
            Some(w.2),
            w.3.clone(),
            Some(*seq),
        );
        assert_eq!(have, expect, "tick #{i}: {e}");
    }
}

fn replay_config(path: PathBuf) -> Config {
    let mut c = util::config();
    c.feeds.replay.enabled = true;
    c.feeds.replay.path = path;
    c.feeds.replay.format = ReplayFormat::Auto;
    c.feeds.replay.speed = 0.0;
    c.feeds.replay.looping = false;
    // Every tick of the file stays in the ring and fits in one snapshot.
    c.ring.capacity = 1024;
    c.ring.snapshot_depth = 1024;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_at_speed_zero_yields_exactly_the_files_ticks() {
    let want = sample_csv();
    assert_eq!(want.len(), 300);
    for file in ["sample_ticks.csv", "sample_ticks.jsonl"] {
        let srv = util::start(replay_config(feeds_dir().join(file))).await;
        let metrics = srv.server().metrics().clone();
        eventually("the whole file is ingested", || {
            metrics.ticks_ingested.load(Ordering::Relaxed) >= want.len() as u64
        })
        .await;
        let mut c = srv.connect().await;
        c.subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
            .await;
        // One snapshot per symbol holds every tick of it.
        let mut per_symbol: HashMap<String, Vec<Value>> = HashMap::new();
        for _ in 0..5 {
            let snap = c.event_of("snapshot").await;
            let ch = snap["ch"].as_str().expect("ch").to_owned();
            let data = snap["data"].as_array().expect("data").clone();
            per_symbol.insert(ch, data);
        }
        // Put them back in file order: take the next tick of each symbol as the file names it.
        let mut cursor: HashMap<String, usize> = HashMap::new();
        let got: Vec<Value> = want
            .iter()
            .map(|w| {
                let ch = format!("ticks:{}", w.0);
                let i = cursor.entry(ch.clone()).or_default();
                *i += 1;
                per_symbol
                    .get(&ch)
                    .and_then(|d| d.get(*i - 1))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        check(&got, &want);
        let total: usize = per_symbol.values().map(Vec::len).sum();
        assert_eq!(total, want.len(), "{file}: no extra ticks");
        assert_eq!(metrics.feed_errors.load(Ordering::Relaxed), 0, "{file}");
        assert!(c.silent_for(Duration::from_millis(200)).await, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_loops_and_counts_bad_lines() {
    let dir = std::env::temp_dir().join(format!("tickcast-e2e-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("loop.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"ts":1000,"symbol":"LOOP","price":1.5,"size":1,"side":"buy"}"#,
            "\n{oops\n",
            r#"{"ts":1001,"symbol":"LOOP","price":2.5,"size":2,"side":"sell"}"#,
            "\n"
        ),
    )
    .unwrap();
    let mut cfg = replay_config(path);
    cfg.feeds.replay.looping = true;
    let srv = util::start(cfg).await;
    // Two ticks per pass: seq 40 means the file was played at least 20 times.
    srv.wait_seq("LOOP", 40).await;
    let errors = srv.server().metrics().feed_errors.load(Ordering::Relaxed);
    assert!(errors >= 19, "one bad line per pass: {errors}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A typical export: `timestamp,symbol,price,size`, RFC 3339 and ms times, no side. Its ticks
/// stream with `"side": null` and are stored and read back without a side, on both backends;
/// the bad line is counted, not fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_typical_export_without_side() {
    let dir = std::env::temp_dir().join(format!("tickcast-e2e-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("export.csv");
    std::fs::write(
        &path,
        "timestamp,symbol,price,size\n\
         2024-01-02T14:30:00.097Z,AAPL,187.15,100\n\
         1704205800123,AAPL,187.16,25\n\
         2024-01-02T14:30:01Z,AAPL,oops,5\n\
         2024-01-02T14:30:02Z,AAPL,187.2,5\n",
    )
    .unwrap();
    for db in util::backends().await {
        let mut cfg = replay_config(path.clone());
        cfg.database.url = db.url.clone();
        let srv = util::start(cfg).await;
        srv.wait_persisted(3).await;
        let metrics = srv.server().metrics();
        assert_eq!(
            metrics.feed_errors.load(Ordering::Relaxed),
            1,
            "{}",
            db.backend
        );
        let mut c = srv.connect().await;
        c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"]}))
            .await;
        let snap = c.event_of("snapshot").await;
        let data = snap["data"].as_array().cloned().unwrap_or_default();
        let got: Vec<(f64, Value)> = data
            .iter()
            .map(|t| (t["price"].as_f64().unwrap_or(0.0), t["side"].clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (187.15, Value::Null),
                (187.16, Value::Null),
                (187.2, Value::Null)
            ],
            "{}",
            db.backend
        );
        let (status, _, page) = srv.get("/api/v1/ticks/AAPL", None).await;
        assert_eq!(status, 200, "{page}");
        let ticks = page["ticks"].as_array().cloned().unwrap_or_default();
        assert_eq!(ticks.len(), 3, "{} {page}", db.backend);
        assert!(ticks.iter().all(|t| t["side"].is_null()), "{page}");
        assert_eq!(ticks[0]["ts"], 1_704_205_800_097_000_000i64);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_missing_file_stops_the_feed_not_the_server() {
    let srv = util::start(replay_config(feeds_dir().join("no_such_file.csv"))).await;
    let mut c = srv.connect().await;
    c.send(json!({"op":"ping","id":1})).await;
    assert_eq!(c.event().await["type"], "pong");
}

/// A local stand-in for an exchange: connection `i` waits for the client's subscribe message,
/// plays `parts[i]`, then drops the TCP connection without a close frame (or, for the last
/// part, stays open). The first connection also waits for `start`.
struct FakeUpstream {
    addr: SocketAddr,
    /// (connection index, first message the client sent on it)
    subscribes: mpsc::UnboundedReceiver<(usize, String)>,
    start: Option<oneshot::Sender<()>>,
}

async fn fake_upstream(parts: Vec<Vec<String>>) -> FakeUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sub_tx, subscribes) = mpsc::unbounded_channel();
    let (start_tx, start_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut start = Some(start_rx);
        for i in 0.. {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            let first = loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => break t.to_string(),
                    Some(Ok(_)) => continue,
                    _ => break String::new(),
                }
            };
            let _ = sub_tx.send((i, first));
            if let Some(rx) = start.take() {
                let _ = rx.await;
            }
            let lines = parts.get(i).cloned().unwrap_or_default();
            for line in lines {
                if ws.send(Message::text(line)).await.is_err() {
                    break;
                }
            }
            if i + 1 < parts.len() {
                // Mid-stream: drop the socket without a closing handshake.
                drop(ws);
                continue;
            }
            tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
        }
    });
    FakeUpstream {
        addr,
        subscribes,
        start: Some(start_tx),
    }
}

fn fixture(name: &str) -> Vec<String> {
    std::fs::read_to_string(feeds_dir().join("fixtures").join(name))
        .expect("fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

struct Case {
    mapping: &'static str,
    fixture: &'static str,
    /// Lines played on the first connection before it is dropped.
    split: usize,
    symbols: Vec<String>,
    subscribe: Value,
    ticks: Vec<Expected>,
    bad: u64,
    ignored: u64,
}

async fn upstream_case(case: Case) {
    let lines = fixture(case.fixture);
    let parts = vec![lines[..case.split].to_vec(), lines[case.split..].to_vec()];
    let mut up = fake_upstream(parts).await;

    let mut cfg = util::config();
    cfg.feeds.upstream.enabled = true;
    cfg.feeds.upstream.url = format!("ws://{}/ws", up.addr);
    cfg.feeds.upstream.mapping = case.mapping.into();
    cfg.feeds.upstream.symbols = case.symbols.clone();
    cfg.feeds.upstream.backoff_initial_ms = 5;
    cfg.feeds.upstream.backoff_max_ms = 20;
    cfg.feeds.upstream.idle_timeout_ms = 5000;
    let mut srv: TestServer = util::start(cfg).await;
    let metrics = srv.server().metrics().clone();

    let mut c: Client = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
        .await;
    let (conn, sub) = tokio::time::timeout(WAIT, up.subscribes.recv())
        .await
        .expect("the feed connects")
        .expect("fake upstream alive");
    assert_eq!(conn, 0);
    let sub: Value = serde_json::from_str(&sub).expect("subscribe is JSON");
    assert_eq!(sub, case.subscribe);
    if let Some(start) = up.start.take() {
        let _ = start.send(());
    }

    let mut got = Vec::new();
    while got.len() < case.ticks.len() {
        let e = c.event().await;
        if e["type"] == "tick" {
            got.push(e);
        }
    }
    check(&got, &case.ticks);

    // The drop mid-stream caused a reconnect and a second, identical subscribe.
    let (conn, sub) = tokio::time::timeout(WAIT, up.subscribes.recv())
        .await
        .expect("the feed reconnects")
        .expect("fake upstream alive");
    assert_eq!(conn, 1);
    assert_eq!(serde_json::from_str::<Value>(&sub).unwrap(), case.subscribe);
    assert!(metrics.upstream_reconnects.load(Ordering::Relaxed) >= 1);

    // Malformed and unknown messages were counted, and were not fatal: the feed delivered the
    // trades that followed them.
    eventually("bad messages counted", || {
        metrics.feed_errors.load(Ordering::Relaxed) == case.bad
            && metrics.feed_ignored.load(Ordering::Relaxed) == case.ignored
    })
    .await;
    assert!(c.silent_for(Duration::from_millis(200)).await);
    // Shutdown stops the feed promptly while it is connected.
    tokio::time::timeout(WAIT, srv.shutdown())
        .await
        .expect("shutdown in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_binance_trades_survive_a_dropped_connection() {
    upstream_case(Case {
        mapping: "binance",
        fixture: "binance_trades.jsonl",
        split: 6,
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
        subscribe: json!({"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1}),
        ticks: vec![
            tick("BNBBTC", 0.001, 100.0, "sell"),
            tick("BTCUSDT", 97250.01, 0.0015, "buy"),
            tick("BTCUSDT", 97250.5, 0.25, "sell"),
            tick("ETHUSDT", 3401.27, 1.2, "buy"),
            tick("BTCUSDT", 97249.99, 0.01, "buy"),
            tick("ETHUSDT", 3401.3, 0.5, "sell"),
        ],
        bad: 3,
        ignored: 3,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_coinbase_matches_survive_a_dropped_connection() {
    upstream_case(Case {
        mapping: "coinbase",
        fixture: "coinbase_matches.jsonl",
        split: 5,
        symbols: vec!["BTC-USD".into(), "ETH-USD".into()],
        subscribe: json!({"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches"]}),
        ticks: vec![
            tick("BTC-USD", 400.23, 5.23512, "buy"),
            tick("BTC-USD", 97251.1, 0.0042, "sell"),
            tick("ETH-USD", 3401.05, 2.0, "buy"),
            tick("BTC-USD", 97251.11, 0.1, "buy"),
        ],
        bad: 3,
        ignored: 3,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_silence_counts_as_a_dead_connection() {
    // One part, the last: the fake accepts, reads the subscribe, then says nothing at all.
    let mut up = fake_upstream(vec![vec![]]).await;
    if let Some(start) = up.start.take() {
        let _ = start.send(());
    }
    let mut cfg = util::config();
    cfg.feeds.upstream.enabled = true;
    cfg.feeds.upstream.url = format!("ws://{}/ws", up.addr);
    cfg.feeds.upstream.backoff_initial_ms = 5;
    cfg.feeds.upstream.backoff_max_ms = 20;
    cfg.feeds.upstream.idle_timeout_ms = 200;
    let srv = util::start(cfg).await;
    for want in 0..2 {
        let (conn, _) = tokio::time::timeout(WAIT, up.subscribes.recv())
            .await
            .expect("the feed (re)connects")
            .expect("fake upstream alive");
        assert_eq!(conn, want);
    }
    let reconnects = srv
        .server()
        .metrics()
        .upstream_reconnects
        .load(Ordering::Relaxed);
    assert!(reconnects >= 1, "{reconnects}");
}
