//! Order books end to end (docs/PROTOCOL.md "Order books"): depth updates posted over HTTP,
//! `book:` channels with snapshots, deltas and checksums, across depth, throttle, resume,
//! wildcards and both encodings; `GET /api/v1/book/{symbol}`.
//!
//! The client here is written from the protocol text, not from the server's code: a map of
//! levels per side, deltas applied as documented, and the documented CRC-32 over its own copy.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::book::{Copy, levels};
use crate::util::{self, Client, TestServer};

async fn post_books(srv: &TestServer, updates: Value) -> (u16, Value) {
    srv.ingest_at("/api/v1/ingest/book", updates).await
}

async fn post_ok(srv: &TestServer, updates: Value) {
    let (status, body) = post_books(srv, updates).await;
    assert_eq!(status, 202, "{body}");
}

async fn server(depth: usize) -> TestServer {
    let mut c = util::config();
    c.book.depth = depth;
    util::start(c).await
}

/// A deterministic stream of depth updates around 100: a snapshot, then `n` deltas that move,
/// add and remove levels (some deeper than any view).
fn updates(symbol: &str, n: usize) -> Vec<Value> {
    let mut out = vec![json!({"symbol": symbol, "snapshot": true,
        "bids": (0..12).map(|i| json!([100.0 - f64::from(i) * 0.5, 10 + i])).collect::<Vec<_>>(),
        "asks": (0..12).map(|i| json!([100.5 + f64::from(i) * 0.5, 20 + i])).collect::<Vec<_>>()})];
    let mut x: u64 = 7;
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = (x >> 33) % 30;
        let size = if (x >> 20).is_multiple_of(4) {
            0
        } else {
            (x >> 40) % 50 + 1
        };
        let (side, price) = if k < 15 {
            ("bids", 100.0 - k as f64 * 0.5)
        } else {
            ("asks", 100.5 + (k - 15) as f64 * 0.5)
        };
        out.push(json!({"symbol": symbol, side: [[price, size]]}));
    }
    out
}

/// Reads `book` events until the copy's seq reaches `seq`.
/// Applies `c`'s book events to `copy` until it has seen `until`; returns the last `seq` and how
/// many events it applied.
async fn follow(c: &mut Client, copy: &mut Copy, mut seen: u64, until: u64) -> (u64, usize) {
    let mut applied = 0;
    while seen < until {
        let e = c.event().await;
        if e["type"] != "book" {
            continue;
        }
        let seq = e["seq"].as_u64().unwrap_or_default();
        assert!(seq > seen, "seq goes up: {seq} after {seen}");
        copy.apply_checked(&e);
        applied += 1;
        seen = seq;
    }
    (seen, applied)
}

async fn rest_book(srv: &TestServer, symbol: &str, depth: usize) -> Value {
    let (status, _, body) = srv
        .get(&format!("/api/v1/book/{symbol}?depth={depth}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn book_seq(srv: &TestServer, symbol: &str) -> u64 {
    for _ in 0..200 {
        let (status, _, body) = srv.get(&format!("/api/v1/book/{symbol}"), None).await;
        if status == 200 {
            return body["seq"].as_u64().unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no book for {symbol}");
}

/// Waits until the book channel has published `n` events.
async fn wait_book_seq(srv: &TestServer, symbol: &str, n: u64) {
    for _ in 0..500 {
        if book_seq(srv, symbol).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("book:{symbol} never reached seq {n}");
}

/// Waits until the book's best bid is `bid`; returns the book's seq then.
async fn wait_best_bid(srv: &TestServer, symbol: &str, bid: (f64, f64)) -> u64 {
    for _ in 0..500 {
        let b = rest_book(srv, symbol, 1).await;
        if levels(&b["bids"]).first() == Some(&bid) {
            return b["seq"].as_u64().unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the best bid of {symbol} never became {bid:?}");
}

fn snapshot_event(snap: &Value) -> Value {
    assert_eq!(snap["type"], "snapshot", "{snap}");
    snap["data"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_applying_the_deltas_always_ends_with_the_servers_checksum() {
    let srv = server(5).await;
    let ups = updates("BTC-USD", 120);
    post_ok(&srv, Value::Array(ups[..1].to_vec())).await;
    wait_book_seq(&srv, "BTC-USD", 1).await;

    // Full depth, a narrower depth, and a throttled one, side by side; one in MessagePack.
    let mut full = srv.connect().await;
    let mut narrow = srv.connect().await;
    let mut slow = srv.connect().await;
    let mut packed = Client::connect_msgpack(&srv.url()).await;
    full.subscribe(json!({"op":"subscribe","channels":["book:BTC-USD"]}))
        .await;
    narrow
        .subscribe(json!({"op":"subscribe","channels":["book:BTC-USD"],"depth":2}))
        .await;
    slow.subscribe(json!({"op":"subscribe","channels":["book:BTC-USD"],"throttle_ms":200}))
        .await;
    packed
        .subscribe(json!({"op":"subscribe","channels":["book:*"]}))
        .await;
    let mut copies = [Copy::new(5), Copy::new(2), Copy::new(5), Copy::new(5)];
    let mut seen = [0u64; 4];
    let mut applied = [0usize; 4];
    for (i, c) in [&mut full, &mut narrow, &mut slow, &mut packed]
        .into_iter()
        .enumerate()
    {
        let first = snapshot_event(&c.event().await);
        assert_eq!(first["reset"], true, "{first}");
        copies[i].apply_checked(&first);
        seen[i] = first["seq"].as_u64().unwrap_or_default();
    }
    assert_eq!(copies[1].bids().len(), 2, "depth 2: {:?}", copies[1]);
    assert_eq!(copies[0].bids().len(), 5);

    // Deltas in several requests, then a new best bid that marks the end.
    for chunk in ups[1..].chunks(17) {
        post_ok(&srv, Value::Array(chunk.to_vec())).await;
    }
    post_ok(&srv, json!([{"symbol":"BTC-USD","bids":[[100.25, 999]]}])).await;
    let last = wait_best_bid(&srv, "BTC-USD", (100.25, 999.0)).await;
    for (i, c) in [&mut full, &mut narrow, &mut slow, &mut packed]
        .into_iter()
        .enumerate()
    {
        (seen[i], applied[i]) = follow(c, &mut copies[i], seen[i], last).await;
    }
    // Every copy is the server's book at its depth.
    for (copy, depth) in copies.iter().zip([5, 2, 5, 5]) {
        let rest = rest_book(&srv, "BTC-USD", depth).await;
        assert_eq!(copy.bids(), levels(&rest["bids"]), "depth {depth}");
        assert_eq!(copy.asks(), levels(&rest["asks"]), "depth {depth}");
        assert_eq!(Some(copy.checksum()), rest["checksum"].as_u64());
    }
    // The throttled one got fewer events than there were (net deltas, at most one per 200 ms;
    // the full one gets every event however the posts were batched into frames).
    assert!(applied[2] < applied[0], "{} vs {}", applied[2], applied[0]);

    // Resume: a client that saw `seen` and left gets exactly the deltas it missed.
    let mut again = srv.connect().await;
    let ack = again
        .subscribe(json!({"op":"subscribe","channels":["book:BTC-USD"]}))
        .await;
    let mut copy = Copy::new(5);
    let s = snapshot_event(&again.event().await);
    copy.apply_checked(&s);
    let at = s["seq"].as_u64().unwrap_or_default();
    drop(again);
    // Two new best levels inside the spread: two events for certain.
    post_ok(
        &srv,
        json!([{"symbol":"BTC-USD","bids":[[100.3, 1]]},
                         {"symbol":"BTC-USD","asks":[[100.4, 2]]}]),
    )
    .await;
    wait_book_seq(&srv, "BTC-USD", at + 2).await;
    let mut back = srv.connect().await;
    back.subscribe(json!({"op":"subscribe","channels":["book:BTC-USD"],
        "from":{"book:BTC-USD": at},"epoch": ack["epoch"]}))
        .await;
    let e1 = back.event().await;
    assert_eq!(
        (
            e1["type"].as_str(),
            e1["seq"].as_u64(),
            e1["reset"].as_bool()
        ),
        (Some("book"), Some(at + 1), Some(false)),
        "a replay, not a snapshot: {e1}"
    );
    copy.apply_checked(&e1);
    let e2 = back.event().await;
    assert_eq!(e2["seq"].as_u64(), Some(at + 2));
    copy.apply_checked(&e2);
    assert_eq!(
        Some(copy.checksum()),
        rest_book(&srv, "BTC-USD", 5).await["checksum"].as_u64()
    );

    // A stale epoch: a reset snapshot with the current view.
    let mut stale = srv.connect().await;
    stale
        .subscribe(json!({"op":"subscribe","channels":["book:BTC-USD"],
            "from":{"book:BTC-USD": at},"epoch": 1}))
        .await;
    let snap = stale.event().await;
    assert_eq!(
        (snap["type"].as_str(), snap["reset"].as_bool()),
        (Some("snapshot"), Some(true))
    );
    let mut fresh = Copy::new(5);
    fresh.apply_checked(&snapshot_event(&snap));
    assert_eq!(fresh, copy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_book_input_gets_specific_errors() {
    let srv = server(5).await;
    let cases = [
        (json!({"bids": []}), 400, "bad_request"),
        (
            json!([{"symbol":"X","bids":[[0, 1]]}]),
            422,
            "invalid_records",
        ),
        (
            json!([{"symbol":"X","asks":[[1, -1]]}]),
            422,
            "invalid_records",
        ),
        (
            json!([{"symbol":"x","bids":[[1, 1]]}]),
            422,
            "invalid_records",
        ),
        (json!([{"symbol":"X","bids":[[1]]}]), 422, "invalid_records"),
        (json!([{"symbol":"X","levels":[]}]), 422, "invalid_records"),
    ];
    for (body, status, code) in cases {
        let (s, got) = post_books(&srv, body.clone()).await;
        assert_eq!(
            (s, got["code"].as_str()),
            (status, Some(code)),
            "{body}: {got}"
        );
    }
    // Nothing of a failed request was ingested: no book.
    srv.ingest_n("X", 1, 0.0).await;
    srv.wait_seq("X", 1).await;
    let (s, _, got) = srv.get("/api/v1/book/X", None).await;
    assert_eq!((s, got["code"].as_str()), (404, Some("not_found")), "{got}");
    let (s, _, got) = srv.get("/api/v1/book/NOPE", None).await;
    assert_eq!((s, got["code"].as_str()), (404, Some("unknown_symbol")));
    post_ok(
        &srv,
        json!([{"symbol":"X","snapshot":true,"bids":[[1, 1]],"asks":[[2, 1]]}]),
    )
    .await;
    wait_book_seq(&srv, "X", 1).await;
    for q in ["depth=0", "depth=6", "depth=two", "deep=1"] {
        let (s, _, got) = srv.get(&format!("/api/v1/book/X?{q}"), None).await;
        assert_eq!(
            (s, got["code"].as_str()),
            (400, Some("bad_request")),
            "{q}: {got}"
        );
    }
    let b = rest_book(&srv, "X", 1).await;
    assert_eq!(
        (
            b["mid"].as_f64(),
            b["spread"].as_f64(),
            b["imbalance"].as_f64()
        ),
        (Some(1.5), Some(1.0), Some(0.0))
    );

    let mut c = srv.connect().await;
    for depth in [0, 6] {
        c.send(json!({"op":"subscribe","id":1,"channels":["book:X"],"depth":depth}))
            .await;
        let e = c.event().await;
        assert_eq!(
            (e["code"].as_str(), e["id"].as_i64()),
            (Some("bad_request"), Some(1)),
            "{e}"
        );
    }
}
