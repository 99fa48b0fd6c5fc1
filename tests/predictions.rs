//! `predictions:` channels end to end (docs/PROTOCOL.md "Predictions"): the first events when
//! 1 s bars close, each equal to `GET /api/v1/predictions/{symbol}` at the same bar (both
//! models), the snapshot (the latest), resume, the MessagePack form, `list`, and the switch.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{self, Client, TestServer};

fn now_ms() -> i64 {
    tickcast::model::now_ns() / 1_000_000
}

/// One trade a second for `n` seconds from `t0` (ms), prices that an AR(3) fits.
fn trades(symbol: &str, t0: i64, from: usize, n: usize) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| {
                let price = 100.0 + ((i * 7919) % 13) as f64 * 0.1 + i as f64 * 0.01;
                json!({"symbol": symbol, "price": price, "size": 1, "side": "buy",
                       "ts": (t0 + i as i64 * 1000 + 100) * 1_000_000})
            })
            .collect(),
    )
}

/// `prediction` events until one is at the bar starting `as_of` (earlier bars may close in an
/// earlier batch and be forecast first); all of them, in order.
async fn until_as_of(c: &mut Client, as_of: i64) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let e = c.event_of("prediction").await;
        let at = e["as_of"].as_i64().expect("as_of");
        assert!(at <= as_of, "past the last bar: {e}");
        got.push(e);
        if at == as_of {
            return got;
        }
    }
}

/// REST's answer for `model` equals the event's entry for it, at the same bar.
async fn same_as_rest(srv: &TestServer, event: &Value, symbol: &str) {
    for model in ["ar", "ewma"] {
        let (status, _, body) = srv
            .get(&format!("/api/v1/predictions/{symbol}?model={model}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["as_of"], event["as_of"], "{body} vs {event}");
        assert_eq!(body["horizon_s"], event["horizon_s"]);
        assert_eq!(body["last_close"], event["last_close"]);
        let m = &event["models"][model];
        for k in ["forecast", "interval", "fit"] {
            assert_eq!(body[k], m[k], "{model} {k}: {body} vs {event}");
        }
        assert!(m["fit"]["rmse_naive_walk_forward"].is_f64(), "{event}");
        assert!(m["fit"].get("skill").is_some(), "{event}");
    }
}

#[tokio::test]
async fn prediction_channels_first_events_rest_snapshot_resume_and_msgpack() {
    let mut cfg = util::config();
    // Rings that hold every 1 s bar of the test: the models see all of them.
    cfg.ring.capacity = 64;
    let srv = util::start(cfg).await;
    let mut live = srv.connect().await;
    live.subscribe(json!({"op":"subscribe","id":1,"channels":["predictions:*"]}))
        .await;
    // 40 one-second bars, a minute ago: the pipeline closes them all on the symbol's event
    // clock (in one batch or two).
    let t0 = (now_ms() - 60_000).div_euclid(1000) * 1000;
    assert_eq!(srv.ingest(trades("PRA", t0, 0, 40)).await.0, 202);
    let first = until_as_of(&mut live, t0 + 39_000).await;
    for (i, e) in first.iter().enumerate() {
        assert_eq!(e["ch"], "predictions:PRA");
        assert_eq!(e["seq"], i as u64 + 1, "{e}");
        assert_eq!(e["horizon_s"], 60);
    }
    let latest = first.last().unwrap().clone();
    assert!(latest["models"]["ar"]["forecast"].is_f64(), "{latest}");
    assert_eq!(latest["models"]["ar"]["fit"]["points"], 40, "{latest}");
    same_as_rest(&srv, &latest, "PRA").await;

    // A new subscriber's snapshot is the latest forecast (the whole state).
    let mut other = srv.connect().await;
    other
        .subscribe(json!({"op":"subscribe","id":2,"channels":["predictions:PRA"]}))
        .await;
    let snap = other.event_of("snapshot").await;
    assert_eq!(snap["seq"], latest["seq"], "{snap}");
    assert_eq!(snap["data"], json!([latest]), "{snap}");

    // Five more bars: forecasts at each newer bar, the next seqs, to both subscribers.
    assert_eq!(srv.ingest(trades("PRA", t0, 40, 5)).await.0, 202);
    let more = until_as_of(&mut live, t0 + 44_000).await;
    let next = latest["seq"].as_u64().unwrap() + 1;
    for (i, e) in more.iter().enumerate() {
        assert_eq!(e["seq"], next + i as u64, "{e}");
        assert!(e["as_of"].as_i64() > latest["as_of"].as_i64(), "{e}");
    }
    let newest = more.last().unwrap().clone();
    assert_eq!(until_as_of(&mut other, t0 + 44_000).await, more);
    same_as_rest(&srv, &newest, "PRA").await;

    // Resume after the first forecasts: the missed ones replayed, no snapshot.
    let mut resumed = srv.connect().await;
    resumed
        .subscribe(
            json!({"op":"subscribe","id":3,"channels":["predictions:PRA"],
                          "from":{"predictions:PRA": latest["seq"]}}),
        )
        .await;
    for e in &more {
        assert_eq!(&resumed.event().await, e);
    }

    // MessagePack: `[8, ch, seq, ts, {as_of, horizon_s, last_close, models}]`, the same fields.
    let mut mp = Client::connect_msgpack(&srv.url()).await;
    mp.subscribe(json!({"op":"subscribe","id":4,"channels":["predictions:PRA"]}))
        .await;
    let snap = mp.event_of("snapshot").await;
    assert_eq!(snap["data"], json!([newest]), "{snap}");

    // `list` names the kind.
    live.send(json!({"op":"list","id":9})).await;
    let list = live.event_of("list").await;
    assert!(
        list["kinds"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("predictions"))),
        "{list}"
    );
}

#[tokio::test]
async fn too_few_bars_say_which_model_cannot_be_fitted_and_the_switch_turns_it_off() {
    let srv = util::start(util::config()).await;
    let mut live = srv.connect().await;
    live.subscribe(json!({"op":"subscribe","id":1,"channels":["predictions:*"]}))
        .await;
    let t0 = (now_ms() - 60_000).div_euclid(1000) * 1000;
    assert_eq!(srv.ingest(trades("PRB", t0, 0, 5)).await.0, 202);
    let events = until_as_of(&mut live, t0 + 4_000).await;
    let e = events.last().unwrap();
    // AR(3) needs 16 closes; EWMA fits from 3.
    assert_eq!(e["models"]["ar"]["error"], "insufficient_data", "{e}");
    assert!(
        e["models"]["ar"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("need at least 16")),
        "{e}"
    );
    assert!(e["models"]["ewma"]["forecast"].is_f64(), "{e}");
    let (status, _, body) = srv.get("/api/v1/predictions/PRB", None).await;
    assert_eq!((status, &body["code"]), (422, &json!("insufficient_data")));

    let mut c = util::config();
    c.pipeline.predictions = false;
    let off = util::start(c).await;
    let mut quiet = off.connect().await;
    quiet
        .subscribe(json!({"op":"subscribe","id":1,"channels":["predictions:*", "bars.1s:*"]}))
        .await;
    assert_eq!(off.ingest(trades("PRC", t0, 0, 5)).await.0, 202);
    // The bars close; no forecast comes with them.
    let mut bars = 0;
    while bars < 5 {
        let e = quiet.event().await;
        assert_ne!(e["type"], "prediction", "{e}");
        if e["type"] == "bar" {
            bars += 1;
        }
    }
    assert!(quiet.silent_for(Duration::from_millis(1500)).await);
}
