//! Order books from the venues' depth streams (`feeds.upstream.depth`), end to end: a local
//! venue plays each depth fixture (feeds/fixtures/*_depth, _level2, _book, _orderbook), and a
//! client subscribed to `book:<SYMBOL>` keeps its own copy from the protocol text, checking
//! every event's CRC-32 against it (subscribed by `book:*`, since the symbol exists only once
//! the feed has sent it); at the end the copy is `GET /api/v1/book/<SYMBOL>`. Where
//! the fixture has a gap or a checksum mismatch, the feed resyncs: it reconnects, the venue
//! plays the next part, and the client gets a `"reset": true` event for the fresh snapshot.

use serde_json::{Value, json};

use crate::util::book::{Copy, levels};
use crate::util::venue::fake_upstream;
use crate::util::{self, TestServer, WAIT};

const BINANCE: &str = include_str!("../feeds/fixtures/binance_depth.jsonl");
const COINBASE: &str = include_str!("../feeds/fixtures/coinbase_level2.jsonl");
const KRAKEN: &str = include_str!("../feeds/fixtures/kraken_book.jsonl");
const BYBIT: &str = include_str!("../feeds/fixtures/bybit_orderbook.jsonl");

/// The fixture's lines `numbers` (1-based), in that order.
fn pick(fixture: &str, numbers: &[usize]) -> Vec<String> {
    let lines: Vec<&str> = fixture.lines().filter(|l| !l.trim().is_empty()).collect();
    numbers.iter().map(|&n| lines[n - 1].to_owned()).collect()
}

/// One venue's run: what the feed is configured with and what the client should end with.
struct Run<'a> {
    venue: &'a str,
    symbol: &'a str,
    alias: Option<&'a str>,
    parts: Vec<Vec<String>>,
    /// The best bid once the last part has played.
    best_bid: (f64, f64),
    /// `"reset": true` events the client must see (the first book, and one per resync).
    resets: usize,
    /// Text the depth subscribe message holds.
    subscribe: &'a str,
}

async fn rest_book(srv: &TestServer, symbol: &str) -> Value {
    let (status, _, body) = srv
        .get(&format!("/api/v1/book/{symbol}?depth=25"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Plays the run and checks the client's copy against every checksum and, at the end, the
/// REST book; returns the server for metric checks.
async fn play(run: Run<'_>) -> TestServer {
    let connections = run.parts.len();
    let mut up = fake_upstream(run.parts, None).await;
    let mut cfg = util::config();
    let u = &mut cfg.feeds.upstream;
    u.enabled = true;
    u.url = up.url(false);
    u.mapping = run.venue.into();
    u.depth = run.venue.into();
    u.symbols = vec![run.symbol.into()];
    if let Some(alias) = run.alias {
        u.aliases = [(run.symbol.to_owned(), alias.to_owned())].into();
    }
    u.backoff_initial_ms = 5;
    u.backoff_max_ms = 20;
    let published = run.alias.unwrap_or(run.symbol);
    let srv = util::start(cfg).await;
    // The symbol exists once the feed has sent something: subscribe by wildcard first, so the
    // client sees the book from its first event.
    let mut client = srv.connect().await;
    client
        .subscribe(json!({"op":"subscribe","channels":["book:*"]}))
        .await;
    let channel = format!("book:{published}");
    tokio::time::timeout(WAIT, up.subscribes.recv())
        .await
        .expect("the feed connects")
        .expect("venue alive");
    up.go();

    let mut copy = Copy::new(25);
    let (mut resets, mut deltas, mut seen) = (0, 0, 0u64);
    let done = tokio::time::timeout(WAIT, async {
        while resets < run.resets || copy.bids().first() != Some(&run.best_bid) {
            let e = client.event().await;
            if e["type"] != "book" || e["ch"] != channel.as_str() {
                continue;
            }
            let seq = e["seq"].as_u64().unwrap_or_default();
            assert!(seq > seen, "seq goes up: {seq} after {seen}");
            seen = seq;
            copy.apply_checked(&e);
            if e["reset"] == true {
                resets += 1;
            } else {
                deltas += 1;
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "{}: {resets} resets, {deltas} deltas, copy {copy:?}",
        run.venue
    );
    assert_eq!(resets, run.resets, "{}", run.venue);
    assert!(deltas >= 1, "{}: deltas too", run.venue);
    // Every connection was made, and the last one subscribed to depth after the trades.
    for _ in 1..connections {
        tokio::time::timeout(WAIT, up.subscribes.recv())
            .await
            .expect("the feed reconnects")
            .expect("venue alive");
    }
    let sent = tokio::time::timeout(WAIT, up.sent.recv())
        .await
        .expect("a depth subscribe")
        .expect("venue alive");
    assert!(sent.1.contains(run.subscribe), "{sent:?}");

    let rest = rest_book(&srv, published).await;
    assert_eq!(copy.bids(), levels(&rest["bids"]), "{}: {rest}", run.venue);
    assert_eq!(copy.asks(), levels(&rest["asks"]), "{}: {rest}", run.venue);
    assert_eq!(Some(copy.checksum()), rest["checksum"].as_u64());
    srv
}

async fn feed_metric(srv: &TestServer, name: &str) -> Option<i64> {
    let text = util::metrics_text(srv).await;
    util::metric(&text, &format!("{name}{{feed=\"upstream\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_partial_depth_becomes_a_book_and_stale_ids_are_dropped() {
    let srv = play(Run {
        venue: "binance",
        symbol: "BTCUSDT",
        alias: None,
        parts: vec![pick(BINANCE, &(1..=12).collect::<Vec<_>>())],
        best_bid: (97250.1, 0.5),
        resets: 1,
        subscribe: "btcusdt@depth20@100ms",
    })
    .await;
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_stale_total").await,
        Some(1)
    );
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_resyncs_total").await,
        Some(0)
    );
    // The trade in the stream still became a tick.
    srv.wait_seq("BTCUSDT", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_level2_resyncs_after_an_unusable_update() {
    // Connection 0 ends at the l2update with side "hold" (line 10); connection 1 starts over
    // with a snapshot.
    let srv = play(Run {
        venue: "coinbase",
        symbol: "BTC-USD",
        alias: None,
        parts: vec![
            pick(COINBASE, &(1..=10).collect::<Vec<_>>()),
            pick(COINBASE, &[1, 12, 15]),
        ],
        best_bid: (97250.2, 0.1),
        resets: 2,
        subscribe: "level2_batch",
    })
    .await;
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_resyncs_total").await,
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_book_checksum_mismatch_resyncs_under_the_alias() {
    // Connection 0 ends at the documented checksum mismatch (line 10).
    let srv = play(Run {
        venue: "kraken",
        symbol: "BTC/USD",
        alias: Some("BTC-USD"),
        parts: vec![
            pick(KRAKEN, &(1..=10).collect::<Vec<_>>()),
            pick(KRAKEN, &[2, 14, 16]),
        ],
        best_bid: (97250.1, 0.3),
        resets: 2,
        subscribe: "\"channel\":\"book\"",
    })
    .await;
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_resyncs_total").await,
        Some(1)
    );
    // The trade on the same connection is published under the alias too.
    srv.wait_seq("BTC-USD", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_orderbook_gap_resyncs_and_a_restart_resets() {
    // Connection 0 ends at the gap (u 1004 after 1002, line 8); connection 1 has a snapshot,
    // a delta, then Bybit's service restart (u = 1) and a delta after it.
    let srv = play(Run {
        venue: "bybit",
        symbol: "BTCUSDT",
        alias: None,
        parts: vec![
            pick(BYBIT, &(1..=8).collect::<Vec<_>>()),
            pick(BYBIT, &[1, 10, 11, 14, 15]),
        ],
        best_bid: (97250.25, 0.1),
        resets: 3,
        subscribe: "orderbook.50.BTCUSDT",
    })
    .await;
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_resyncs_total").await,
        Some(1)
    );
    let updates = feed_metric(&srv, "tickcast_upstream_book_updates_total").await;
    assert!(updates >= Some(6), "{updates:?}");
}
