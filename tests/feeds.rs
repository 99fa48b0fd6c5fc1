//! The replay and upstream feeds, end to end: real server, real files, a real (local) upstream
//! WebSocket server, ticks read back over the public WebSocket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tickcast::config::Config;
use tickcast::feed::replay::ReplayFormat;

use crate::util::venue::{TestCa, fake_upstream};
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

fn fixture(name: &str) -> Vec<String> {
    std::fs::read_to_string(feeds_dir().join("fixtures").join(name))
        .expect("fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

struct Case {
    /// Serve `wss://` with a certificate from a CA the test makes (given as `ca_file`).
    tls: bool,
    mapping: &'static str,
    aliases: &'static [(&'static str, &'static str)],
    fixture: &'static str,
    /// Lines played on the first connection before it is dropped.
    split: usize,
    symbols: Vec<String>,
    subscribe: Value,
    ticks: Vec<Expected>,
    /// Unusable messages and trades, plus the refused subscription each fixture ends with.
    bad: u64,
    /// Acks, other channels and heartbeats.
    ignored: u64,
    /// Trades for symbols the feed was not configured for.
    unsubscribed: i64,
}

async fn upstream_case(case: Case) {
    let lines = fixture(case.fixture);
    let parts = vec![lines[..case.split].to_vec(), lines[case.split..].to_vec()];
    let ca = case.tls.then(|| TestCa::new(case.mapping));
    let mut up = fake_upstream(parts, ca.as_ref().map(|ca| ca.acceptor.clone())).await;

    let mut cfg = util::config();
    cfg.feeds.upstream.enabled = true;
    cfg.feeds.upstream.url = up.url(case.tls);
    if let Some(ca) = &ca {
        cfg.feeds.upstream.ca_file = ca.ca_file.display().to_string();
    }
    cfg.feeds.upstream.name = case.mapping.into();
    cfg.feeds.upstream.mapping = case.mapping.into();
    cfg.feeds.upstream.symbols = case.symbols.clone();
    cfg.feeds.upstream.aliases = case
        .aliases
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
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
    up.go();

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

    // Each fixture ends with the venue refusing a subscription: /readyz is degraded and names
    // the feed and the venue's reason; the per-feed metrics say what happened.
    let (status, _, body) = srv.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    let feed = &body["checks"]["feeds"]["upstreams"][case.mapping];
    assert_eq!(feed["ok"], false, "{body}");
    let error = feed["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("subscription refused: "), "{body}");
    assert_eq!(feed["trades"], case.ticks.len(), "{body}");
    let text = util::metrics_text(&srv).await;
    let label = format!("{{feed=\"{}\"}}", case.mapping);
    assert_eq!(
        util::metric(
            &text,
            &format!("tickcast_upstream_unsubscribed_total{label}")
        ),
        Some(case.unsubscribed),
        "{text}"
    );
    assert_eq!(
        util::metric(&text, &format!("tickcast_upstream_trades_total{label}")),
        Some(case.ticks.len() as i64)
    );
    // Shutdown stops the feed promptly while it is connected.
    tokio::time::timeout(WAIT, srv.shutdown())
        .await
        .expect("shutdown in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_binance_trades_survive_a_dropped_connection() {
    upstream_case(Case {
        tls: false,
        mapping: "binance",
        aliases: &[],
        fixture: "binance_trades.jsonl",
        split: 6,
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
        subscribe: json!({"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1}),
        // BNBBTC is not one of the feed's symbols: dropped.
        ticks: vec![
            tick("BTCUSDT", 97250.01, 0.0015, "buy"),
            tick("BTCUSDT", 97250.5, 0.25, "sell"),
            tick("ETHUSDT", 3401.27, 1.2, "buy"),
            tick("BTCUSDT", 97249.99, 0.01, "buy"),
            tick("ETHUSDT", 3401.3, 0.5, "sell"),
        ],
        bad: 4,
        ignored: 3,
        unsubscribed: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_coinbase_matches_over_tls_survive_a_dropped_connection() {
    upstream_case(Case {
        tls: true,
        mapping: "coinbase",
        aliases: &[],
        fixture: "coinbase_matches.jsonl",
        split: 5,
        symbols: vec!["BTC-USD".into(), "ETH-USD".into()],
        subscribe: json!({"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches","heartbeat"]}),
        ticks: vec![
            tick("BTC-USD", 400.23, 5.23512, "buy"),
            tick("BTC-USD", 97251.1, 0.0042, "sell"),
            tick("ETH-USD", 3401.05, 2.0, "buy"),
            tick("BTC-USD", 97251.11, 0.1, "buy"),
        ],
        bad: 4,
        ignored: 3,
        unsubscribed: 0,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_kraken_v2_trades_over_tls_published_under_aliases() {
    upstream_case(Case {
        tls: true,
        mapping: "kraken",
        aliases: &[("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")],
        fixture: "kraken_trades.jsonl",
        split: 6,
        symbols: vec!["BTC/USD".into(), "ETH/USD".into()],
        subscribe: json!({"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD","ETH/USD"],"snapshot":false}}),
        ticks: vec![
            tick("BTC-USD", 97250.1, 0.0015, "buy"),
            tick("BTC-USD", 97250.0, 0.25, "sell"),
            tick("ETH-USD", 3401.27, 1.2, "sell"),
            tick("BTC-USD", 97251.5, 0.01, "buy"),
            tick("ETH-USD", 3401.3, 0.5, "buy"),
        ],
        // A price as a string, a negative price in a batch, malformed JSON, data not an
        // array, and the refusal.
        bad: 5,
        // Status, ack, ticker, two heartbeats.
        ignored: 5,
        unsubscribed: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_bybit_v5_public_trades() {
    upstream_case(Case {
        tls: false,
        mapping: "bybit",
        aliases: &[],
        fixture: "bybit_trades.jsonl",
        split: 5,
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
        subscribe: json!({"op":"subscribe","args":["publicTrade.BTCUSDT","publicTrade.ETHUSDT"]}),
        ticks: vec![
            tick("BTCUSDT", 97250.01, 0.0015, "buy"),
            tick("ETHUSDT", 3401.27, 1.2, "buy"),
            tick("ETHUSDT", 3401.26, 0.8, "sell"),
            tick("BTCUSDT", 97249.99, 0.01, "sell"),
            tick("ETHUSDT", 3401.3, 0.5, "sell"),
        ],
        // Side "Hold", malformed JSON, size 0 in a batch, and the refusal.
        bad: 4,
        // Ack, order book, two pongs.
        ignored: 4,
        unsubscribed: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_okx_trades() {
    upstream_case(Case {
        tls: true,
        mapping: "okx",
        aliases: &[],
        fixture: "okx_trades.jsonl",
        split: 4,
        symbols: vec!["BTC-USDT".into(), "ETH-USDT".into()],
        subscribe: json!({"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"trades","instId":"ETH-USDT"}]}),
        ticks: vec![
            tick("BTC-USDT", 97250.1, 0.0015, "buy"),
            tick("ETH-USDT", 3401.27, 1.2, "sell"),
            tick("BTC-USDT", 97249.99, 0.01, "sell"),
            tick("ETH-USDT", 3401.3, 0.5, "buy"),
        ],
        // ts "1.7e12", malformed JSON, missing sz, and the refusal.
        bad: 4,
        // Two acks, tickers, two "pong".
        ignored: 5,
        unsubscribed: 0,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_silence_counts_as_a_dead_connection() {
    // One part, the last: the fake accepts, reads the subscribe, then says nothing at all.
    let mut up = fake_upstream(vec![vec![]], None).await;
    up.go();
    let mut cfg = util::config();
    cfg.feeds.upstream.enabled = true;
    cfg.feeds.upstream.url = up.url(false);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_refuses_a_certificate_it_does_not_trust() {
    // The venue's certificate comes from a CA the feed is not told about (no ca_file).
    let ca = TestCa::new("untrusted");
    let mut up = fake_upstream(vec![vec![]], Some(ca.acceptor.clone())).await;
    up.go();
    let mut cfg = util::config();
    cfg.feeds.upstream.enabled = true;
    cfg.feeds.upstream.url = up.url(true);
    cfg.feeds.upstream.backoff_initial_ms = 5;
    cfg.feeds.upstream.backoff_max_ms = 20;
    let srv = util::start(cfg).await;
    let metrics = srv.server().metrics().clone();
    // Several handshakes fail and are retried; none gets as far as a WebSocket subscribe.
    eventually("handshakes retried", || {
        metrics.upstream_reconnects.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(up.subscribes.try_recv().is_err(), "no subscribe over TLS");
}
