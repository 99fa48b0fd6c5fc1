//! Order books from the venues' depth streams (`feeds.upstream.depth`), end to end: a local
//! venue plays each depth fixture (feeds/fixtures/*_depth, _level2, _book, _orderbook), and a
//! client subscribed to `book:<SYMBOL>` keeps its own copy from the protocol text, checking
//! every event's CRC-32 against it (subscribed by `book:*`, since the symbol exists only once
//! the feed has sent it); at the end the copy is `GET /api/v1/book/<SYMBOL>`. Where
//! the fixture has a gap or a checksum mismatch, the feed resyncs that symbol on the open
//! connection (unsubscribe, subscribe), the venue answers with a fresh snapshot after deltas
//! still in flight, and the client gets a `"reset": true` event for it; a venue that does not
//! answer gets a new connection.

use serde_json::{Value, json};

use crate::util::book::{Copy, levels};
use crate::util::venue::{AWAIT, REPEAT, SLEEP, fake_upstream};
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

/// One connection: `before` up to the loss of sync, then (once the feed unsubscribed the
/// symbol) `after`: deltas still in flight, then the venue's answer to the resubscribe.
fn resubscribed(fixture: &str, before: &[usize], after: &[usize]) -> Vec<String> {
    let mut lines = pick(fixture, before);
    lines.push(format!("{AWAIT}unsubscribe"));
    lines.extend(pick(fixture, after));
    lines
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
    /// Text the resubscribe's unsubscribe message holds, when one is expected.
    unsubscribe: Option<&'a str>,
    /// `idle_timeout_ms` of the feed (also how long a resubscribe may go unanswered).
    idle_timeout_ms: Option<u64>,
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
    if let Some(ms) = run.idle_timeout_ms {
        u.idle_timeout_ms = ms;
    }
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
    if let Some(text) = run.unsubscribe {
        // The resync went out on the same connection: unsubscribe, then subscribe again.
        let resync: Vec<(usize, String)> = tokio::time::timeout(WAIT, async {
            let mut got = vec![
                up.sent.recv().await.expect("venue alive"),
                up.sent.recv().await.expect("venue alive"),
            ];
            while !got[0].1.contains("unsubscribe") {
                got.remove(0);
                got.push(up.sent.recv().await.expect("venue alive"));
            }
            got
        })
        .await
        .expect("an unsubscribe");
        assert!(resync[0].1.contains(text), "{resync:?}");
        assert!(resync[1].1.contains("subscribe") && resync[1].1.contains(text));
        assert!(resync.iter().all(|(conn, _)| *conn == 0), "{resync:?}");
    }

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
        unsubscribe: None,
        idle_timeout_ms: None,
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
    // The l2update with side "hold" (line 10) loses the product's sync; one more l2update is
    // in flight (line 11) before the venue answers the resubscribe with a snapshot.
    let srv = play(Run {
        venue: "coinbase",
        symbol: "BTC-USD",
        alias: None,
        parts: vec![resubscribed(
            COINBASE,
            &(1..=10).collect::<Vec<_>>(),
            &[11, 1, 12, 15],
        )],
        best_bid: (97250.2, 0.1),
        resets: 2,
        subscribe: "level2_batch",
        unsubscribe: Some(r#""product_ids":["BTC-USD"],"channels":["level2_batch"]"#),
        idle_timeout_ms: None,
    })
    .await;
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_resyncs_total").await,
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_book_checksum_mismatch_resyncs_under_the_alias() {
    // The documented checksum mismatch (line 10) loses sync; an update in flight (line 11),
    // then the subscribe ack and a fresh snapshot.
    let srv = play(Run {
        venue: "kraken",
        symbol: "BTC/USD",
        alias: Some("BTC-USD"),
        parts: vec![resubscribed(
            KRAKEN,
            &(1..=10).collect::<Vec<_>>(),
            &[11, 2, 14, 16],
        )],
        best_bid: (97250.1, 0.3),
        resets: 2,
        subscribe: "\"channel\":\"book\"",
        unsubscribe: Some(r#""channel":"book","symbol":["BTC/USD"]"#),
        idle_timeout_ms: None,
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
    // The gap (u 1004 after 1002, line 8) loses sync; a delta in flight (line 9), then the
    // resubscribe's snapshot, a delta, Bybit's service restart (u = 1) and a delta after it.
    let srv = play(Run {
        venue: "bybit",
        symbol: "BTCUSDT",
        alias: None,
        parts: vec![resubscribed(
            BYBIT,
            &(1..=8).collect::<Vec<_>>(),
            &[9, 1, 10, 11, 14, 15],
        )],
        best_bid: (97250.25, 0.1),
        resets: 3,
        subscribe: "orderbook.50.BTCUSDT",
        unsubscribe: Some("orderbook.50.BTCUSDT"),
        idle_timeout_ms: None,
    })
    .await;
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_resyncs_total").await,
        Some(1)
    );
    let updates = feed_metric(&srv, "tickcast_upstream_book_updates_total").await;
    assert!(updates >= Some(6), "{updates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_venue_that_does_not_answer_a_resubscribe_gets_a_new_connection() {
    // Kraken loses sync at line 10, then only sends heartbeats (the connection stays alive):
    // after the idle timeout without a snapshot the feed reconnects, and connection 1 answers.
    let mut silent = pick(KRAKEN, &(1..=10).collect::<Vec<_>>());
    silent.extend([
        REPEAT.to_owned(),
        r#"{"channel":"heartbeat"}"#.to_owned(),
        format!("{SLEEP}50"),
    ]);
    let srv = play(Run {
        venue: "kraken",
        symbol: "BTC/USD",
        alias: Some("BTC-USD"),
        parts: vec![silent, pick(KRAKEN, &[2, 14, 16])],
        best_bid: (97250.1, 0.3),
        resets: 2,
        subscribe: "\"channel\":\"book\"",
        unsubscribe: None,
        idle_timeout_ms: Some(1_000),
    })
    .await;
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_resyncs_total").await,
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_leaves_the_other_symbols_books_alone() {
    // Two Kraken books on one connection: BTC/USD loses sync at the documented mismatch
    // (line 10) and is resubscribed; ETH/USD (the same levels under another symbol) goes on
    // with its deltas meanwhile, and never gets a reset beyond its first snapshot.
    let btc = |n: &[usize]| pick(KRAKEN, n);
    let eth = |n: &[usize]| -> Vec<String> {
        btc(n)
            .into_iter()
            .map(|l| l.replace("BTC/USD", "ETH/USD"))
            .collect()
    };
    let mut script = btc(&[1, 2, 3]);
    script.extend(eth(&[3]));
    script.extend(btc(&[5]));
    script.extend(eth(&[5]));
    script.extend(btc(&[6, 8, 10]));
    script.push(format!("{AWAIT}unsubscribe"));
    script.extend(eth(&[6, 8]));
    script.extend(btc(&[11, 2, 14, 16]));
    let mut up = fake_upstream(vec![script], None).await;
    let mut cfg = util::config();
    let u = &mut cfg.feeds.upstream;
    u.enabled = true;
    u.url = up.url(false);
    u.mapping = "kraken".into();
    u.depth = "kraken".into();
    u.symbols = vec!["BTC/USD".into(), "ETH/USD".into()];
    u.aliases = [
        ("BTC/USD".to_owned(), "BTC-USD".to_owned()),
        ("ETH/USD".to_owned(), "ETH-USD".to_owned()),
    ]
    .into();
    let srv = util::start(cfg).await;
    let mut client = srv.connect().await;
    client
        .subscribe(json!({"op":"subscribe","channels":["book:*"]}))
        .await;
    tokio::time::timeout(WAIT, up.subscribes.recv())
        .await
        .expect("the feed connects")
        .expect("venue alive");
    up.go();

    let (mut btc_copy, mut eth_copy) = (Copy::new(25), Copy::new(25));
    let (mut btc_resets, mut eth_resets, mut eth_deltas) = (0, 0, 0);
    let done = tokio::time::timeout(WAIT, async {
        while btc_resets < 2
            || btc_copy.bids().first() != Some(&(97250.1, 0.3))
            || eth_copy.bids().first() != Some(&(97250.3, 0.4))
        {
            let e = client.event().await;
            if e["type"] != "book" {
                continue;
            }
            let reset = e["reset"] == true;
            match e["ch"].as_str() {
                Some("book:BTC-USD") => {
                    btc_copy.apply_checked(&e);
                    btc_resets += usize::from(reset);
                }
                Some("book:ETH-USD") => {
                    eth_copy.apply_checked(&e);
                    eth_resets += usize::from(reset);
                    eth_deltas += usize::from(!reset);
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "BTC {btc_resets} resets {btc_copy:?}; ETH {eth_resets} resets, {eth_deltas} deltas {eth_copy:?}"
    );
    assert_eq!((eth_resets, eth_deltas), (1, 3), "ETH was never resynced");
    let rest = rest_book(&srv, "ETH-USD").await;
    assert_eq!(eth_copy.bids(), levels(&rest["bids"]));
    assert_eq!(Some(eth_copy.checksum()), rest["checksum"].as_u64());
    assert_eq!(
        feed_metric(&srv, "tickcast_upstream_book_resyncs_total").await,
        Some(1)
    );
    // One connection throughout.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), up.subscribes.recv())
            .await
            .is_err(),
        "the feed reconnected"
    );
}
