//! The book channel's contract as a client written from docs/PROTOCOL.md finds it (issue 23):
//! `seq` contiguous at every depth without a throttle, a resume answered by a `snapshot`, the
//! checksum's number rule at tiny and huge sizes, and no periodic resets on a single node.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::book::Copy;
use crate::util::{self, Client, TestServer};

async fn post_books(srv: &TestServer, updates: Value) {
    let (status, body) = srv.ingest_at("/api/v1/ingest/book", updates).await;
    assert_eq!(status, 202, "{body}");
}

async fn rest_book(srv: &TestServer, symbol: &str) -> Value {
    let (status, _, body) = srv.get(&format!("/api/v1/book/{symbol}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `book:SYM` has published `seq`.
async fn wait_book_seq(srv: &TestServer, symbol: &str, seq: u64) {
    util::wait_until("book seq", Duration::from_secs(10), async || {
        let (status, _, b) = srv.get(&format!("/api/v1/book/{symbol}"), None).await;
        status == 200 && b["seq"].as_u64() >= Some(seq)
    })
    .await;
}

/// A client's book channels: a copy per channel, checked at every event, and the `seq` rule.
struct Books {
    depth: usize,
    copies: HashMap<String, (Copy, u64)>,
    events: usize,
    empty: usize,
}

impl Books {
    fn new(depth: usize) -> Self {
        Books {
            depth,
            copies: HashMap::new(),
            events: 0,
            empty: 0,
        }
    }

    /// Applies one message: a snapshot starts a channel's copy; every `book` event must be
    /// exactly the next `seq` of its channel and leave the copy with its checksum.
    fn apply(&mut self, m: &Value) {
        let ch = m["ch"].as_str().unwrap_or_default().to_owned();
        match m["type"].as_str() {
            Some("snapshot") => {
                let mut copy = Copy::new(self.depth);
                if let Some(e) = m["data"].get(0) {
                    copy.apply_checked(e);
                }
                let seq = m["seq"].as_u64().expect("snapshot seq");
                self.copies.insert(ch, (copy, seq));
            }
            Some("book") => {
                let seq = m["seq"].as_u64().expect("book seq");
                if !self.copies.contains_key(&ch) {
                    // A symbol whose first book came after the wildcard subscribe (a loaded
                    // machine's feed is slow to reach all its symbols): no snapshot, its
                    // channel starts at seq 1 with a reset.
                    assert_eq!((seq, &m["reset"]), (1, &json!(true)), "{ch} began with {m}");
                    self.copies.insert(ch.clone(), (Copy::new(self.depth), 0));
                }
                let (copy, last) = self.copies.get_mut(&ch).expect("a copy");
                assert_eq!(seq, *last + 1, "{ch}: seq {seq} after {last}: {m}");
                copy.apply_checked(m);
                *last = seq;
                self.events += 1;
                let empty = |k: &str| m[k].as_array().is_some_and(Vec::is_empty);
                self.empty += usize::from(empty("bids") && empty("asks"));
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_every_depth_without_a_throttle_book_seq_never_jumps_and_checksums_hold() {
    let mut cfg = util::config();
    cfg.feeds.synthetic.enabled = true;
    cfg.feeds.synthetic.symbols = 8;
    cfg.feeds.synthetic.rate = 400.0;
    cfg.feeds.synthetic.book_levels = 20;
    cfg.book.depth = 25;
    // Four clients read by one task on a loaded machine can fall seconds behind the feed: a
    // queue that never fills in the test's time, so what they see is the seq rule, not the
    // slow-consumer rule (a queue that overflows turns a book into a reset at a later seq).
    cfg.ws.outbox_max_events = 1 << 16;
    cfg.ws.outbox_max_bytes = 64 << 20;
    let srv = util::start(cfg).await;
    let mut clients = vec![
        (srv.connect().await, Books::new(5)),
        (srv.connect().await, Books::new(1)),
        (srv.connect().await, Books::new(10)),
        (Client::connect_msgpack(&srv.url()).await, Books::new(5)),
    ];
    for (c, books) in &mut clients {
        c.subscribe(json!({"op":"subscribe","channels":["book:*"],"depth": books.depth}))
            .await;
    }
    // Each client reads until it has applied more than 1,000 book events (a count, not a time
    // window: on a loaded machine the feed's 400 ticks/s reach the clients late): every event
    // must follow its channel's last.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while clients.iter().any(|(_, books)| books.events <= 1_000) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 60 s: {:?} events",
            clients.iter().map(|(_, b)| b.events).collect::<Vec<_>>()
        );
        for (c, books) in &mut clients {
            while let Some(util::Got::Event(m)) = c.next_within(Duration::from_millis(1)).await {
                books.apply(&m);
            }
        }
    }
}

/// A symbol whose first book comes after a `book:*` subscribe gets no snapshot: its channel
/// starts with the reset at seq 1 (what the depth test's clients meet when the feed reaches a
/// symbol late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_that_appears_under_a_wildcard_starts_with_a_reset_at_seq_1() {
    let srv = util::start(util::config()).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["book:*"],"depth":1}))
        .await;
    post_books(
        &srv,
        json!([{"symbol":"LATE","snapshot":true,"bids":[[10,1],[9,2]],"asks":[[11,1]]}]),
    )
    .await;
    post_books(&srv, json!([{"symbol":"LATE","bids":[[10,4]]}])).await;
    let mut books = Books::new(1);
    let first = c.event_of("book").await;
    assert_eq!(first["ch"], "book:LATE", "{first}");
    books.apply(&first);
    books.apply(&c.event_of("book").await);
    assert_eq!(books.events, 2);
    assert_eq!(books.copies["book:LATE"].0.bids(), vec![(10.0, 4.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_below_the_depth_arrives_as_an_empty_delta_with_its_seq() {
    let srv = util::start(util::config()).await;
    post_books(
        &srv,
        json!([{"symbol":"DEEP","snapshot":true,
            "bids":[[100,1],[99,2],[98,3]],"asks":[[101,1],[102,2],[103,3]]}]),
    )
    .await;
    wait_book_seq(&srv, "DEEP", 1).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["book:DEEP"],"depth":1}))
        .await;
    let mut books = Books::new(1);
    books.apply(&c.event().await);
    // The third bid changes (outside depth 1), then the best bid does.
    post_books(&srv, json!([{"symbol":"DEEP","bids":[[98,7]]}])).await;
    post_books(&srv, json!([{"symbol":"DEEP","bids":[[100,5]]}])).await;
    let empty = c.event_of("book").await;
    books.apply(&empty);
    assert_eq!((books.events, books.empty), (1, 1), "{empty}");
    let best = c.event_of("book").await;
    books.apply(&best);
    assert_eq!(best["bids"], json!([[100, 5]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_resume_at_a_narrower_depth_or_a_throttle_is_a_reset_snapshot() {
    let srv = util::start(util::config()).await;
    post_books(
        &srv,
        json!([{"symbol":"RES","snapshot":true,
            "bids":[[100,1],[99,2],[98,3]],"asks":[[101,1],[102,2],[103,3]]}]),
    )
    .await;
    wait_book_seq(&srv, "RES", 1).await;
    let mut c = srv.connect().await;
    let ack = c
        .subscribe(json!({"op":"subscribe","channels":["book:RES"],"depth":2}))
        .await;
    let snap = c.event().await;
    let seen = snap["seq"].as_u64().expect("seq");
    drop(c);
    post_books(
        &srv,
        json!([{"symbol":"RES","bids":[[100.5,4]]},{"symbol":"RES","asks":[[100.7,5]]}]),
    )
    .await;
    wait_book_seq(&srv, "RES", seen + 2).await;
    for extra in [json!({"depth": 2}), json!({"throttle_ms": 100})] {
        let mut back = srv.connect().await;
        let mut req = json!({"op":"subscribe","channels":["book:RES"],
            "from":{"book:RES": seen},"epoch": ack["epoch"]});
        for (k, v) in extra.as_object().expect("object") {
            req[k] = v.clone();
        }
        back.subscribe(req).await;
        let m = back.event().await;
        assert_eq!(
            (m["type"].as_str(), m["reset"].as_bool(), m["seq"].as_u64()),
            (Some("snapshot"), Some(true), Some(seen + 2)),
            "{extra}: {m}"
        );
        let depth = extra["depth"].as_u64().unwrap_or(25) as usize;
        let mut copy = Copy::new(depth);
        copy.apply_checked(&m["data"][0]);
        assert_eq!(copy.bids()[0], (100.5, 4.0));
    }
}

/// The documented number rule, as a client in another language would write it: the shortest
/// round-trip digits of the double with their exponent (here Rust's `{:e}`; JavaScript's
/// `String(x)`), written out in plain notation.
fn plain(x: f64) -> String {
    let e = format!("{x:e}");
    let (mantissa, exp) = e.split_once('e').expect("an exponent");
    let exp: i64 = exp.parse().expect("an integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let point = 1 + exp; // digits before the decimal point
    let n = digits.len() as i64;
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= n {
        format!("{sign}{digits}{}", "0".repeat((point - n) as usize))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

fn documented_checksum(bids: &[(f64, f64)], asks: &[(f64, f64)]) -> u64 {
    let mut parts = Vec::new();
    for i in 0..10 {
        for (p, s) in [bids.get(i), asks.get(i)].into_iter().flatten() {
            parts.push(format!("{}:{}", plain(*p), plain(*s)));
        }
    }
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    u64::from(crc.checksum(parts.join(":").as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_number_rule_gives_the_servers_checksum_at_tiny_and_huge_sizes() {
    assert_eq!(plain(1e-7), "0.0000001");
    assert_eq!(plain(1e21), "1000000000000000000000");
    assert_eq!(plain(1.5e20), "150000000000000000000");
    assert_eq!(plain(187.25), "187.25");
    let srv = util::start(util::config()).await;
    let bids = [(0.0000001, 1e21), (1e-8, 0.00000123)];
    let asks = [(123456789012.5, 3e-7), (1e15, 1.5e20)];
    let levels = |l: &[(f64, f64)]| l.iter().map(|(p, s)| json!([p, s])).collect::<Vec<_>>();
    post_books(
        &srv,
        json!([{"symbol":"TINY","snapshot":true,"bids":levels(&bids),"asks":levels(&asks)}]),
    )
    .await;
    wait_book_seq(&srv, "TINY", 1).await;
    let want = documented_checksum(&bids, &asks);
    assert_eq!(
        rest_book(&srv, "TINY").await["checksum"].as_u64(),
        Some(want)
    );
    let mut c = srv.connect().await;
    let mut m = Client::connect_msgpack(&srv.url()).await;
    for client in [&mut c, &mut m] {
        client
            .subscribe(json!({"op":"subscribe","channels":["book:TINY"]}))
            .await;
        let snap = client.event().await;
        let e = &snap["data"][0];
        assert_eq!(e["checksum"].as_u64(), Some(want), "{snap}");
        // The copy a client builds from the wire numbers gives it too.
        let mut copy = Copy::new(25);
        copy.apply_checked(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_sends_no_periodic_book_resets_unless_configured() {
    for (checkpoint_ms, want_resets) in [(0, false), (300, true)] {
        let mut cfg = util::config();
        cfg.book.checkpoint_ms = checkpoint_ms;
        let srv = util::start(cfg).await;
        post_books(
            &srv,
            json!([{"symbol":"CKP","snapshot":true,"bids":[[10,1]],"asks":[[11,1]]}]),
        )
        .await;
        wait_book_seq(&srv, "CKP", 1).await;
        let mut c = srv.connect().await;
        c.subscribe(json!({"op":"subscribe","channels":["book:CKP"]}))
            .await;
        c.event().await;
        // A changing book for a second, one update every 50 ms.
        let mut resets = 0;
        for i in 0..20 {
            post_books(&srv, json!([{"symbol":"CKP","bids":[[10, i + 2]]}])).await;
            let e = c.event_of("book").await;
            resets += usize::from(e["reset"] == true);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            resets > 0,
            want_resets,
            "checkpoint_ms {checkpoint_ms}: {resets} resets"
        );
    }
}
