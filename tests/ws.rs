//! The WebSocket half of the contract, end to end.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::util::{self, Got};

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_acks_snapshots_then_streams_contiguous_seq() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 5, 100.0).await;
    srv.wait_seq("AAPL", 5).await;

    let mut c = srv.connect().await;
    let mut ack = c
        .subscribe(json!({"op":"subscribe","id":1,"channels":["ticks:AAPL"]}))
        .await;
    // Extension: the server run's epoch, for resume across restarts.
    assert!(ack["epoch"].as_i64().is_some_and(|e| e > 0), "{ack}");
    ack.as_object_mut().unwrap().remove("epoch");
    assert_eq!(
        ack,
        json!({"type":"ack","id":1,"op":"subscribe","channels":["ticks:AAPL"]})
    );
    let snap = c.event().await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["ch"], "ticks:AAPL");
    assert_eq!(seq(&snap), 5);
    // snapshot_depth is 3 in tests: the newest three, oldest first.
    let data: Vec<u64> = snap["data"].as_array().unwrap().iter().map(seq).collect();
    assert_eq!(data, vec![3, 4, 5]);
    assert_eq!(snap["data"][2]["price"], 105.0);

    srv.ingest_n("AAPL", 20, 200.0).await;
    for want in 6..=25 {
        let e = c.event().await;
        assert_eq!(
            (e["type"].as_str(), e["ch"].as_str(), seq(&e)),
            (Some("tick"), Some("ticks:AAPL"), want)
        );
        assert!(
            e["ts"].as_i64().unwrap() > 1_600_000_000_000_000_000,
            "ts is ns since epoch: {e}"
        );
        assert!(e["price"].is_number() && e["size"].is_number() && e["side"] == "buy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_exactly_the_missed_events() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("MSFT", 10, 0.0).await;
    srv.wait_seq("MSFT", 10).await;

    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:MSFT"],"from":{"ticks:MSFT":7}}))
        .await;
    // No snapshot: 8, 9, 10 are replayed as ordinary ticks, then live ones follow.
    for want in 8..=10 {
        let e = c.event().await;
        assert_eq!((e["type"].as_str(), seq(&e)), (Some("tick"), want), "{e}");
        assert_eq!(e["price"], want as f64);
    }
    srv.ingest_n("MSFT", 1, 100.0).await;
    assert_eq!(seq(&c.event().await), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_another_server_run_gets_a_reset_snapshot() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("MSFT", 10, 0.0).await;
    srv.wait_seq("MSFT", 10).await;
    let mut c = srv.connect().await;
    let ack = c
        .subscribe(json!({"op":"subscribe","channels":["ticks:MSFT"],"from":{"ticks:MSFT":7}}))
        .await;
    let epoch = ack["epoch"].as_i64().unwrap();
    assert_eq!(
        seq(&c.event().await),
        8,
        "same epoch (and none given): replay"
    );
    // The seqs a client kept from an earlier run mean nothing now, even where they are held.
    let mut d = srv.connect().await;
    d.subscribe(json!({"op":"subscribe","channels":["ticks:MSFT"],"from":{"ticks:MSFT":7},"epoch":epoch - 1})).await;
    let snap = d.event().await;
    assert_eq!(
        (snap["type"].as_str(), snap["reset"].as_bool(), seq(&snap)),
        (Some("snapshot"), Some(true), 10),
        "{snap}"
    );
    let mut e = srv.connect().await;
    e.subscribe(
        json!({"op":"subscribe","channels":["ticks:MSFT"],"from":{"ticks:MSFT":7},"epoch":epoch}),
    )
    .await;
    assert_eq!(seq(&e.event().await), 8, "matching epoch: replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_older_than_the_ring_gets_a_reset_snapshot() {
    let srv = util::start(util::config()).await;
    // Ring capacity is 16 in tests: after 40 ticks, seq 24 is the oldest held.
    srv.ingest_n("MSFT", 40, 0.0).await;
    srv.wait_seq("MSFT", 40).await;
    // Ahead of the ring, up to the largest `from` there is, is a reset too.
    for from in [3, 99, u64::MAX] {
        let mut c = srv.connect().await;
        c.subscribe(json!({"op":"subscribe","channels":["ticks:MSFT"],"from":{"ticks:MSFT":from}}))
            .await;
        let snap = c.event().await;
        assert_eq!(
            (snap["type"].as_str(), snap["reset"].as_bool(), seq(&snap)),
            (Some("snapshot"), Some(true), 40),
            "from {from}: {snap}"
        );
    }
    // The edge: from = oldest held - 1 is still a replay.
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:MSFT"],"from":{"ticks:MSFT":24}}))
        .await;
    assert_eq!(seq(&c.event().await), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_snapshots_every_symbol_and_names_concrete_channels() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAA", 2, 0.0).await;
    srv.ingest_n("BBB", 1, 0.0).await;
    srv.wait_seq("BBB", 1).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","id":9,"channels":["ticks:*"]}))
        .await;
    let mut snaps = [c.event().await, c.event().await];
    snaps.sort_by_key(|s| s["ch"].as_str().unwrap().to_owned());
    assert_eq!(snaps[0]["ch"], "ticks:AAA");
    assert_eq!(seq(&snaps[0]), 2);
    assert_eq!(snaps[1]["ch"], "ticks:BBB");
    // A symbol that appears later is covered too, from seq 1.
    srv.ingest_n("CCC", 1, 0.0).await;
    let e = c.event().await;
    assert_eq!((e["ch"].as_str(), seq(&e)), (Some("ticks:CCC"), 1));
    srv.ingest_n("AAA", 1, 0.0).await;
    let e = c.event().await;
    assert_eq!((e["ch"].as_str(), seq(&e)), (Some("ticks:AAA"), 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_a_held_channel_is_acked_without_a_snapshot_unless_asked() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 5, 0.0).await;
    srv.wait_seq("AAPL", 5).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
        .await;
    assert_eq!(seq(&c.event_of("snapshot").await), 5);
    // Held already (through the wildcard, and the wildcard itself): an ack and nothing else.
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL","ticks:*"]}))
        .await;
    assert!(c.silent_for(Duration::from_millis(300)).await);
    // Naming `snapshot` asks for a fresh one.
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"],"snapshot":2}))
        .await;
    let snap = c.event().await;
    assert_eq!((snap["type"].as_str(), seq(&snap)), (Some("snapshot"), 5));
    assert_eq!(snap["data"].as_array().map(Vec::len), Some(2));
    // Live events still arrive once each.
    srv.ingest_n("AAPL", 1, 0.0).await;
    assert_eq!(seq(&c.event_of("tick").await), 6);
    assert!(c.silent_for(Duration::from_millis(300)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_events() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"]}))
        .await;
    c.event_of("snapshot").await;
    let mut ack = c
        .subscribe(json!({"op":"unsubscribe","id":2,"channels":["ticks:AAPL"]}))
        .await;
    ack.as_object_mut().unwrap().remove("epoch");
    assert_eq!(
        ack,
        json!({"type":"ack","id":2,"op":"unsubscribe","channels":["ticks:AAPL"]})
    );
    srv.ingest_n("AAPL", 3, 0.0).await;
    srv.wait_seq("AAPL", 4).await;
    assert!(c.silent_for(Duration::from_millis(300)).await);
    // Unsubscribing again says so.
    c.send(json!({"op":"unsubscribe","id":3,"channels":["ticks:AAPL"]}))
        .await;
    let e = c.event().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_i64()),
        (Some("error"), Some("not_subscribed"), Some(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_conflates_to_the_newest_event() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"],"throttle_ms":400}))
        .await;
    c.event_of("snapshot").await;
    // 30 ticks in one request arrive well inside one throttle window.
    srv.ingest_n("AAPL", 30, 0.0).await;
    srv.wait_seq("AAPL", 31).await;
    let mut seen = Vec::new();
    while let Some(Got::Event(e)) = c.next_within(Duration::from_millis(1200)).await {
        seen.push(seq(&e));
    }
    assert!(
        !seen.is_empty() && seen.len() <= 4,
        "throttled to a few events, got {seen:?}"
    );
    assert_eq!(seen.last(), Some(&31), "the newest event wins: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_specific_errors_and_the_connection_lives() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    let mut c = srv.connect().await;
    let cases: &[(&str, &str)] = &[
        ("{not json", "bad_request"),
        (r#"{"op":"dance","id":1}"#, "bad_request"),
        (
            r#"{"op":"subscribe","id":2,"channels":["ticks:AAPLX"]}"#,
            "unknown_channel",
        ),
        (
            r#"{"op":"subscribe","id":3,"channels":["trades:AAPL"]}"#,
            "unknown_channel",
        ),
        (
            r#"{"op":"subscribe","id":4,"channels":["ticks:aapl"]}"#,
            "bad_request",
        ),
        (r#"{"op":"subscribe","id":5,"channels":[]}"#, "bad_request"),
        (
            r#"{"op":"subscribe","id":6,"channels":["ticks:AAPL"],"throttle_ms":99999999}"#,
            "bad_request",
        ),
        (
            r#"{"op":"subscribe","id":7,"channels":["ticks:AAPL"],"from":{"bars.1s:AAPL":1}}"#,
            "bad_request",
        ),
    ];
    for (text, code) in cases {
        c.send_text(text).await;
        let e = c.event().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(*code)),
            "{text} -> {e}"
        );
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The unknown symbol error names it.
    c.send_text(r#"{"op":"subscribe","id":8,"channels":["ticks:NOPE"]}"#)
        .await;
    let e = c.event().await;
    assert_eq!(e["id"], 8);
    assert!(e["message"].as_str().unwrap().contains("NOPE"), "{e}");
    // Still alive: ping and list work.
    c.send(json!({"op":"ping","id":10})).await;
    let pong = c.event().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(10))
    );
    assert!(pong["ts"].as_i64().unwrap() > 0);
    c.send(json!({"op":"list","id":11})).await;
    let list = c.event().await;
    assert_eq!(list["symbols"], json!(["AAPL"]));
    assert_eq!(
        list["kinds"],
        json!([
            "ticks",
            "bars.1s",
            "bars.1m",
            "bars.5m",
            "bars.15m",
            "bars.1h",
            "bars.4h",
            "bars.1d",
            "indicators",
            "book",
            "ticker",
            "bbo",
            "predictions"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_subscribe_acks_the_valid_channels() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    let mut c = srv.connect().await;
    c.send(json!({"op":"subscribe","id":1,"channels":["ticks:AAPL","ticks:AAPLX"]}))
        .await;
    let err = c.event().await;
    assert_eq!(
        (
            err["type"].as_str(),
            err["code"].as_str(),
            err["id"].as_i64()
        ),
        (Some("error"), Some("unknown_channel"), Some(1))
    );
    let ack = c.event().await;
    assert_eq!(ack["channels"], json!(["ticks:AAPL"]));
    assert_eq!(c.event().await["type"], "snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_cap_is_enforced() {
    let mut cfg = util::config();
    cfg.ws.max_subscriptions = 2;
    let srv = util::start(cfg).await;
    srv.ingest(json!([
        {"symbol":"A","price":1,"size":1,"side":"buy"},
        {"symbol":"B","price":1,"size":1,"side":"buy"},
        {"symbol":"C","price":1,"size":1,"side":"sell"}
    ]))
    .await;
    srv.wait_seq("C", 1).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:A","ticks:B"]}))
        .await;
    c.event_of("snapshot").await;
    c.event_of("snapshot").await;
    c.send(json!({"op":"subscribe","id":5,"channels":["ticks:C"]}))
        .await;
    let e = c.event().await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("too_many_subscriptions"), Some(5)),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_with_1009() {
    let mut cfg = util::config();
    cfg.ws.max_frame_bytes = 1024;
    let srv = util::start(cfg).await;
    let mut c = srv.connect().await;
    let big = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(4096));
    c.send_text(&big).await;
    assert_eq!(c.closed().await, Some(CloseCode::Size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_flood_is_rate_limited_then_closed_with_1008() {
    let mut cfg = util::config();
    cfg.ws.ops_per_second = 1;
    cfg.ws.ops_burst = 2;
    cfg.ws.abuse_threshold = 5;
    let srv = util::start(cfg).await;
    let mut c = srv.connect().await;
    for i in 0..20 {
        c.send(json!({"op":"ping","id":i})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    let code = loop {
        match c.next().await {
            Got::Event(e) if e["type"] == "pong" => pongs += 1,
            Got::Event(e) => {
                assert_eq!(e["code"], "rate_limited", "{e}");
                limited += 1;
            }
            Got::Closed(code, _) => break code,
        }
    };
    assert_eq!(pongs, 2, "the burst is served");
    assert_eq!(limited, 4, "then errors until the abuse threshold");
    assert_eq!(code, Some(CloseCode::Policy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_are_refused_politely() {
    let srv = util::start(util::config()).await;
    let mut c = srv.connect().await;
    c.send_raw(Message::binary(vec![1, 2, 3])).await;
    let e = c.event().await;
    assert_eq!(e["code"], "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_with_503() {
    let mut cfg = util::config();
    cfg.ws.max_connections = 1;
    let srv = util::start(cfg).await;
    let _first = srv.connect().await;
    let err = tokio_tungstenite::connect_async(srv.url())
        .await
        .expect_err("second is refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 503),
        other => panic!("expected HTTP 503, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_closed_after_the_pong_timeout() {
    let mut cfg = util::config();
    cfg.ws.ping_interval_ms = 100;
    cfg.ws.pong_timeout_ms = 400;
    let srv = util::start(cfg).await;
    let mut c = srv.connect().await;
    // Not reading means not answering the server's pings.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(c.closed().await, Some(CloseCode::Policy));
    // A peer that does read (and so answers pings) stays.
    let mut d = srv.connect().await;
    assert!(d.silent_for(Duration::from_millis(1000)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_1013_and_does_not_delay_others() {
    let mut cfg = util::slow::slow_consumer_config();
    // The fast client shares a loaded machine with the server and may fall behind for a
    // moment: a queue of about 2.7 s of the feed (with 256 events, 85 ms of lag conflated its
    // ticks, a gap) and 2 s before a stalled write counts as slow. The stalled client, whose
    // socket buffers fill at once, is still closed within seconds.
    cfg.ws.outbox_max_events = 8_192;
    cfg.ws.outbox_max_bytes = 4 << 20;
    cfg.ws.slow_consumer_timeout_ms = 2_000;
    cfg.ws.close_grace_ms = 20_000;
    cfg.ws.ping_interval_ms = 60_000;
    cfg.ws.pong_timeout_ms = 120_000;
    let srv = util::start(cfg).await;
    let rss_before = util::rss_kib();
    let metrics = srv.server().metrics().clone();
    let closed = || {
        metrics
            .slow_consumers_closed
            .load(std::sync::atomic::Ordering::Relaxed)
    };

    // The slow client's kernel receive buffer is small too, so its stall reaches the server
    // within a fraction of a second.
    let mut slow = util::Client::connect_with_recv_buffer(&srv.url(), srv.addr, 4096).await;
    slow.subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
        .await;
    let mut fast = srv.connect().await;
    fast.subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
        .await;

    // The fast client reads, while the slow one reads nothing, until the slow one was closed
    // and the fast one has had thousands of ticks (a count, not a time window: the feed's
    // 3,000/s is wall-clock, the reading is not).
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    let mut received = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received < 3_000 || closed() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 60 s: {received} ticks, {} closed",
            closed()
        );
        let e = fast.event().await;
        let ch = e["ch"].as_str().unwrap().to_owned();
        let s = seq(&e);
        if e["type"] == "tick" {
            if let Some(prev) = last.get(&ch) {
                assert_eq!(s, prev + 1, "fast client saw a gap on {ch}");
            }
            received += 1;
        }
        last.insert(ch, s);
    }
    // The fast client got every tick, in order, while the slow one stalled; only the slow one
    // was closed.
    assert_eq!(closed(), 1);
    // The slow client finally reads: a backlog, then the 1013 close.
    assert_eq!(slow.closed().await, Some(CloseCode::Again));
    // Memory stayed bounded (the slow queue is capped at 8,192 events).
    let grown = util::rss_kib().saturating_sub(rss_before);
    assert!(grown < 200 * 1024, "RSS grew by {grown} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_websocket_requests_and_unknown_versions_get_problems() {
    let srv = util::start(util::config()).await;
    // A plain GET on /ws is not an upgrade.
    let (status, headers, body) = util::http(srv.addr, "GET", "/ws", &[], b"").await;
    assert_eq!(status, 426);
    assert_eq!(
        util::header(&headers, "content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "websocket_required");
    // Only v=1 of the contract exists.
    let url = format!("ws://{}/ws?v=2", srv.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 400),
        other => panic!("expected HTTP 400, got {other:?}"),
    }
    let ok = format!("ws://{}/ws?v=1", srv.addr);
    assert!(tokio_tungstenite::connect_async(ok).await.is_ok());
}
