//! `bbo:` channels end to end (docs/PROTOCOL.md "Best bid and offer"): one event per change of
//! a book's touch (not per book event), snapshot, resume, wildcard, throttle conflation and the
//! MessagePack form.

use serde_json::{Value, json};

use crate::util::{self, Client, TestServer};

async fn post_ok(srv: &TestServer, updates: Value) {
    let (status, body) = srv.ingest_at("/api/v1/ingest/book", updates).await;
    assert_eq!(status, 202, "{body}");
}

fn bbo(e: &Value) -> (Value, Value, Value, Value) {
    (
        e["bid"].clone(),
        e["bid_size"].clone(),
        e["ask"].clone(),
        e["ask_size"].clone(),
    )
}

async fn next_bbo(c: &mut Client) -> Value {
    c.event_of("bbo").await
}

#[tokio::test]
async fn bbo_follows_the_touch_with_snapshot_resume_and_wildcards() {
    let srv = util::start(util::config()).await;
    let mut live = srv.connect().await;
    live.subscribe(json!({"op":"subscribe","id":1,"channels":["bbo:*"]}))
        .await;
    let mut packed = Client::connect_msgpack(&srv.url()).await;
    packed
        .subscribe(json!({"op":"subscribe","id":1,"channels":["bbo:*"]}))
        .await;

    post_ok(
        &srv,
        json!([{"symbol":"BBA","snapshot":true,"bids":[[100.0,10],[99.5,11]],"asks":[[100.5,20],[101,3]]}]),
    )
    .await;
    let first = next_bbo(&mut live).await;
    assert_eq!(
        (first["ch"].clone(), first["seq"].clone()),
        (json!("bbo:BBA"), json!(1))
    );
    assert_eq!(
        bbo(&first),
        (json!(100.0), json!(10), json!(100.5), json!(20))
    );
    // The MessagePack form carries the same fields.
    let p = next_bbo(&mut packed).await;
    assert_eq!((p["seq"].clone(), bbo(&p)), (json!(1), bbo(&first)));

    // A change below the touch is a book event but no bbo event: the next one is seq 2.
    post_ok(&srv, json!([{"symbol":"BBA","bids":[[99.5,5]]}])).await;
    post_ok(&srv, json!([{"symbol":"BBA","bids":[[100.0,0]]}])).await;
    let second = next_bbo(&mut live).await;
    assert_eq!(second["seq"], 2, "{second}");
    assert_eq!(
        bbo(&second),
        (json!(99.5), json!(5), json!(100.5), json!(20))
    );
    // An emptied side is null.
    post_ok(&srv, json!([{"symbol":"BBA","asks":[[100.5,0],[101,0]]}])).await;
    let third = next_bbo(&mut live).await;
    assert_eq!(third["seq"], 3);
    assert_eq!(
        bbo(&third),
        (json!(99.5), json!(5), Value::Null, Value::Null)
    );

    // Snapshot: the latest bbo only.
    let mut fresh = srv.connect().await;
    fresh
        .subscribe(json!({"op":"subscribe","channels":["bbo:BBA"]}))
        .await;
    let snap = fresh.event_of("snapshot").await;
    assert_eq!(snap["seq"], 3);
    assert_eq!(snap["data"], json!([third.clone()]));
    // Resume from 1: 2 and 3 replayed.
    let mut resumed = srv.connect().await;
    resumed
        .subscribe(json!({"op":"subscribe","channels":["bbo:BBA"],"from":{"bbo:BBA":1}}))
        .await;
    assert_eq!(resumed.event().await, second);
    assert_eq!(resumed.event().await, third);
}

#[tokio::test]
async fn a_throttled_bbo_conflates_to_the_latest_touch() {
    let srv = util::start(util::config()).await;
    post_ok(
        &srv,
        json!([{"symbol":"BBT","snapshot":true,"bids":[[50.0,1]],"asks":[[51.0,1]]}]),
    )
    .await;
    // Ingest publishes after the 202: wait for the first bbo.
    let hub = srv.server().hub().clone();
    let symbols = srv.server().symbols().clone();
    util::wait_until("the first bbo", util::WAIT, async || {
        symbols.get("BBT").is_some_and(|symbol| {
            hub.last_seq(tickcast::model::ChannelId {
                kind: tickcast::model::Kind::Bbo,
                symbol,
            }) == 1
        })
    })
    .await;
    let mut slow = srv.connect().await;
    slow.subscribe(json!({"op":"subscribe","channels":["bbo:BBT"],"throttle_ms":500}))
        .await;
    let snap = slow.event_of("snapshot").await;
    assert_eq!(snap["seq"], 1);
    // 40 touch changes in one go: the bid size goes 2, 3, ..., 41.
    let updates: Vec<Value> = (2..=41)
        .map(|n| json!({"symbol":"BBT","bids":[[50.0, n]]}))
        .collect();
    post_ok(&srv, Value::Array(updates)).await;
    let mut got = Vec::new();
    loop {
        let e = next_bbo(&mut slow).await;
        let seq = e["seq"].as_u64().unwrap();
        got.push(seq);
        if seq == 41 {
            assert_eq!(bbo(&e), (json!(50.0), json!(41), json!(51.0), json!(1)));
            break;
        }
    }
    assert!(got.len() < 40, "conflated: {got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
}
