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

/// The `bars.1s` snapshot of `symbol` once it holds at least `n` bars (bounded wait).
async fn wait_bars(srv: &util::TestServer, symbol: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + util::WAIT;
    loop {
        let mut c = srv.connect().await;
        let ch = format!("bars.1s:{symbol}");
        c.subscribe(json!({"op":"subscribe","channels":[ch],"snapshot":n}))
            .await;
        let snap = c.event_of("snapshot").await;
        let data = snap["data"].as_array().cloned().unwrap_or_default();
        if data.len() >= n {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{symbol}: {} of {n} bars",
            data.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
    cfg.pipeline.indicators.sma = vec![5];
    cfg.pipeline.indicators.ema = vec![5];
    cfg.pipeline.indicators.rsi = vec![4];
    cfg.pipeline.indicators.volatility = vec![5];
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
    // The last bar closes by the symbol's event clock, after the others; the batch that closes
    // it publishes the indicators over all eight closes.
    wait_bars(&srv, "IND", 8).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["indicators:IND"]}))
        .await;
    let snap = c.event_of("snapshot").await;
    let v = snap["data"]
        .as_array()
        .and_then(|d| d.last())
        .cloned()
        .unwrap_or_default();
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

// --- event time: replayed history ---------------------------------------------------------

const DAY_MS: i64 = 86_400_000;
const REPLAY_SYMBOLS: [&str; 3] = ["HIST", "HIST.B", "HIST-C"];

/// A deterministic tick file over 40 s of exchange time starting at `base_ms`: each symbol
/// trades every 130 to 400 ms, prices a random walk, integer sizes. Rows are in time order.
fn history_csv(base_ms: i64) -> (String, Vec<(i64, String, f64, f64)>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut rows = Vec::new();
    for (k, sym) in REPLAY_SYMBOLS.iter().enumerate() {
        let mut t = base_ms + k as i64 * 7;
        // In cents, so the file and the expectations hold the same f64 values.
        let mut cents = 10_000 + 1_000 * k as i64;
        while t < base_ms + 40_000 {
            cents += next(41) as i64 - 20;
            let price = cents as f64 / 100.0;
            rows.push((t, sym.to_string(), price, (1 + next(9)) as f64));
            t += 130 + next(271) as i64;
        }
    }
    rows.sort_by_key(|r| r.0);
    let mut text = String::from("ts,symbol,price,size,side\n");
    for (i, (t, sym, price, size)) in rows.iter().enumerate() {
        let side = if i % 3 == 0 { "sell" } else { "buy" };
        text.push_str(&format!("{t},{sym},{price},{size},{side}\n"));
    }
    (text, rows)
}

/// The 1 s bars a file defines, per symbol: (start, open, high, low, close, volume, trades).
type BarRow = (i64, f64, f64, f64, f64, f64, u64);

fn bars_of(rows: &[(i64, String, f64, f64)], symbol: &str) -> Vec<BarRow> {
    let mut bars: Vec<BarRow> = Vec::new();
    for (t, _, p, s) in rows.iter().filter(|r| r.1 == symbol) {
        let start = t.div_euclid(1000) * 1000;
        match bars.last_mut() {
            Some(b) if b.0 == start => {
                b.2 = b.2.max(*p);
                b.3 = b.3.min(*p);
                b.4 = *p;
                b.5 += s;
                b.6 += 1;
            }
            _ => bars.push((start, *p, *p, *p, *p, *s, 1)),
        }
    }
    bars
}

/// Ring capacity of the replay tests: holds every 1 s bar of the file, not its ticks.
const RING: usize = 48;

/// Replays `text` at `speed` and returns, per symbol, its final 1 s bars and latest indicators,
/// once `want` bars per symbol are out; checks that no tick was late or missed.
async fn replay_bars(
    text: &str,
    speed: f64,
    want: &[usize],
    tag: &str,
) -> Vec<(Vec<BarRow>, Value)> {
    let dir =
        std::env::temp_dir().join(format!("tickcast-e2e-history-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.csv");
    std::fs::write(&path, text).unwrap();
    let mut cfg = config();
    cfg.feeds.replay.enabled = true;
    cfg.feeds.replay.path = path;
    cfg.feeds.replay.speed = speed;
    // Rings far smaller than the file (about 150 ticks per symbol): the replay must wait for
    // the pipeline to read each ring rather than let it evict unread ticks.
    cfg.ring.capacity = RING;
    cfg.ring.snapshot_depth = RING;
    let srv = util::start(cfg).await;
    let m = srv.server().metrics().clone();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let ticks = text.lines().count() as u64 - 1;
    let deadline = tokio::time::Instant::now() + util::WAIT;
    while load(&m.ticks_ingested) < ticks {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{tag}: file not ingested"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut out = Vec::new();
    for (sym, &n) in REPLAY_SYMBOLS.iter().zip(want) {
        let bars = wait_bars(&srv, sym, n).await;
        let bars: Vec<BarRow> = bars
            .iter()
            .map(|b| {
                assert_eq!(b["final"], true, "{b}");
                (
                    b["start"].as_i64().unwrap(),
                    b["open"].as_f64().unwrap(),
                    b["high"].as_f64().unwrap(),
                    b["low"].as_f64().unwrap(),
                    b["close"].as_f64().unwrap(),
                    b["volume"].as_f64().unwrap(),
                    b["trades"].as_u64().unwrap(),
                )
            })
            .collect();
        // The batch that closed the last bar published the indicators over it, together.
        let mut c = srv.connect().await;
        c.subscribe(json!({"op":"subscribe","channels":[format!("indicators:{sym}")]}))
            .await;
        let snap = c.event_of("snapshot").await;
        let latest = snap["data"].as_array().and_then(|d| d.last()).cloned();
        out.push((bars, latest.unwrap_or(Value::Null)));
    }
    assert_eq!(load(&m.pipeline_late_ticks), 0, "{tag}: late ticks");
    assert_eq!(load(&m.pipeline_missed_ticks), 0, "{tag}: missed ticks");
    assert_eq!(load(&m.feed_errors), 0, "{tag}: feed errors");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_history_gets_the_bars_its_timestamps_define_at_any_speed() {
    // Noon two days ago, and noon two days ahead: the same UTC-day position (VWAP sessions).
    let today = now_ms().div_euclid(DAY_MS) * DAY_MS;
    let past = today - 2 * DAY_MS + DAY_MS / 2;
    let future = today + 2 * DAY_MS + DAY_MS / 2;
    let (past_csv, past_rows) = history_csv(past);
    let (future_csv, _) = history_csv(future);
    let want: Vec<Vec<BarRow>> = REPLAY_SYMBOLS
        .iter()
        .map(|s| bars_of(&past_rows, s))
        .collect();
    let counts: Vec<usize> = want.iter().map(Vec::len).collect();
    assert!(
        counts.iter().all(|&n| (35..=RING).contains(&n)),
        "{counts:?}"
    );

    let past_400 = replay_bars(&past_csv, 400.0, &counts, "past-400").await;
    let past_max = replay_bars(&past_csv, 0.0, &counts, "past-0").await;
    let future_400 = replay_bars(&future_csv, 400.0, &counts, "future-400").await;
    for (i, sym) in REPLAY_SYMBOLS.iter().enumerate() {
        // Exactly the bars the file's timestamps define, at 400x and as fast as possible.
        assert_eq!(past_400[i].0, want[i], "{sym} at 400x");
        assert_eq!(past_max[i].0, want[i], "{sym} at speed 0");
        // The same file stamped four days later: the same bars, shifted.
        let shifted: Vec<BarRow> = future_400[i]
            .0
            .iter()
            .map(|b| (b.0 - (future - past), b.1, b.2, b.3, b.4, b.5, b.6))
            .collect();
        assert_eq!(shifted, want[i], "{sym} stamped in the future");
        // The same indicators, and the SMA is that of the file's last 20 closes.
        let ind = &past_400[i].1;
        for k in ["sma_20", "ema_20", "rsi_14", "volatility", "vwap"] {
            let v = ind[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{sym} {k}: {ind}"));
            for other in [&past_max[i].1, &future_400[i].1] {
                let o = other[k].as_f64().unwrap_or(f64::NAN);
                assert!(
                    (v - o).abs() <= 1e-9 * v.abs().max(1.0),
                    "{sym} {k}: {v} vs {o}"
                );
            }
        }
        let closes: Vec<f64> = want[i].iter().map(|b| b.4).collect();
        let sma = closes[closes.len() - 20..].iter().sum::<f64>() / 20.0;
        let got = ind["sma_20"].as_f64().unwrap();
        assert!((got - sma).abs() < 1e-9, "{sym}: sma {got} vs {sma}");
    }
}
