//! Indicator history and configured indicator periods: rows stored per closed 1 s bar by the
//! real pipeline and recorder, `GET /api/v1/indicators/{symbol}` paged both ways (and its v1
//! answer without parameters), the event's fields named after the periods in both encodings,
//! and the v1 config keys.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tickcast::config::Config;

use crate::util::{self, Client, TestServer};

/// One trade per second, at half past: `PRICES[i]` at second `base + i`, size `i + 1`.
const PRICES: [f64; 10] = [10.0, 11.0, 12.0, 11.0, 13.0, 14.0, 12.0, 15.0, 16.0, 17.0];

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Several periods per indicator: `sma_2`, `sma_3`, `ema_2`, `rsi_2`, `volatility`,
/// `volatility_4`.
fn periods(c: &mut Config) {
    c.pipeline.interval_ms = 100;
    c.pipeline.close_delay_ms = 10;
    c.pipeline.partial_bars = false;
    c.pipeline.indicators.sma = vec![2, 3];
    c.pipeline.indicators.ema = vec![2];
    c.pipeline.indicators.rsi = vec![2];
    c.pipeline.indicators.volatility = vec![3, 4];
    c.ring.capacity = 64;
}

/// Ingests the trades in one request (one ingest batch) and waits until every second's row of
/// indicator history is stored.
async fn ingest_and_store(srv: &TestServer, symbol: &str, base: i64) {
    let m = srv.server().metrics().clone();
    let before = m.db_indicators_written.load(Ordering::Relaxed);
    let ticks: Vec<Value> = PRICES
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ts = (base + i as i64) * 1_000_000_000 + 500_000_000;
            json!({"symbol": symbol, "price": p, "size": i + 1, "side": "buy", "ts": ts})
        })
        .collect();
    let (status, body) = srv.ingest(Value::Array(ticks)).await;
    assert_eq!(status, 202, "{body}");
    let want = before + PRICES.len() as u64;
    util::wait_until("indicator rows stored", util::WAIT, async || {
        m.db_indicators_written.load(Ordering::Relaxed) >= want
    })
    .await;
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// `sma_2` and `sma_3` right after close `i` (null while warming up).
fn smas(i: usize) -> (Value, Value) {
    let sma = |n: usize| {
        if i + 1 >= n {
            json!(mean(&PRICES[i + 1 - n..=i]))
        } else {
            Value::Null
        }
    };
    (sma(2), sma(3))
}

async fn get(srv: &TestServer, path: &str) -> (u16, Value) {
    let (status, _, body) = srv.get(path, None).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_a_row_per_close_and_pages_both_ways() {
    for db in util::backends().await {
        let mut c = db.config();
        periods(&mut c);
        let srv = util::start(c).await;
        let base = now_s() - 30;
        ingest_and_store(&srv, "HIST", base).await;
        let from = base * 1000;
        let to = from + 10_000;

        // Oldest first, four at a time, to the end.
        let mut rows = Vec::new();
        let mut next = Some(from);
        let mut pages = 0;
        while let Some(f) = next {
            let (status, page) = get(
                &srv,
                &format!("/api/v1/indicators/HIST?from={f}&to={to}&limit=4"),
            )
            .await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(page["symbol"], "HIST");
            assert_eq!(page["next_to"], Value::Null);
            rows.extend(page["indicators"].as_array().unwrap().iter().cloned());
            next = page["next_from"].as_i64();
            pages += 1;
            assert!(pages <= 3, "{page}");
        }
        assert_eq!(rows.len(), PRICES.len(), "{} {rows:?}", db.backend);
        let total: f64 = (0..PRICES.len()).map(|i| (i + 1) as f64).sum();
        let vwap: f64 = PRICES
            .iter()
            .enumerate()
            .map(|(i, p)| p * (i + 1) as f64)
            .sum::<f64>()
            / total;
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["start"], from + i as i64 * 1000, "{row}");
            let (sma_2, sma_3) = smas(i);
            assert_eq!((&row["sma_2"], &row["sma_3"]), (&sma_2, &sma_3), "{row}");
            assert_eq!(row["rsi_2"].is_null(), i < 2, "{row}");
            assert_eq!(row["ema_2"].is_null(), i < 1, "{row}");
            assert_eq!(row["volatility"].is_null(), i < 2, "{row}");
            assert_eq!(row["volatility_4"].is_null(), i < 3, "{row}");
            // VWAP and the book are as at the batch that closed the bar: here one batch read
            // every trade.
            let v = row["vwap"].as_f64().unwrap();
            assert!((v - vwap).abs() < 1e-9, "{row}");
            for k in ["mid", "spread", "imbalance"] {
                assert!(row[k].is_null(), "no book: {row}");
            }
            assert_eq!(row.as_object().unwrap().len(), 11, "{row}");
        }

        // Newest first: the latest three, then back from there.
        let (status, page) = get(&srv, "/api/v1/indicators/HIST?order=desc&limit=3").await;
        assert_eq!(status, 200, "{page}");
        let starts: Vec<i64> = page["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["start"].as_i64().unwrap())
            .collect();
        assert_eq!(starts, [from + 9000, from + 8000, from + 7000]);
        assert_eq!(page["next_to"], from + 7000);
        assert_eq!(page["next_from"], Value::Null);
        let (_, older) = get(
            &srv,
            &format!(
                "/api/v1/indicators/HIST?order=desc&limit=3&to={}",
                from + 7000
            ),
        )
        .await;
        assert_eq!(older["indicators"][0]["start"], from + 6000, "{older}");
        assert_eq!(older["indicators"][0]["sma_2"], smas(6).0);

        // A range with nothing in it is an empty last page.
        let (status, empty) = get(&srv, "/api/v1/indicators/HIST?from=0&to=1000").await;
        assert_eq!(status, 200);
        assert_eq!(empty["indicators"], json!([]));
        assert_eq!(empty["next_from"], Value::Null);

        // Without parameters: the v1 answer, the latest values under the configured names.
        let (status, latest) = get(&srv, "/api/v1/indicators/HIST").await;
        assert_eq!(status, 200, "{latest}");
        assert!(latest["seq"].as_u64().unwrap() >= 1, "{latest}");
        assert_eq!(latest["sma_2"], smas(9).0);
        assert_eq!(latest["sma_3"], smas(9).1);
        assert!(latest.get("indicators").is_none(), "{latest}");
        drop(srv);
        drop(db);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_every_configured_period_in_both_encodings() {
    let mut c = util::config();
    periods(&mut c);
    let srv = util::start(c).await;
    ingest_and_store(&srv, "EVT", now_s() - 30).await;
    let names = [
        "sma_2",
        "sma_3",
        "ema_2",
        "rsi_2",
        "volatility",
        "volatility_4",
        "vwap",
        "mid",
        "spread",
        "imbalance",
    ];
    for mut client in [
        srv.connect().await,
        Client::connect_msgpack(&srv.url()).await,
    ] {
        client
            .subscribe(json!({"op":"subscribe","channels":["indicators:EVT"],"snapshot":1}))
            .await;
        let snap = client.event_of("snapshot").await;
        // MessagePack's `[3, ch, seq, ts, {name: value}]` comes back in the JSON shape.
        let got = snap["data"][0].clone();
        let mut keys: Vec<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| !["type", "ch", "seq", "ts"].contains(k))
            .collect();
        keys.sort_unstable();
        let mut want = names.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "{snap}");
        assert_eq!(got["sma_2"], smas(9).0, "{snap}");
    }
}

#[tokio::test]
async fn bad_history_parameters_are_problems() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("BAD", 2, 10.0).await;
    for (query, status, code) in [
        ("limit=0", 400, "limit_out_of_range"),
        ("limit=100000", 400, "limit_out_of_range"),
        ("from=yesterday", 400, "bad_time"),
        ("from=2000&to=1000", 400, "bad_time_range"),
        ("order=sideways", 400, "bad_request"),
        ("lmit=3", 400, "bad_request"),
    ] {
        let (got, body) = get(&srv, &format!("/api/v1/indicators/BAD?{query}")).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{query}: {body}"
        );
    }
    for path in [
        "/api/v1/indicators/NOPE?limit=5",
        "/api/v1/indicators/NOPE",
        "/api/v1/indicators/bad%20name?limit=5",
    ] {
        let (got, body) = get(&srv, path).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (404, Some("unknown_symbol")),
            "{path}"
        );
    }
}

#[test]
fn v1_period_keys_still_load_and_must_agree_with_the_lists() {
    let load =
        |text: &str| Config::from_layers(Some(("t.toml".into(), text.into())), std::iter::empty());
    // A v1 file: each key is a one-element list.
    let c = load("[pipeline]\nsma_period = 50\nrsi_period = 7\n").expect("v1 keys load");
    assert_eq!(c.pipeline.indicators.sma, [50]);
    assert_eq!(c.pipeline.indicators.rsi, [7]);
    assert_eq!(c.pipeline.indicators.ema, [20], "the default stays");
    let c = load("[pipeline.indicators]\nsma = [20, 50, 200]\n").expect("lists load");
    assert_eq!(c.pipeline.indicators.sma, [20, 50, 200]);
    for (text, key) in [
        (
            "[pipeline]\nsma_period = 20\n[pipeline.indicators]\nsma = [20, 50]\n",
            "pipeline.sma_period",
        ),
        (
            "[pipeline]\nvolatility_period = 2\n",
            "pipeline.volatility_period",
        ),
        (
            "[pipeline.indicators]\nsma = []\n",
            "pipeline.indicators.sma",
        ),
        (
            "[pipeline.indicators]\nema = [0]\n",
            "pipeline.indicators.ema",
        ),
        (
            "[pipeline.indicators]\nrsi = [14, 14]\n",
            "pipeline.indicators.rsi",
        ),
        (
            "[pipeline.indicators]\nsma = [1000000]\n",
            "pipeline.indicators.sma",
        ),
        (
            "[pipeline.indicators]\nsma = [\"20\"]\n",
            "pipeline.indicators.sma",
        ),
        (
            "[pipeline.indicators]\nmacd = [12]\n",
            "pipeline.indicators",
        ),
    ] {
        let err = load(text).expect_err(text).to_string();
        assert!(err.contains(&format!("`{key}")), "{text}: {err}");
    }
}
