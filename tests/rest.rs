//! REST API: market data, indicators, predictions, errors, limits, OpenAPI, readiness and
//! metrics. Every test that touches the database runs once per backend (SQLite, PostgreSQL).

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tickcast::ingest::Derived;
use tickcast::model::{BarEvent, BarInterval, Kind};

use crate::util::{self, TestDb, TestServer, header};

const T0: i64 = 1_764_070_000_000_000_000; // ns; a whole second

/// Ingests ticks with explicit exchange times `(ts_ns, price, size)` for one symbol.
async fn ingest_at(srv: &TestServer, symbol: &str, ticks: &[(i64, f64, f64)]) {
    let body: Vec<Value> = ticks
        .iter()
        .map(|&(ts, price, size)| {
            json!({"symbol": symbol, "price": price, "size": size, "side": "buy", "ts": ts})
        })
        .collect();
    let (status, body) = srv.ingest(Value::Array(body)).await;
    assert_eq!(status, 202, "{body}");
}

async fn started(db: &TestDb) -> TestServer {
    util::start(db.config()).await
}

/// Asserts a problem+json response with `status` and `code`.
fn check_problem(what: &str, got: &(u16, Vec<(String, String)>, Value), status: u16, code: &str) {
    let (s, h, body) = got;
    assert_eq!(*s, status, "{what}: {body}");
    assert_eq!(
        header(h, "content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(body["code"], code, "{what}: {body}");
    assert_eq!(
        body["type"],
        format!("urn:tickcast:problem:{code}"),
        "{what}"
    );
}

#[tokio::test]
async fn ticks_paginate_by_cursor_and_filter_by_time() {
    for db in util::backends().await {
        let srv = started(&db).await;
        let ticks: Vec<(i64, f64, f64)> = (0..25)
            .map(|i| (T0 + i * 1_000_000, 100.0 + i as f64, 1.0))
            .collect();
        ingest_at(&srv, "AAPL", &ticks).await;
        srv.wait_persisted(25).await;

        // Pages of 10 chained by cursor give every tick once, in order.
        let mut seen = Vec::new();
        let mut path = "/api/v1/ticks/AAPL?limit=10".to_owned();
        let mut pages = 0;
        loop {
            let (status, _, body) = srv.get(&path, None).await;
            assert_eq!(status, 200, "{}: {body}", db.backend);
            pages += 1;
            for t in body["ticks"].as_array().unwrap() {
                seen.push(t["price"].as_f64().unwrap());
            }
            match body["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/ticks/AAPL?limit=10&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{}", db.backend);
        let want: Vec<f64> = (0..25).map(|i| 100.0 + i as f64).collect();
        assert_eq!(seen, want, "{}", db.backend);

        // The latest N: newest first, and older pages by cursor, every tick once.
        let mut seen = Vec::new();
        let mut path = "/api/v1/ticks/AAPL?limit=10&order=desc".to_owned();
        loop {
            let (status, _, body) = srv.get(&path, None).await;
            assert_eq!(status, 200, "{}: {body}", db.backend);
            for t in body["ticks"].as_array().unwrap() {
                seen.push(t["price"].as_f64().unwrap());
            }
            match body["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/ticks/AAPL?limit=10&order=desc&cursor={c}"),
                None => break,
            }
        }
        let newest_first: Vec<f64> = want.iter().rev().copied().collect();
        assert_eq!(seen, newest_first, "{}", db.backend);
        let (_, _, body) = srv.get("/api/v1/ticks/AAPL?limit=3&order=desc", None).await;
        let latest: Vec<f64> = body["ticks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["price"].as_f64().unwrap())
            .collect();
        assert_eq!(latest, [124.0, 123.0, 122.0], "{}", db.backend);

        // from (inclusive) / to (exclusive), in epoch ms and RFC 3339.
        let from_ms = (T0 + 5_000_000) / 1_000_000;
        let to_ms = (T0 + 8_000_000) / 1_000_000;
        let (_, _, body) = srv
            .get(
                &format!("/api/v1/ticks/AAPL?from={from_ms}&to={to_ms}"),
                None,
            )
            .await;
        let prices: Vec<f64> = body["ticks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["price"].as_f64().unwrap())
            .collect();
        assert_eq!(prices, vec![105.0, 106.0, 107.0], "{}", db.backend);
        let t = &body["ticks"][0];
        assert_eq!(t["ts"], T0 + 5_000_000);
        assert_eq!(t["side"], "buy");
        assert!(t["seq"].as_i64().unwrap() >= 1);

        // 2025-11-25T11:26:40.005Z is T0 + 5 ms.
        let (_, _, body) = srv
            .get(
                "/api/v1/ticks/AAPL?from=2025-11-25T11:26:40.005Z&to=2025-11-25T11:26:40.006Z",
                None,
            )
            .await;
        assert_eq!(body["ticks"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["ticks"][0]["price"], 105.0);
    }
}

/// A closed bar of `kind` starting at `start_ns`: (open, high, low, close, volume, trades).
fn bar(
    kind: Kind,
    symbol: tickcast::model::SymbolId,
    start_ns: i64,
    v: (f64, f64, f64, f64, f64, u64),
) -> Derived {
    let (open, high, low, close, volume, trades) = v;
    Derived::Bar {
        kind,
        symbol,
        bar: BarEvent {
            start_ms: start_ns / 1_000_000,
            open,
            high,
            low,
            close,
            volume,
            trades,
            is_final: true,
        },
    }
}

/// Publishes closed bars through ingest, as the pipeline does, and waits until they are stored.
async fn publish_stored_bars(srv: &TestServer, bars: Vec<Derived>) {
    let m = srv.server().metrics().clone();
    let before = m.db_bars_written.load(Ordering::Relaxed);
    let n = bars.len() as u64;
    srv.derived(bars).await;
    let deadline = tokio::time::Instant::now() + util::WAIT;
    while m.db_bars_written.load(Ordering::Relaxed) < before + n {
        assert!(tokio::time::Instant::now() < deadline, "bars not stored");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn bars_are_read_from_stored_bars_and_page() {
    for db in util::backends().await {
        let mut c = db.config();
        // Only the bars published here are stored.
        c.pipeline.enabled = false;
        let srv = util::start(c).await;
        let s = 1_000_000_000;
        let id = srv.server().symbols().intern("MSFT").unwrap();
        let minute = T0 - T0 % (60 * s);
        publish_stored_bars(
            &srv,
            vec![
                bar(
                    Kind::Bars(BarInterval::S1),
                    id,
                    T0,
                    (10.0, 14.0, 9.0, 12.0, 8.0, 5),
                ),
                bar(
                    Kind::Bars(BarInterval::S1),
                    id,
                    T0 + s,
                    (21.0, 21.0, 20.0, 20.0, 2.0, 2),
                ),
                bar(
                    Kind::Bars(BarInterval::S1),
                    id,
                    T0 + 3 * s,
                    (30.0, 30.0, 30.0, 30.0, 5.0, 1),
                ),
                bar(
                    Kind::Bars(BarInterval::M1),
                    id,
                    minute,
                    (10.0, 30.0, 9.0, 30.0, 15.0, 8),
                ),
            ],
        )
        .await;
        // A bar in progress is not stored.
        let mut open = bar(
            Kind::Bars(BarInterval::M1),
            id,
            minute + 60 * s,
            (1.0, 1.0, 1.0, 1.0, 1.0, 1),
        );
        if let Derived::Bar { bar, .. } = &mut open {
            bar.is_final = false;
        }
        srv.derived(vec![open]).await;

        let (status, _, body) = srv.get("/api/v1/bars/MSFT?interval=1s", None).await;
        assert_eq!(status, 200, "{}: {body}", db.backend);
        let bars = body["bars"].as_array().unwrap();
        assert_eq!(bars.len(), 3, "{}: {body}", db.backend);
        assert_eq!(
            bars[0],
            json!({"start": T0 / 1_000_000, "open": 10.0, "high": 14.0, "low": 9.0,
                "close": 12.0, "volume": 8, "trades": 5}),
            "{}",
            db.backend
        );
        assert_eq!(
            (&bars[1]["open"], &bars[1]["close"]),
            (&json!(21.0), &json!(20.0))
        );
        assert_eq!(bars[2]["start"], (T0 + 3 * s) / 1_000_000);
        assert_eq!(body["next_from"], Value::Null);

        // One minute bar over the lot; limit pages with next_from.
        let (_, _, body) = srv.get("/api/v1/bars/MSFT?interval=1m", None).await;
        assert_eq!(body["bars"].as_array().unwrap().len(), 1, "{body}");
        let b = &body["bars"][0];
        assert_eq!(
            (b["open"].as_f64(), b["close"].as_f64()),
            (Some(10.0), Some(30.0))
        );
        assert_eq!(b["trades"], 8);
        let (_, _, body) = srv.get("/api/v1/bars/MSFT?interval=1s&limit=2", None).await;
        assert_eq!(body["bars"].as_array().unwrap().len(), 2);
        assert_eq!(body["next_from"], (T0 + 2 * s) / 1_000_000);
        let (_, _, body) = srv
            .get(
                &format!(
                    "/api/v1/bars/MSFT?interval=1s&from={}",
                    (T0 + 2 * s) / 1_000_000
                ),
                None,
            )
            .await;
        assert_eq!(body["bars"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["bars"][0]["close"], 30.0);
    }
}

#[tokio::test]
async fn each_interval_is_read_from_its_own_bars_and_runs_merge() {
    for db in util::backends().await {
        let mut c = db.config();
        c.pipeline.enabled = false;
        let srv = util::start(c).await;
        let m = 60_000_000_000i64;
        let five = T0 - T0 % (5 * m);
        let _ = srv.server().symbols().intern("IBM").unwrap();
        let row = |interval_ns: i64, start: i64, epoch: i64, v: (f64, f64, f64, f64, f64, i64)| {
            tickcast::store::BarRecord {
                symbol: "IBM".into(),
                interval_ns,
                start,
                epoch,
                open: v.0,
                high: v.1,
                low: v.2,
                close: v.3,
                volume: v.4,
                trades: v.5,
            }
        };
        let minute = |start, epoch, v| row(tickcast::store::BAR_1M_NS, start, epoch, v);
        let store = srv.server().store();
        let rows = vec![
            // Minutes 0..4 of one 5-minute window; minute 2 spans a restart (runs 7 and 9).
            minute(five + 3 * m, 7, (13.0, 13.5, 12.5, 13.0, 1.0, 1)),
            minute(five, 7, (10.0, 11.0, 9.0, 10.5, 1.0, 1)),
            minute(five + 2 * m, 9, (12.2, 20.0, 12.2, 12.4, 2.0, 2)),
            minute(five + 2 * m, 7, (12.0, 12.1, 5.0, 12.1, 1.0, 1)),
            // The next window.
            minute(five + 5 * m, 9, (50.0, 50.0, 50.0, 51.0, 4.0, 3)),
            // The stored 5 m bar of the second window only (as the pipeline stores it).
            row(5 * m, five + 5 * m, 9, (50.0, 50.0, 50.0, 51.0, 4.0, 3)),
        ];
        assert_eq!(store.insert_bars(&rows).await.unwrap(), 6);
        // Stored once, however often the batch is retried.
        assert_eq!(store.insert_bars(&rows).await.unwrap(), 0);

        // 5 m is its own stored bars, never a roll-up of the 1 m ones under it.
        let (status, _, body) = srv.get("/api/v1/bars/IBM?interval=5m", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["interval"], "5m");
        assert_eq!(
            body["bars"],
            json!([
                {"start": (five + 5 * m) / 1_000_000, "open": 50.0, "high": 50.0, "low": 50.0,
                    "close": 51.0, "volume": 4, "trades": 3},
            ]),
            "{}",
            db.backend
        );
        // 1 m: the restarted minute is one bar, open of the first run, close of the last.
        let (_, _, body) = srv.get("/api/v1/bars/IBM?interval=1m&limit=3", None).await;
        let bars = body["bars"].as_array().unwrap();
        assert_eq!(bars.len(), 3, "{body}");
        assert_eq!(
            bars[1],
            json!({"start": (five + 2 * m) / 1_000_000, "open": 12.0, "high": 20.0, "low": 5.0,
                "close": 12.4, "volume": 3, "trades": 3}),
            "{}",
            db.backend
        );
        assert_eq!(body["next_from"], (five + 4 * m) / 1_000_000);
        // Newest first, merged the same way, paging back by `next_to`.
        let (_, _, body) = srv
            .get("/api/v1/bars/IBM?interval=1m&limit=2&order=desc", None)
            .await;
        let starts: Vec<i64> = body["bars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["start"].as_i64().unwrap())
            .collect();
        assert_eq!(
            starts,
            [(five + 5 * m) / 1_000_000, (five + 3 * m) / 1_000_000],
            "{}: {body}",
            db.backend
        );
        assert_eq!(body["next_from"], Value::Null);
        let next_to = body["next_to"].as_i64().expect("a next page");
        let (_, _, body) = srv
            .get(
                &format!("/api/v1/bars/IBM?interval=1m&limit=2&order=desc&to={next_to}"),
                None,
            )
            .await;
        assert_eq!(
            body["bars"][0],
            json!({"start": (five + 2 * m) / 1_000_000, "open": 12.0, "high": 20.0, "low": 5.0,
                "close": 12.4, "volume": 3, "trades": 3}),
            "{body}"
        );
        assert_eq!(body["bars"][1]["start"], five / 1_000_000, "{body}");
        assert_eq!(body["next_to"], Value::Null, "{body}");
        // No 1 h bar was stored: nothing is made up from the minutes.
        let (status, _, body) = srv.get("/api/v1/bars/IBM?interval=1h", None).await;
        assert_eq!(status, 200);
        assert_eq!(body["bars"], json!([]), "{body}");
        // 15 m and 4 h are intervals too; `order` is asc or desc.
        let (status, _, _) = srv.get("/api/v1/bars/IBM?interval=4h", None).await;
        assert_eq!(status, 200);
        let (status, _, body) = srv
            .get("/api/v1/bars/IBM?interval=1m&order=newest", None)
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "bad_request");
        assert!(
            body["detail"].as_str().unwrap().contains("`order`"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_bar_at_the_end_of_time_is_served_without_overflow() {
    let srv = util::start(util::config()).await;
    let _ = srv.server().symbols().intern("END").unwrap();
    let last = i64::MAX - i64::MAX % tickcast::store::BAR_1S_NS;
    let row = util::flat_bar("END", tickcast::store::BAR_1S_NS, last);
    srv.server().store().insert_bars(&[row]).await.unwrap();
    // A full page whose last bar ends past i64::MAX ns: no next page, no overflow.
    let (status, _, body) = srv
        .get(
            &format!(
                "/api/v1/bars/END?interval=1s&limit=1&from={}",
                last / 1_000_000
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bars"][0]["start"], last / 1_000_000, "{body}");
    assert_eq!(body["next_from"], Value::Null);
}

#[tokio::test]
async fn the_pipelines_closed_bars_are_stored_and_served() {
    let mut c = util::config();
    c.pipeline.interval_ms = 100;
    c.pipeline.close_delay_ms = 10;
    let srv = util::start(c).await;
    let s = 1_000_000_000;
    // Past seconds: the pipeline closes their bars at its next batch.
    ingest_at(
        &srv,
        "NVDA",
        &[
            (T0 + 100_000_000, 10.0, 1.0),
            (T0 + 900_000_000, 12.0, 2.0),
            (T0 + s + 500_000_000, 20.0, 3.0),
        ],
    )
    .await;
    let deadline = tokio::time::Instant::now() + util::WAIT;
    let body = loop {
        let (status, _, body) = srv.get("/api/v1/bars/NVDA?interval=1s", None).await;
        assert_eq!(status, 200, "{body}");
        if body["bars"].as_array().unwrap().len() == 2 {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        body["bars"][0],
        json!({"start": T0 / 1_000_000, "open": 10.0, "high": 12.0, "low": 10.0,
            "close": 12.0, "volume": 3, "trades": 2})
    );
    assert_eq!(body["bars"][1]["volume"], 3.0);
    assert!(
        srv.server()
            .metrics()
            .db_bars_written
            .load(Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn every_bad_input_is_a_problem_with_a_stable_code() {
    for db in util::backends().await {
        let srv = started(&db).await;
        srv.ingest_n("AAPL", 1, 0.0).await;
        srv.wait_persisted(1).await;
        let cases: &[(&str, u16, &str)] = &[
            ("/api/v1/ticks/NOPE", 404, "unknown_symbol"),
            ("/api/v1/ticks/aapl", 404, "unknown_symbol"),
            ("/api/v1/bars/NOPE?interval=1m", 404, "unknown_symbol"),
            ("/api/v1/indicators/NOPE", 404, "unknown_symbol"),
            ("/api/v1/predictions/NOPE", 404, "unknown_symbol"),
            ("/api/v1/bars/AAPL", 400, "bad_interval"),
            ("/api/v1/bars/AAPL?interval=2m", 400, "bad_interval"),
            ("/api/v1/ticks/AAPL?from=yesterday", 400, "bad_time"),
            (
                "/api/v1/ticks/AAPL?to=2025-13-01T00:00:00Z",
                400,
                "bad_time",
            ),
            (
                "/api/v1/ticks/AAPL?from=2000&to=1000",
                400,
                "bad_time_range",
            ),
            (
                "/api/v1/bars/AAPL?interval=1s&from=5&to=5",
                400,
                "bad_time_range",
            ),
            ("/api/v1/ticks/AAPL?limit=0", 400, "limit_out_of_range"),
            ("/api/v1/ticks/AAPL?limit=1001", 400, "limit_out_of_range"),
            ("/api/v1/ticks/AAPL?limit=x", 400, "limit_out_of_range"),
            (
                "/api/v1/bars/AAPL?interval=1s&limit=-1",
                400,
                "limit_out_of_range",
            ),
            ("/api/v1/ticks/AAPL?cursor=zzz", 400, "bad_cursor"),
            ("/api/v1/predictions/AAPL?horizon_s=0", 400, "bad_horizon"),
            (
                "/api/v1/predictions/AAPL?horizon_s=99999",
                400,
                "bad_horizon",
            ),
            ("/api/v1/predictions/AAPL?model=lstm", 400, "bad_model"),
            ("/api/v1/predictions/AAPL", 422, "insufficient_data"),
            ("/api/v1/nothing", 404, "not_found"),
        ];
        for (path, status, code) in cases {
            let got = srv.get(path, None).await;
            check_problem(&format!("{} {path}", db.backend), &got, *status, code);
        }
    }
}

#[tokio::test]
async fn misspelt_query_parameters_are_refused_by_name() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    let cases = [
        ("/api/v1/ticks/AAPL?limt=10", "`limt`"),
        ("/api/v1/ticks/AAPL?from=0&too=5", "`too`"),
        ("/api/v1/bars/AAPL?interval=1s&intervall=1m", "`intervall`"),
        ("/api/v1/predictions/AAPL?horizon=30", "`horizon`"),
        ("/api/v1/predictions/AAPL?model=ar&modle=ewma", "`modle`"),
    ];
    for (path, name) in cases {
        let got = srv.get(path, None).await;
        check_problem(path, &got, 400, "bad_request");
        let detail = got.2["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(name), "{path}: {detail}");
    }
}

#[tokio::test]
async fn symbols_list_latest_live_prices() {
    let srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 3, 10.0).await;
    srv.wait_seq("AAPL", 3).await;
    let (status, _, body) = srv.get("/api/v1/symbols", None).await;
    assert_eq!(status, 200);
    let symbols = body["symbols"].as_array().unwrap();
    let aapl = symbols.iter().find(|s| s["symbol"] == "AAPL").unwrap();
    assert_eq!(aapl["price"], 13.0);
    assert!(aapl["ts"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn indicators_are_null_before_warm_up_then_latest() {
    let mut cfg = util::config();
    cfg.pipeline.interval_ms = 100;
    cfg.pipeline.close_delay_ms = 10;
    cfg.pipeline.indicators.sma = vec![3];
    cfg.pipeline.indicators.ema = vec![3];
    cfg.pipeline.indicators.rsi = vec![2];
    cfg.pipeline.indicators.volatility = vec![3];
    let srv = util::start(cfg).await;
    // One trade per past second, through the real pipeline.
    let base_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 30;
    let tick = |sym: &str, i: i64, price: f64| {
        serde_json::json!({"symbol":sym,"price":price,"size":1,"side":"buy",
            "ts": (base_s + i) * 1_000_000_000 + 1})
    };
    // Each request is one ingest batch, so the pipeline sees its ticks together: later requests
    // with older exchange times would be late ticks (folded into the open bar, by design).
    srv.ingest(serde_json::json!([tick("WARM", 0, 1.0)])).await;
    let srv = &srv;
    let get = |sym: &'static str| async move {
        srv.get(&format!("/api/v1/indicators/{sym}"), None).await.2
    };
    let deadline = tokio::time::Instant::now() + util::WAIT;
    let body = loop {
        let body = get("WARM").await;
        if body["seq"].as_u64().unwrap_or(0) >= 1 {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // One close: SMA(3), EMA(3), RSI(2) and volatility are still warming up; VWAP is not.
    for k in ["sma_3", "ema_3", "rsi_2", "volatility"] {
        assert_eq!(body[k], Value::Null, "{k}: {body}");
    }
    assert_eq!(body["vwap"], 1.0);
    let history: Vec<Value> = (0..5).map(|i| tick("AAPL", i, i as f64 + 1.0)).collect();
    srv.ingest(Value::Array(history)).await;
    let body = loop {
        let body = get("AAPL").await;
        if !body["sma_3"].is_null() && body["sma_3"] == 4.0 {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Closes 1..5: SMA(3) = (3+4+5)/3; rising prices give RSI 100.
    assert_eq!(body["rsi_2"], 100.0, "{body}");
    assert_eq!(body["vwap"], 3.0, "{body}");
    assert!(body["ts"].as_i64().unwrap() > 0);
    // The same values went out on the WebSocket channel.
    let mut c = srv.connect().await;
    c.subscribe(serde_json::json!({"op":"subscribe","channels":["indicators:AAPL"]}))
        .await;
    let snap = c.event_of("snapshot").await;
    let last = snap["data"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last["sma_3"], 4.0, "{snap}");
}

/// Publishes `closes` as final 1 s bars of `symbol` through ingest.
async fn publish_bars(srv: &TestServer, symbol: &str, closes: &[f64]) {
    let id = srv.server().symbols().intern(symbol).unwrap();
    let bars = closes
        .iter()
        .enumerate()
        .map(|(i, &c)| Derived::Bar {
            kind: Kind::Bars(BarInterval::S1),
            symbol: id,
            bar: BarEvent {
                start_ms: T0 / 1_000_000 + i as i64 * 1000,
                open: c,
                high: c,
                low: c,
                close: c,
                volume: 1.0,
                trades: 1,
                is_final: true,
            },
        })
        .collect();
    srv.derived(bars).await;
    let ch = tickcast::model::ChannelId {
        kind: Kind::Bars(BarInterval::S1),
        symbol: id,
    };
    let deadline = tokio::time::Instant::now() + util::WAIT;
    while srv.server().hub().last_seq(ch) < closes.len() as u64 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn predictions_from_both_models_with_intervals_and_fit_error() {
    let mut c = util::config();
    c.ring.capacity = 256;
    let srv = util::start(c).await;
    // A noisy upward walk.
    let closes: Vec<f64> = (0..120)
        .map(|i| 100.0 + i as f64 * 0.05 + ((i * 37) % 11) as f64 * 0.02)
        .collect();
    publish_bars(&srv, "AAPL", &closes).await;
    for model in ["ar", "ewma"] {
        let (status, _, body) = srv
            .get(
                &format!("/api/v1/predictions/AAPL?horizon_s=30&model={model}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(body["model"], model);
        assert_eq!(body["horizon_s"], 30);
        assert_eq!(body["last_close"], closes[119]);
        let f = body["forecast"].as_f64().unwrap();
        let (lo, hi) = (
            body["interval"]["low"].as_f64().unwrap(),
            body["interval"]["high"].as_f64().unwrap(),
        );
        assert!(lo < f && f < hi, "{model}: {body}");
        assert!((95.0..115.0).contains(&f), "{model}: {body}");
        assert_eq!(body["fit"]["points"], 120);
        assert!(body["fit"]["rmse_in_sample"].as_f64().unwrap() > 0.0);
        let model_rmse = body["fit"]["rmse_walk_forward"].as_f64().unwrap();
        assert!(model_rmse > 0.0);
        // The naive forecast (next close = last close) on the same held-out points: the last
        // min(30, 119 / 5) = 23 one-step changes of the closes.
        let held: Vec<f64> = closes.windows(2).map(|w| w[1] - w[0]).collect();
        let held = &held[held.len() - 23..];
        let naive = (held.iter().map(|d| d * d).sum::<f64>() / 23.0).sqrt();
        let got = body["fit"]["rmse_naive_walk_forward"].as_f64().unwrap();
        assert!((got - naive).abs() < 1e-9, "{model}: {got} vs {naive}");
        let skill = body["fit"]["skill"].as_f64().unwrap();
        assert!(
            (skill - (1.0 - model_rmse / naive)).abs() < 1e-9,
            "{model}: {body}"
        );
    }

    // Concurrent requests for one key compute once; a new bar invalidates the entry.
    let cache = &srv.server().app().predictions.cache;
    let before = cache.computed.load(Ordering::Relaxed);
    let reqs = (0..16).map(|_| srv.get("/api/v1/predictions/AAPL?horizon_s=7", None));
    for (status, _, _) in futures_util::future::join_all(reqs).await {
        assert_eq!(status, 200);
    }
    assert_eq!(cache.computed.load(Ordering::Relaxed), before + 1);
    let (_, _, first) = srv.get("/api/v1/predictions/AAPL?horizon_s=7", None).await;
    assert_eq!(cache.computed.load(Ordering::Relaxed), before + 1);
    let id = srv.server().symbols().get("AAPL").unwrap();
    srv.derived(vec![Derived::Bar {
        kind: Kind::Bars(BarInterval::S1),
        symbol: id,
        bar: BarEvent {
            start_ms: T0 / 1_000_000 + 120_000,
            open: 200.0,
            high: 200.0,
            low: 200.0,
            close: 200.0,
            volume: 1.0,
            trades: 1,
            is_final: true,
        },
    }])
    .await;
    let deadline = tokio::time::Instant::now() + util::WAIT;
    loop {
        let (_, _, body) = srv.get("/api/v1/predictions/AAPL?horizon_s=7", None).await;
        if body["last_close"] == 200.0 {
            assert_ne!(body["forecast"], first["forecast"]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(cache.computed.load(Ordering::Relaxed), before + 2);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let mut c = util::config();
    c.api.requests_per_second = 1;
    c.api.burst = 3;
    let srv = util::start(c).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let got = srv.get("/api/v1/symbols", None).await;
        statuses.push(got.0);
        last = Some(got);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let last = last.unwrap();
    check_problem("rate limited", &last, 429, "rate_limited");
    let retry: u64 = header(&last.1, "retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // An unverified token buys no bucket of its own: it pays from its address.
    let (status, _, _) = srv.get("/api/v1/symbols", Some("someone-else")).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn openapi_documents_every_rest_route() {
    let srv = util::start(util::config()).await;
    let (status, _, doc) = srv.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    let routes = [
        ("/api/v1/symbols", "get"),
        ("/api/v1/ticks/{symbol}", "get"),
        ("/api/v1/bars/{symbol}", "get"),
        ("/api/v1/indicators/{symbol}", "get"),
        ("/api/v1/book/{symbol}", "get"),
        ("/api/v1/ticker", "get"),
        ("/api/v1/ticker/{symbol}", "get"),
        ("/api/v1/predictions/{symbol}", "get"),
        ("/api/v1/portfolio", "get"),
        ("/api/v1/portfolio/trades", "post"),
        ("/api/v1/auth/token", "post"),
    ];
    for (path, method) in routes {
        assert!(paths[path][method].is_object(), "{path} {method} missing");
    }
    assert_eq!(paths.len(), routes.len(), "undocumented or stale paths");
    // And the documented routes are the served ones: each answers something but 404 not_found.
    for (path, method) in routes {
        let p = path.replace("{symbol}", "AAPL");
        let (_, _, body) = if method == "get" {
            srv.get(&p, None).await
        } else {
            srv.post(&p, None, &[], b"{}").await
        };
        assert_ne!(body["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn readyz_metrics_and_latency_histogram() {
    for db in util::backends().await {
        let srv = started(&db).await;
        let (status, _, body) = srv.get("/readyz", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["database"]["ok"], true);
        assert_eq!(body["checks"]["database"]["backend"], db.backend);
        srv.ingest_n("AAPL", 5, 0.0).await;
        srv.wait_persisted(5).await;
        srv.get("/api/v1/ticks/AAPL", None).await;
        let (_, _, text) = util::http(srv.addr, "GET", "/metrics", &[], b"").await;
        let text = String::from_utf8(text).unwrap();
        for needle in [
            "tickcast_db_rows_written_total 5\n",
            "tickcast_db_backlog 0\n",
            "tickcast_db_rows_dropped_total 0\n",
            "tickcast_http_request_seconds_count",
            "tickcast_db_write_batch_seconds_count",
        ] {
            assert!(text.contains(needle), "{needle} missing");
        }
        assert!(srv.server().metrics().http_request_seconds.count() >= 1);
    }
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_problems() {
    let mut c = util::config();
    c.api.max_body_bytes = 512;
    let srv = util::start(c).await;
    let (_, key) = srv.server().store().create_user("alice").await.unwrap();
    let big = vec![b' '; 4096];
    let got = srv
        .post("/api/v1/portfolio/trades", Some(&key), &[], &big)
        .await;
    check_problem("oversized", &got, 413, "body_too_large");
    let got = srv
        .post("/api/v1/portfolio/trades", Some(&key), &[], b"{not json")
        .await;
    check_problem("malformed", &got, 400, "malformed_body");
}
