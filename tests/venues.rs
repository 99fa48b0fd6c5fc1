//! Several upstream venues at once (`[[feeds.upstreams]]`): each feed subscribes to its own
//! symbols, aliases merge venue symbols into one published symbol or keep them apart, and
//! inbound messages are capped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tickcast::feed::upstream::UpstreamConfig;

use crate::util::venue::fake_upstream;
use crate::util::{self, WAIT};

fn lines(v: &[Value]) -> Vec<String> {
    v.iter().map(Value::to_string).collect()
}

fn binance_trade(sym: &str, price: &str, t: u64) -> Value {
    json!({"e":"trade","E":t,"s":sym,"t":t,"p":price,"q":"1.0","T":t,"m":false,"M":true})
}

fn coinbase_match(product: &str, price: &str, time: &str) -> Value {
    json!({"type":"match","trade_id":1,"sequence":1,"maker_order_id":"a","taker_order_id":"b",
        "time":time,"product_id":product,"size":"1.0","price":price,"side":"sell"})
}

/// A feed entry as a deployment would write it: only the required keys and `aliases` (the rest
/// take their defaults).
fn entry(
    name: &str,
    url: String,
    mapping: &str,
    symbols: &[&str],
    aliases: &[(&str, &str)],
) -> UpstreamConfig {
    let mut toml =
        format!("name = {name:?}\nurl = {url:?}\nmapping = {mapping:?}\nsymbols = {symbols:?}\n");
    toml.push_str("[aliases]\n");
    for (k, v) in aliases {
        toml.push_str(&format!("{k:?} = {v:?}\n"));
    }
    toml::from_str(&toml).expect("entry parses with defaults")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_venues_at_once_merge_or_keep_symbols_apart() {
    let binance = [
        json!({"result":null,"id":1}),
        binance_trade("BTCUSDT", "97250.00", 1_735_689_600_001),
        binance_trade("ETHUSDT", "3401.00", 1_735_689_600_002),
        binance_trade("BTCUSDT", "97251.00", 1_735_689_600_003),
    ];
    let coinbase = [
        json!({"type":"subscriptions","channels":[]}),
        coinbase_match("BTC-USD", "97249.00", "2025-01-01T00:00:00.004Z"),
        coinbase_match("ETH-USD", "3400.00", "2025-01-01T00:00:00.005Z"),
        coinbase_match("BTC-USD", "97248.00", "2025-01-01T00:00:00.006Z"),
    ];
    let mut b = fake_upstream(vec![lines(&binance)], None).await;
    let mut c = fake_upstream(vec![lines(&coinbase)], None).await;
    let mut cfg = util::config();
    // BTCUSDT is published as BTC-USD, merged with Coinbase's; ETHUSDT stays apart from ETH-USD.
    cfg.feeds.upstreams = vec![
        entry(
            "binance",
            b.url(false),
            "binance",
            &["BTCUSDT", "ETHUSDT"],
            &[("BTCUSDT", "BTC-USD")],
        ),
        entry(
            "coinbase",
            c.url(false),
            "coinbase",
            &["BTC-USD", "ETH-USD"],
            &[],
        ),
    ];
    let srv = util::start(cfg).await;
    let mut client = srv.connect().await;
    client
        .subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
        .await;
    for up in [&mut b, &mut c] {
        tokio::time::timeout(WAIT, up.subscribes.recv())
            .await
            .expect("each feed connects")
            .expect("venue alive");
        up.go();
    }
    let mut per_channel: HashMap<String, Vec<(u64, f64)>> = HashMap::new();
    let mut n = 0;
    while n < 6 {
        let e = client.event().await;
        if e["type"] == "tick" {
            let ch = e["ch"].as_str().expect("ch").to_owned();
            let seq = e["seq"].as_u64().expect("seq");
            per_channel
                .entry(ch)
                .or_default()
                .push((seq, e["price"].as_f64().expect("price")));
            n += 1;
        }
    }
    let mut btc = per_channel.remove("ticks:BTC-USD").expect("merged BTC-USD");
    assert_eq!(
        btc.iter().map(|t| t.0).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "one sequence"
    );
    btc.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(
        btc.iter().map(|t| t.1).collect::<Vec<_>>(),
        [97248.0, 97249.0, 97250.0, 97251.0]
    );
    assert_eq!(per_channel.remove("ticks:ETHUSDT"), Some(vec![(1, 3401.0)]));
    assert_eq!(per_channel.remove("ticks:ETH-USD"), Some(vec![(1, 3400.0)]));
    assert!(per_channel.is_empty(), "{per_channel:?}");

    // Both feeds are listed by name, healthy; each counted its own trades.
    let (status, _, body) = srv.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    for name in ["binance", "coinbase"] {
        assert_eq!(
            body["checks"]["feeds"]["upstreams"][name]["ok"], true,
            "{body}"
        );
        assert_eq!(
            body["checks"]["feeds"]["upstreams"][name]["trades"], 3,
            "{body}"
        );
    }
    let text = util::metrics_text(&srv).await;
    assert_eq!(
        util::metric(&text, "tickcast_upstream_trades_total{feed=\"binance\"}"),
        Some(3)
    );
    assert_eq!(
        util::metric(&text, "tickcast_upstream_trades_total{feed=\"coinbase\"}"),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_cap_ends_the_connection_and_the_next_one_streams() {
    // Connection 0 sends one 4 KiB message; connection 1 a normal trade.
    let big = json!({"e":"24hrTicker","pad":"x".repeat(4096)});
    let parts = vec![
        lines(&[big]),
        lines(&[binance_trade("BTCUSDT", "97250.00", 1_735_689_600_001)]),
    ];
    let mut up = fake_upstream(parts, None).await;
    up.go();
    let mut cfg = util::config();
    cfg.feeds.upstream.enabled = true;
    cfg.feeds.upstream.url = up.url(false);
    cfg.feeds.upstream.symbols = vec!["BTCUSDT".into()];
    cfg.feeds.upstream.backoff_initial_ms = 5;
    cfg.feeds.upstream.backoff_max_ms = 20;
    cfg.feeds.upstream.max_message_bytes = 1024;
    let srv = util::start(cfg).await;
    srv.wait_seq("BTCUSDT", 1).await;
    let metrics = srv.server().metrics();
    assert!(metrics.upstream_reconnects.load(Ordering::Relaxed) >= 1);
    // The oversized message was never parsed: nothing was ignored or counted as bad.
    assert_eq!(metrics.feed_ignored.load(Ordering::Relaxed), 0);
    assert_eq!(metrics.feed_errors.load(Ordering::Relaxed), 0);
    let text = util::metrics_text(&srv).await;
    assert!(
        util::metric(&text, "tickcast_upstream_errors_total{feed=\"upstream\"}") >= Some(1),
        "the cut connection is counted: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_acks_and_a_refusal_are_no_signs_of_life() {
    use crate::util::venue::{PING, REPEAT};
    // Every connection: one trade (alive), then the venue refuses a subscription and keeps
    // sending WebSocket pings and acks forever, but never another trade or heartbeat.
    let script: Vec<String> = [
        binance_trade("BTCUSDT", "97250.00", 1_735_689_600_001).to_string(),
        json!({"error":{"code":2,"msg":"Invalid request: unknown stream"},"id":1}).to_string(),
        REPEAT.to_owned(),
        PING.to_owned(),
        json!({"result":null,"id":1}).to_string(),
        "@sleep:10".to_owned(),
    ]
    .into();
    let mut up = fake_upstream(vec![script.clone(), script], None).await;
    up.go();
    let mut cfg = util::config();
    cfg.feeds.upstream.enabled = true;
    cfg.feeds.upstream.url = up.url(false);
    cfg.feeds.upstream.symbols = vec!["BTCUSDT".into()];
    cfg.feeds.upstream.backoff_initial_ms = 5;
    cfg.feeds.upstream.backoff_max_ms = 20;
    cfg.feeds.upstream.idle_timeout_ms = 300;
    let srv = util::start(cfg).await;
    // The idle timeout fires although messages keep coming: the feed reconnects.
    for want in 0..2 {
        let (conn, _) = tokio::time::timeout(WAIT, up.subscribes.recv())
            .await
            .expect("the feed (re)connects")
            .expect("venue alive");
        assert_eq!(conn, want);
    }
    // Each new connection clears the refusal until the venue repeats it: poll, bounded.
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let (status, _, body) = srv.get("/readyz", None).await;
        if status == 503 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never degraded: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(
        body["checks"]["feeds"]["upstreams"]["upstream"]["error"],
        "subscription refused: Invalid request: unknown stream",
        "{body}"
    );
}
