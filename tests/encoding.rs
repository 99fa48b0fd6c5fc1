//! `?encoding=msgpack` end to end (docs/PROTOCOL.md "Encodings"): the same messages as JSON,
//! in binary MessagePack frames, at less than half the bytes.

use std::time::Duration;

use serde_json::{Value, json};
use tickcast::ingest::Derived;
use tickcast::model::{BarEvent, BarInterval, IndicatorValues, Kind};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{self, Client, Got, TestServer};

/// Every message until the connection has been quiet for a moment.
async fn until_quiet(c: &mut Client) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(got) = c.next_within(Duration::from_millis(400)).await {
        match got {
            Got::Event(v) => out.push(v),
            Got::Closed(code, reason) => panic!("closed ({code:?}, {reason})"),
        }
    }
    out
}

/// Sends the same ops on both connections.
async fn both(json: &mut Client, mp: &mut Client, op: Value) {
    json.send(op.clone()).await;
    mp.send(op).await;
}

fn derived(srv: &TestServer) -> Vec<Derived> {
    let aapl = srv.server().symbols().get("AAPL").expect("AAPL interned");
    let msft = srv.server().symbols().get("MSFT").expect("MSFT interned");
    let bar = BarEvent {
        start_ms: 1_764_070_000_000,
        open: 0.5,
        high: 0.75,
        low: 0.25,
        close: 0.5,
        volume: 2.5,
        trades: 2,
        is_final: true,
    };
    vec![
        // Throttled for the connection: the newest of the two arrives.
        Derived::Bar {
            kind: Kind::Bars(BarInterval::S1),
            symbol: msft,
            bar,
        },
        Derived::Bar {
            kind: Kind::Bars(BarInterval::S1),
            symbol: msft,
            bar: BarEvent { close: 0.75, ..bar },
        },
        Derived::Bar {
            kind: Kind::Bars(BarInterval::S1),
            symbol: aapl,
            bar: BarEvent {
                start_ms: 1_764_070_000_000,
                open: 189.5,
                high: 190.25,
                low: 189.125,
                close: 190.0,
                volume: 300.0,
                trades: 3,
                is_final: true,
            },
        },
        Derived::Indicators {
            symbol: aapl,
            values: IndicatorValues {
                periodic: vec![Some(189.75), None, Some(55.2), Some(0.012)],
                vwap: None,
                book: Default::default(),
                ..Default::default()
            },
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_and_json_connections_get_the_same_messages() {
    // Bars and indicators come from the test alone, so both connections see the same ones.
    let mut c = util::config();
    c.pipeline.enabled = false;
    let srv = util::start(c).await;
    srv.ingest_n("AAPL", 5, 100.0).await;
    srv.ingest_n("MSFT", 10, 0.0).await;
    srv.wait_seq("MSFT", 10).await;

    let mut json = srv.connect().await;
    let mut mp = Client::connect_msgpack(&srv.url()).await;
    // A resume (replayed events), a wildcard (shared batches, framed once per encoding),
    // derived channels with `null` indicators, a throttled channel, an error and a list.
    let ops = [
        json!({"op":"subscribe","id":1,"channels":["ticks:MSFT"],"from":{"ticks:MSFT":7}}),
        json!({"op":"subscribe","id":2,"channels":["ticks:*","bars.1s:AAPL","indicators:AAPL"]}),
        json!({"op":"subscribe","id":3,"channels":["bars.1s:MSFT"],"throttle_ms":50}),
        json!({"op":"subscribe","id":4,"channels":["ticks:NOPE"]}),
        json!({"op":"list","id":5}),
    ];
    for op in ops {
        both(&mut json, &mut mp, op).await;
    }
    let (first_json, first_mp) = (until_quiet(&mut json).await, until_quiet(&mut mp).await);
    assert_eq!(first_json, first_mp);
    let kinds: Vec<&str> = first_json
        .iter()
        .filter_map(|v| v["type"].as_str())
        .collect();
    for kind in ["ack", "tick", "snapshot", "error", "list"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    // The replay is positional events in MessagePack, 8..=10 in order.
    let replayed: Vec<u64> = first_mp
        .iter()
        .filter(|v| v["type"] == "tick")
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(replayed, vec![8, 9, 10]);

    srv.ingest_n("AAPL", 20, 200.5).await;
    srv.ingest_n("MSFT", 20, 0.25).await;
    srv.derived(derived(&srv)).await;
    srv.wait_seq("MSFT", 30).await;
    let (live_json, live_mp) = (until_quiet(&mut json).await, until_quiet(&mut mp).await);
    assert_eq!(live_json, live_mp);
    // Every tick once (the wildcard covers the resumed channel), a bar, indicators.
    assert_eq!(live_mp.iter().filter(|v| v["type"] == "tick").count(), 40);
    let ind = live_mp
        .iter()
        .find(|v| v["type"] == "indicators")
        .expect("indicators");
    assert_eq!(
        (ind["sma_20"].as_f64(), &ind["ema_20"]),
        (Some(189.75), &Value::Null)
    );
    let bar = live_mp.iter().find(|v| v["type"] == "bar").expect("bar");
    assert_eq!(
        (bar["volume"].as_u64(), &bar["final"]),
        (Some(300), &json!(true))
    );

    // Client ops stay JSON text: a binary op is still a bad request, answered in MessagePack.
    mp.send_raw(Message::binary(vec![0x80])).await;
    let e = mp.event().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_ticks_take_less_than_half_the_bytes_of_json() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    let mut json = srv.connect().await;
    let mut mp = Client::connect_msgpack(&srv.url()).await;
    let op = json!({"op":"subscribe","channels":["ticks:AAPL"],"snapshot":0});
    both(&mut json, &mut mp, op).await;
    until_quiet(&mut json).await;
    until_quiet(&mut mp).await;
    let (json_before, mp_before) = (json.frame_bytes, mp.frame_bytes);

    // Prices and sizes as a venue sends them (not round numbers), both sides and a missing one.
    let ticks: Vec<Value> = (0..300)
        .map(|i| {
            let side = ["buy", "sell"][i % 2];
            json!({"symbol":"AAPL","price": 189.2345 + i as f64 * 0.0131,"size": 0.015 * (i % 7 + 1) as f64,"side": side})
        })
        .collect();
    let (status, body) = srv.ingest(Value::Array(ticks)).await;
    assert_eq!(status, 202, "{body}");
    srv.wait_seq("AAPL", 301).await;
    let (a, b) = (until_quiet(&mut json).await, until_quiet(&mut mp).await);
    assert_eq!((a.len(), a == b), (300, true));
    let json_bytes = json.frame_bytes - json_before;
    let mp_bytes = mp.frame_bytes - mp_before;
    assert!(
        mp_bytes * 2 <= json_bytes,
        "msgpack {mp_bytes} bytes against JSON {json_bytes} for 300 ticks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_encoding_is_refused_before_the_upgrade() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    let (status, headers, body) = util::http(srv.addr, "GET", "/ws?encoding=xml", &[], b"").await;
    assert_eq!(status, 400);
    assert_eq!(
        util::header(&headers, "content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "unsupported_encoding", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("xml"),
        "{problem}"
    );
    // `json` names the default explicitly.
    let url = format!("ws://{}/ws?v=1&encoding=json", srv.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("json connects");
    let mut c = Client::from_stream(ws);
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"]}))
        .await;
}
