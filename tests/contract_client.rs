//! What a client author had to guess (issue 23), each answered the way docs/PROTOCOL.md now
//! says: one clock and one identity for a tick in REST and on the socket, a slow consumer's
//! 1013 after its backlog, and the op rules the document left open.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::auth::{SECRET, now_s, token};
use crate::util::{self, Client};

/// The replies to one op: everything up to and including the `pong` of a `ping` sent after it.
async fn replies(c: &mut Client, op: Value) -> Vec<Value> {
    c.send(op).await;
    c.send(json!({"op":"ping","id":999})).await;
    let mut out = Vec::new();
    loop {
        let m = c.event().await;
        let done = m["type"] == "pong" && m["id"] == 999;
        out.push(m);
        if done {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_history_and_live_ticks_merge_by_the_same_clock_and_identity() {
    let srv = util::start(util::config()).await;
    let mut c = srv.connect().await;
    srv.ingest_n("CLK", 1, 0.0).await; // the symbol exists before the subscribe
    srv.wait_seq("CLK", 1).await;
    let ack = c
        .subscribe(json!({"op":"subscribe","channels":["ticks:CLK"]}))
        .await;
    c.event_of("snapshot").await;
    let xts: i64 = 1_764_070_000_120_000_000;
    let (status, body) = srv
        .ingest(
            json!([{"symbol":"CLK","price":10.25,"size":12,"side":"buy","ts":xts},
                       {"symbol":"CLK","price":10.5,"size":0.5,"side":"sell","ts":xts + 1}]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let live = [c.event_of("tick").await, c.event_of("tick").await];
    srv.wait_persisted(3).await;
    let (status, _, page) = srv.get("/api/v1/ticks/CLK?from=0", None).await;
    assert_eq!(status, 200, "{page}");
    let stored: Vec<&Value> = page["ticks"]
        .as_array()
        .expect("ticks")
        .iter()
        .filter(|t| live.iter().any(|l| l["seq"] == t["seq"]))
        .collect();
    assert_eq!(stored.len(), 2, "{page}");
    for (s, l) in stored.iter().zip(&live) {
        // Same clock under the same name: `xts` exchange time; the socket's `ts` is REST's
        // `ingest_ts`; v1's REST `ts` stays the exchange time.
        assert_eq!(s["xts"], l["xts"], "{s} vs {l}");
        assert_eq!(s["ts"], l["xts"]);
        assert_eq!(s["ingest_ts"], l["ts"]);
        // Same identity: (epoch, seq), the ack's epoch.
        assert_eq!((&s["epoch"], &s["seq"]), (&ack["epoch"], &l["seq"]));
        // Same numbers, written the same way: a whole size is an integer in both.
        assert_eq!(s["size"].to_string(), l["size"].to_string());
        assert_eq!(s["price"], l["price"]);
    }
    assert_eq!(stored[0]["size"].to_string(), "12");
    assert_eq!(stored[1]["size"].to_string(), "0.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_that_reads_again_gets_its_backlog_then_1013() {
    let mut cfg = util::slow::slow_consumer_config();
    cfg.ws.slow_consumer_timeout_ms = 300;
    // The documented default linger: a client that reads again within it sees the close.
    cfg.ws.close_grace_ms = 5_000;
    let srv = util::start(cfg).await;
    for stall_ms in [1_000, 3_000] {
        let mut slow = Client::connect_with_recv_buffer(&srv.url(), srv.addr, 4096).await;
        slow.subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
            .await;
        tokio::time::sleep(Duration::from_millis(stall_ms)).await;
        // It reads again: whole frames (each a JSON event or array), then the close frame.
        let mut frames = 0;
        let code = loop {
            match slow.next_within(Duration::from_secs(10)).await {
                Some(util::Got::Event(_)) => frames += 1,
                Some(util::Got::Closed(code, reason)) => break (code, reason),
                None => panic!("neither an event nor a close within 10 s"),
            }
        };
        assert_eq!(
            code,
            (Some(CloseCode::Again), "slow consumer".to_owned()),
            "stalled {stall_ms} ms, then {frames} events"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_op_rules_a_client_had_to_guess() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAA", 2, 0.0).await;
    srv.ingest_n("BBB", 2, 0.0).await;
    srv.wait_seq("BBB", 2).await;
    let mut c = srv.connect().await;

    // A misspelt field is named in the ack (`ignored`), never silently dropped.
    let r = replies(
        &mut c,
        json!({"op":"subscribe","id":1,"channels":["ticks:AAA"],"throttle":250}),
    )
    .await;
    assert_eq!(r[0]["type"], "ack", "{r:?}");
    assert_eq!(r[0]["ignored"], json!(["throttle"]));
    // An ack without ignored fields has no `ignored` key (v1's shape).
    let r = replies(
        &mut c,
        json!({"op":"subscribe","id":2,"channels":["ticks:BBB"]}),
    )
    .await;
    assert!(r[0].get("ignored").is_none(), "{r:?}");

    // Re-subscribing without `throttle_ms` removes a throttle: every tick arrives, in order.
    replies(
        &mut c,
        json!({"op":"subscribe","id":3,"channels":["ticks:AAA"],"throttle_ms":60000}),
    )
    .await;
    replies(
        &mut c,
        json!({"op":"subscribe","id":4,"channels":["ticks:AAA"]}),
    )
    .await;
    srv.ingest_n("AAA", 3, 10.0).await;
    for want in 3..=5u64 {
        let t = c.event_of("tick").await;
        assert_eq!(
            (t["ch"].as_str(), t["seq"].as_u64()),
            (Some("ticks:AAA"), Some(want))
        );
    }

    // `id`: a signed 64-bit integer, echoed; anything else is a bad_request without an id.
    let r = replies(&mut c, json!({"op":"list","id":i64::MIN})).await;
    assert_eq!(r[0]["id"], i64::MIN);
    for bad in [
        r#"{"op":"list","id":9223372036854775808}"#,
        r#"{"op":"list","id":1.5}"#,
        r#"{"op":"list","id":"7"}"#,
    ] {
        c.send_text(bad).await;
        let e = c.event().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{bad}"
        );
        assert!(e.get("id").is_none(), "{e}");
    }

    // `depth` is checked on every subscribe (1..=book.depth); other channels ignore a valid one.
    let r = replies(
        &mut c,
        json!({"op":"subscribe","id":5,"channels":["ticks:BBB"],"depth":99}),
    )
    .await;
    assert_eq!(r[0]["code"], "bad_request", "{r:?}");
    let r = replies(
        &mut c,
        json!({"op":"subscribe","id":6,"channels":["ticks:BBB"],"depth":1}),
    )
    .await;
    assert_eq!(r[0]["type"], "ack", "{r:?}");

    // `from` past the channel's latest seq: a reset snapshot of the latest.
    let r = replies(
        &mut c,
        json!({"op":"subscribe","id":7,"channels":["ticks:BBB"],"from":{"ticks:BBB": 1000}}),
    )
    .await;
    assert_eq!(
        (
            r[1]["type"].as_str(),
            r[1]["reset"].as_bool(),
            r[1]["seq"].as_u64()
        ),
        (Some("snapshot"), Some(true), Some(2)),
        "{r:?}"
    );

    // A concrete channel under a wildcard: the wildcard keeps delivering it. Unsubscribing the
    // concrete one removes only that subscription (`not_subscribed` when only the wildcard
    // holds it).
    let mut w = srv.connect().await;
    w.subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
        .await;
    let r = replies(
        &mut w,
        json!({"op":"unsubscribe","id":8,"channels":["ticks:AAA"]}),
    )
    .await;
    let first = r.iter().find(|m| m["id"] == 8).expect("a reply");
    assert_eq!(first["code"], "not_subscribed", "{r:?}");
    srv.ingest_n("AAA", 1, 20.0).await;
    let t = w.event_of("tick").await;
    assert_eq!(t["ch"], "ticks:AAA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_time_offsets_and_book_404s_are_as_documented() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("NOB", 1, 0.0).await;
    srv.wait_seq("NOB", 1).await;
    // A `+` in a query string is a space: the offset must be sent as %2B.
    let (status, _, body) = srv
        .get("/api/v1/ticks/NOB?from=2026-01-01T00:00:00+01:00", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_time")),
        "{body}"
    );
    let (status, _, body) = srv
        .get("/api/v1/ticks/NOB?from=2026-01-01T00:00:00%2B01:00", None)
        .await;
    assert_eq!(status, 200, "{body}");
    // The book of a symbol nobody knows, and of a known symbol without a book.
    let (status, _, body) = srv.get("/api/v1/book/NOSUCH", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown_symbol")),
        "{body}"
    );
    let (status, _, body) = srv.get("/api/v1/book/NOB", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_takes_any_valid_token_of_the_same_user_and_its_ack_names_no_channels() {
    let mut cfg = util::config();
    cfg.auth.jwt_hs256_secret = Some(SECRET.into());
    let srv = util::start(cfg).await;
    srv.ingest_n("AUT", 1, 0.0).await;
    srv.wait_seq("AUT", 1).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AUT"]}))
        .await;
    let later = now_s() + 600;
    let sooner = now_s() + 300;
    for (id, exp) in [(1, later), (2, sooner)] {
        let r = replies(
            &mut c,
            json!({"op":"auth","id":id,"token":token(json!({"sub":"alice","exp":exp}))}),
        )
        .await;
        let ack = r.iter().find(|m| m["id"] == id).expect("a reply");
        // An older token (an earlier `exp`) is taken too: the connection now ends at its exp.
        assert_eq!(
            (ack["type"].as_str(), ack["exp"].as_u64()),
            (Some("ack"), Some(exp)),
            "{r:?}"
        );
        // `channels` is always empty: auth subscribes nothing (the subscriptions stay).
        assert_eq!(ack["channels"], json!([]));
    }
}
