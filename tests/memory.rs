//! What the rings hold, as `/metrics` tells an operator (docs/OPERATIONS.md "Sizing"): the
//! `tickcast_ring_events` and `tickcast_ring_bytes` gauges grow while the rings fill and stop
//! when they are full; `tickcast_msgpack_made_bytes` counts the MessagePack forms made on demand.

use std::time::Duration;

use serde_json::json;

use crate::util::{self, Client, TestServer};

const CAPACITY: usize = 8;

/// The value of an unlabelled metric, if `/metrics` has it.
async fn gauge(srv: &TestServer, name: &str) -> Option<u64> {
    let (status, _, body) = util::http(srv.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("utf-8");
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().expect("an integer gauge"))
}

/// Waits until `tickcast_ring_events` is `events`; returns `tickcast_ring_bytes` then.
async fn rings_hold(srv: &TestServer, events: u64) -> u64 {
    util::wait_until("ring events", util::WAIT, async || {
        gauge(srv, "tickcast_ring_events").await == Some(events)
    })
    .await;
    gauge(srv, "tickcast_ring_bytes").await.expect("gauge")
}

#[tokio::test]
async fn ring_gauges_grow_while_rings_fill_and_plateau_when_full() {
    let mut c = util::config();
    c.ring.capacity = CAPACITY;
    // Ticks only: the pipeline's bars and indicators would fill rings of their own.
    c.pipeline.enabled = false;
    let srv = util::start(c).await;
    assert_eq!(
        rings_hold(&srv, 0).await,
        0,
        "no ring before the first event"
    );

    srv.ingest_n("AAPL", 3, 100.0).await;
    let three = rings_hold(&srv, 3).await;
    assert!(three > 0);
    srv.ingest_n("AAPL", 5, 200.0).await;
    let full = rings_hold(&srv, CAPACITY as u64).await;
    // Five more events, at least their JSON each (a tick's is over 100 bytes).
    assert!(full >= three + 5 * 100, "{three} -> {full}");

    // Full: every new event evicts one of the same size, give or take a price's digits.
    srv.ingest_n("AAPL", 40, 300.0).await;
    srv.wait_seq("AAPL", 48).await;
    let after = rings_hold(&srv, CAPACITY as u64).await;
    assert!(
        after.abs_diff(full) < 64,
        "a full ring kept growing: {full} -> {after}"
    );

    // A second symbol opens a ring of its own.
    srv.ingest_n("MSFT", 2, 1.0).await;
    let two = rings_hold(&srv, CAPACITY as u64 + 2).await;
    assert!(two > after);
}

#[tokio::test]
async fn msgpack_forms_are_made_when_a_connection_asks_and_counted() {
    let mut c = util::config();
    c.pipeline.enabled = false;
    let srv = util::start(c).await;
    srv.ingest_n("AAPL", 3, 100.0).await;
    srv.wait_seq("AAPL", 3).await;
    // JSON only so far: the gauge is there (process-wide, so other tests' forms may be in it).
    assert!(gauge(&srv, "tickcast_msgpack_made_bytes").await.is_some());

    let mut mp = Client::connect_msgpack(&srv.url()).await;
    mp.subscribe(json!({"op":"subscribe","id":1,"channels":["ticks:AAPL"],"snapshot":3}))
        .await;
    let snapshot = mp.event_of("snapshot").await;
    assert_eq!(
        snapshot["data"].as_array().map(Vec::len),
        Some(3),
        "{snapshot}"
    );
    assert_eq!(snapshot["data"][2]["seq"], 3);
    // The ring holds the three forms it made (a tick's MessagePack is over 40 bytes).
    util::wait_until("msgpack made", Duration::from_secs(10), async || {
        gauge(&srv, "tickcast_msgpack_made_bytes")
            .await
            .is_some_and(|b| b >= 3 * 40)
    })
    .await;
}
