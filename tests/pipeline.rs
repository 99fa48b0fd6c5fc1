//! Bars and indicators from the batching pipeline, over the WebSocket contract.

use serde_json::{Value, json};

use crate::util;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn config() -> tickcast::config::Config {
    let mut c = util::config();
    c.ring.capacity = 64;
    c.pipeline.interval_ms = 100;
    c.pipeline.close_delay_ms = 10;
    c.pipeline.partial_bars = false;
    c
}

/// One tick per past second: `prices[i]` at second `base_s + i`, size `i + 1`.
async fn ingest_seconds(srv: &util::TestServer, symbol: &str, base_s: i64, prices: &[f64]) {
    let ticks: Vec<Value> = prices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ts_ns = (base_s + i as i64) * 1_000_000_000 + 500_000_000;
            json!({"symbol": symbol, "price": p, "size": i + 1, "side": "buy", "ts": ts_ns})
        })
        .collect();
    let (status, body) = srv.ingest(Value::Array(ticks)).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_bars_have_exact_ohlcv() {
    let srv = util::start(config()).await;
    let second = now_ms() / 1000 - 5;
    let at = |ms: i64| (second * 1000 + ms) * 1_000_000;
    // One request is one ingest batch, so the pipeline takes these together. An earlier tick in
    // an older second, then four trades inside one past second: open is the first, close the
    // last (arrival order, which is also exchange-time order here).
    let ticks = json!([
        {"symbol":"AAPL","price":1.0,"size":1,"side":"buy","ts": at(-5000)},
        {"symbol":"AAPL","price":10.0,"size":1,"side":"buy","ts": at(100)},
        {"symbol":"AAPL","price":12.5,"size":2,"side":"sell","ts": at(300)},
        {"symbol":"AAPL","price":9.0,"size":3,"side":"buy","ts": at(600)},
        {"symbol":"AAPL","price":11.0,"size":4,"side":"buy","ts": at(900)}
    ]);
    assert_eq!(srv.ingest(ticks).await.0, 202);
    srv.wait_seq("AAPL", 5).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["bars.1s:AAPL"]}))
        .await;
    let mut found = None;
    while found.is_none() {
        let e = c.event().await;
        let bars = match e["type"].as_str() {
            Some("snapshot") => e["data"].as_array().cloned().unwrap_or_default(),
            Some("bar") => vec![e],
            _ => vec![],
        };
        found = bars.into_iter().find(|b| b["start"] == second * 1000);
    }
    let bar = found.unwrap();
    assert_eq!(bar["ch"], "bars.1s:AAPL");
    assert_eq!(bar["final"], true);
    for (k, v) in [
        ("open", 10.0),
        ("high", 12.5),
        ("low", 9.0),
        ("close", 11.0),
        ("volume", 10.0),
    ] {
        assert_eq!(bar[k].as_f64(), Some(v), "{k} in {bar}");
    }
    assert_eq!(bar["trades"], 4);
    assert!(bar["seq"].as_u64().unwrap() >= 1 && bar["ts"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indicators_warm_up_then_match_the_closes() {
    let mut cfg = config();
    cfg.pipeline.sma_period = 5;
    cfg.pipeline.ema_period = 5;
    cfg.pipeline.rsi_period = 4;
    cfg.pipeline.volatility_period = 5;
    let srv = util::start(cfg).await;
    // A symbol with only two closes: everything but VWAP is still warming up (null).
    let base = now_ms() / 1000 - 30;
    ingest_seconds(&srv, "WARM", base, &[10.0, 11.0]).await;
    srv.wait_seq("WARM", 2).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["indicators:WARM"]}))
        .await;
    c.event_of("snapshot").await;
    let v = c.event_of("indicators").await;
    assert_eq!(v["sma_5"], Value::Null, "{v}");
    assert_eq!(v["ema_5"], Value::Null);
    assert_eq!(v["rsi_4"], Value::Null);
    assert_eq!(v["volatility"], Value::Null);
    let vwap = (10.0 * 1.0 + 11.0 * 2.0) / 3.0;
    assert!((v["vwap"].as_f64().unwrap() - vwap).abs() < 1e-9, "{v}");

    let prices = [10.0, 10.5, 10.2, 10.8, 11.0, 10.9, 11.3, 11.1];
    ingest_seconds(&srv, "IND", base, &prices).await;
    srv.wait_seq("IND", 8).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["indicators:IND"]}))
        .await;
    c.event_of("snapshot").await;
    let v = loop {
        let v = c.event_of("indicators").await;
        if !v["sma_5"].is_null() {
            break v;
        }
    };
    let last5 = &prices[prices.len() - 5..];
    let sma = last5.iter().sum::<f64>() / 5.0;
    assert!((v["sma_5"].as_f64().unwrap() - sma).abs() < 1e-9, "{v}");
    // EMA(5) seeded with the SMA of the first five closes, then alpha = 1/3.
    let mut ema = prices[..5].iter().sum::<f64>() / 5.0;
    for p in &prices[5..] {
        ema += (p - ema) / 3.0;
    }
    assert!((v["ema_5"].as_f64().unwrap() - ema).abs() < 1e-9, "{v}");
    let rsi = v["rsi_4"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&rsi), "{v}");
    assert!(v["volatility"].as_f64().unwrap() > 0.0, "{v}");
    let (pv, vol) = prices
        .iter()
        .enumerate()
        .fold((0.0, 0.0), |(pv, vol), (i, p)| {
            (pv + p * (i + 1) as f64, vol + (i + 1) as f64)
        });
    assert!((v["vwap"].as_f64().unwrap() - pv / vol).abs() < 1e-9, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bar_channels_snapshot_and_resume_like_ticks() {
    let srv = util::start(config()).await;
    let base = now_ms() / 1000 - 20;
    ingest_seconds(&srv, "BARS", base, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).await;
    srv.wait_seq("BARS", 6).await;
    // Wait until the pipeline published the six closed bars.
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["bars.1s:BARS"]}))
        .await;
    let mut snap = c.event_of("snapshot").await;
    while snap["seq"].as_u64().unwrap() < 6 {
        let mut again = srv.connect().await;
        again
            .subscribe(json!({"op":"subscribe","channels":["bars.1s:BARS"]}))
            .await;
        snap = again.event_of("snapshot").await;
    }
    // Resume from seq 2: bars 3..6 are replayed as bar events, in order.
    let mut r = srv.connect().await;
    r.subscribe(json!({"op":"subscribe","channels":["bars.1s:BARS"],"from":{"bars.1s:BARS":2}}))
        .await;
    for want in 3..=6u64 {
        let b = r.event().await;
        assert_eq!(
            (b["type"].as_str(), b["seq"].as_u64()),
            (Some("bar"), Some(want)),
            "{b}"
        );
        assert_eq!(b["close"].as_f64(), Some(want as f64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_indicator_period_names_the_key() {
    let err = tickcast::config::Config::from_layers(
        None,
        vec![("TICKCAST_PIPELINE__RSI_PERIOD".to_string(), "0".to_string())].into_iter(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("pipeline.rsi_period"), "{err}");
}
