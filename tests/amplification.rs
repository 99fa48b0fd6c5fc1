//! Hostile clients: the snapshot-amplification op from many sockets that then stop reading.
//! What the server holds for them is bounded by the config, they are closed with 1013, and a
//! fast client meanwhile receives every event in order.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::util;

const SYMBOLS: usize = 50;
const ATTACKERS: usize = 60;

fn symbol(i: usize) -> String {
    format!("S{i:03}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_amplification_is_bounded_and_the_attackers_are_closed_1013() {
    let mut cfg = util::config();
    cfg.ring.capacity = 1024;
    cfg.ws.snapshot_max_bytes = 256 * 1024;
    cfg.ws.socket_send_buffer_bytes = 16 * 1024;
    cfg.ws.slow_consumer_timeout_ms = 1000;
    // The 1013 close frame waits behind the unread backlog until the attacker finally reads.
    cfg.ws.close_grace_ms = 30_000;
    cfg.ws.ping_interval_ms = 60_000;
    cfg.ws.pong_timeout_ms = 120_000;
    cfg.feeds.http.max_records = 2048;
    let per_conn = 2 * cfg.ws.snapshot_max_bytes
        + cfg.ws.outbox_max_bytes
        + 2 * cfg.ws.batch_max_bytes
        + cfg.ws.read_buffer_bytes;
    let srv = util::start(cfg).await;

    // Fill every symbol's ticks ring (1,024 events of ~170 bytes: ~8.5 MB of ticks in all).
    for i in 0..SYMBOLS {
        srv.ingest_n(&symbol(i), 1024, 100.0).await;
    }
    for i in 0..SYMBOLS {
        srv.wait_seq(&symbol(i), 1024).await;
    }
    let rss_before = util::rss_kib();

    // Each attacker asks for 1,024 events of every channel: ~8.5 MB each before this fix.
    let op = json!({"op":"subscribe","channels":["ticks:*","bars.1s:*","bars.1m:*","indicators:*"],
        "snapshot":1024});
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let mut c = util::Client::connect_with_recv_buffer(&srv.url(), srv.addr, 4096).await;
        c.send(op.clone()).await;
        attackers.push(c);
    }
    let mut fast = srv.connect().await;
    fast.subscribe(json!({"op":"subscribe","channels":["ticks:*"],"snapshot":0}))
        .await;

    // Live ticks while the attackers read nothing; the fast client must see each one in order.
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut received = 0;
    let mut rss_peak = util::rss_kib();
    let metrics = srv.server().metrics().clone();
    let evicted = || metrics.slow_consumers_closed.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + util::WAIT * 3;
    let mut round = 0;
    while evicted() < ATTACKERS as u64 || round < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {ATTACKERS} attackers were closed",
            evicted()
        );
        let batch: Vec<Value> = (0..SYMBOLS)
            .map(|i| json!({"symbol": symbol(i), "price": 200.0 + round as f64, "size": 1, "side": "sell"}))
            .collect();
        let (status, body) = srv.ingest(Value::Array(batch)).await;
        assert_eq!(status, 202, "{body}");
        round += 1;
        for _ in 0..SYMBOLS {
            let e = fast.event_of("tick").await;
            let ch = e["ch"].as_str().unwrap_or_default().to_owned();
            let seq = e["seq"].as_u64().unwrap_or_default();
            if let Some(prev) = last.insert(ch.clone(), seq) {
                assert_eq!(seq, prev + 1, "the fast client saw a gap on {ch}");
            }
            received += 1;
        }
        rss_peak = rss_peak.max(util::rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received, round * SYMBOLS);

    // What the server may hold for the attackers: per connection, the held budget twice (queued
    // and being written), the event bound, two frames and the read buffer; plus 48 MiB for
    // the test's own clients and allocator slack.
    let bound_kib = (ATTACKERS * per_conn / 1024 + 48 * 1024) as u64;
    let grown = rss_peak.saturating_sub(rss_before);
    eprintln!(
        "rss before {rss_before} KiB, peak {rss_peak} KiB, grown {grown} KiB, bound {bound_kib} KiB"
    );
    assert!(
        grown < bound_kib,
        "RSS grew by {grown} KiB under the attack; the bound is {bound_kib} KiB"
    );

    // The attackers finally read: what was in flight, then the 1013 close.
    for mut c in attackers {
        assert_eq!(c.closed().await, Some(CloseCode::Again));
    }
    assert_eq!(evicted(), ATTACKERS as u64);
}
