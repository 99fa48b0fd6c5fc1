//! `ticker:` channels and `GET /api/v1/ticker` end to end (docs/PROTOCOL.md "Tickers"): first
//! events, snapshot, resume, REST agreeing with the channel, and a replayed file's 24 h ticker
//! equal to the one this test computes from the file itself.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{self, TestServer};

const MINUTE_MS: i64 = 60_000;

fn now_ms() -> i64 {
    tickcast::model::now_ns() / 1_000_000
}

async fn rest_ticker(srv: &TestServer, symbol: &str) -> (u16, Value) {
    let (status, _, body) = srv.get(&format!("/api/v1/ticker/{symbol}"), None).await;
    (status, body)
}

/// The statistics fields of a `ticker` event or a REST ticker.
const FIELDS: [&str; 11] = [
    "open",
    "high",
    "low",
    "last",
    "volume",
    "quote_volume",
    "change",
    "change_pct",
    "trades",
    "open_time",
    "close_time",
];

/// The same numbers (REST writes a whole volume as `8.0`, the channel as `8`).
fn same_stats(a: &Value, b: &Value) {
    for k in FIELDS {
        let (x, y) = (a[k].as_f64(), b[k].as_f64());
        assert!(x.is_some() && x == y, "{k}: {a} vs {b}");
    }
    for k in ["seq", "ts"] {
        assert!(a[k].is_i64() && a[k] == b[k], "{k}: {a} vs {b}");
    }
}

#[tokio::test]
async fn ticker_channels_first_events_snapshot_resume_and_rest() {
    let srv = util::start(util::config()).await;
    let mut live = srv.connect().await;
    live.subscribe(json!({"op":"subscribe","id":1,"channels":["ticker:*"]}))
        .await;
    let t0 = now_ms() - 5_000;
    let ticks = json!([
        {"symbol":"TKA","price":10.0,"size":2,"side":"buy","ts": t0 * 1_000_000},
        {"symbol":"TKA","price":12.5,"size":1,"side":"sell","ts": (t0 + 10) * 1_000_000},
        {"symbol":"TKA","price":9.0,"size":4,"side":"buy","ts": (t0 + 20) * 1_000_000},
    ]);
    assert_eq!(srv.ingest(ticks).await.0, 202);
    let first = live.event_of("ticker").await;
    assert_eq!(first["ch"], "ticker:TKA");
    assert_eq!(first["seq"], 1);
    assert_eq!(
        (
            &first["open"],
            &first["high"],
            &first["low"],
            &first["last"]
        ),
        (&json!(10.0), &json!(12.5), &json!(9.0), &json!(9.0))
    );
    assert_eq!(first["volume"], 7);
    assert_eq!(first["quote_volume"], json!(20.0 + 12.5 + 36.0));
    assert_eq!(first["trades"], 3);
    assert_eq!(first["change"], json!(-1.0));
    assert_eq!(first["change_pct"], json!(-10.0));
    assert_eq!(first["close_time"], t0 + 20);
    assert_eq!(
        first["open_time"],
        (t0 + 20).div_euclid(MINUTE_MS) * MINUTE_MS - 1_440 * MINUTE_MS
    );

    // A new subscriber's snapshot is the latest ticker (the whole state).
    let mut other = srv.connect().await;
    other
        .subscribe(json!({"op":"subscribe","id":2,"channels":["ticker:TKA"]}))
        .await;
    let snap = other.event_of("snapshot").await;
    assert_eq!(snap["seq"], 1, "{snap}");
    assert_eq!(snap["data"].as_array().map(Vec::len), Some(1), "{snap}");
    assert_eq!(snap["data"][0], first);

    // One more trade: the next ticker, seq 2, to both.
    let more =
        json!([{"symbol":"TKA","price":11.0,"size":1,"side":"buy","ts": (t0 + 30) * 1_000_000}]);
    assert_eq!(srv.ingest(more).await.0, 202);
    let second = live.event_of("ticker").await;
    assert_eq!(
        (second["seq"].clone(), second["trades"].clone()),
        (json!(2), json!(4))
    );
    assert_eq!(second["last"], json!(11.0));
    assert_eq!(other.event_of("ticker").await, second);

    // Resume from seq 1: the missed ticker replayed, no snapshot.
    let mut resumed = srv.connect().await;
    resumed
        .subscribe(
            json!({"op":"subscribe","id":3,"channels":["ticker:TKA"],"from":{"ticker:TKA":1}}),
        )
        .await;
    let replayed = resumed.event().await;
    assert_eq!(replayed, second);

    // REST answers the same fields as the latest event.
    let (status, body) = rest_ticker(&srv, "TKA").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["symbol"], "TKA");
    same_stats(&body, &second);
    let (status, _, all) = srv.get("/api/v1/ticker", None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["tickers"].as_array().map(Vec::len), Some(1), "{all}");
    same_stats(&all["tickers"][0], &second);
    let (status, body) = rest_ticker(&srv, "NOPE").await;
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("unknown_symbol"))
    );

    // `list` names the new kinds.
    live.send(json!({"op":"list","id":9})).await;
    let list = live.event_of("list").await;
    let kinds: Vec<&str> = list["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        kinds.contains(&"ticker") && kinds.contains(&"bbo"),
        "{list}"
    );
}

#[tokio::test]
async fn a_known_symbol_without_trades_in_the_pipeline_has_no_ticker_yet() {
    let mut c = util::config();
    c.pipeline.ticker = false;
    let srv = util::start(c).await;
    srv.ingest_n("QUIET", 3, 10.0).await;
    srv.wait_seq("QUIET", 3).await;
    let mut client = srv.connect().await;
    client
        .subscribe(json!({"op":"subscribe","channels":["ticker:QUIET"]}))
        .await;
    let snap = client.event_of("snapshot").await;
    assert_eq!(
        (snap["seq"].clone(), snap["data"].clone()),
        (json!(0), json!([]))
    );
    // With `pipeline.ticker = false` nothing is computed: no event, and REST says so.
    assert!(client.silent_for(Duration::from_millis(1_500)).await);
    let (status, body) = rest_ticker(&srv, "QUIET").await;
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("not_found")),
        "{body}"
    );
}

/// A deterministic file over 25.5 hours: two symbols, a trade every 30 to 90 s, prices a random
/// walk in cents, integer sizes; rows in time order.
fn day_file(base_ms: i64) -> (String, Vec<(i64, &'static str, f64, f64)>) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut rows = Vec::new();
    for (k, sym) in ["DAY", "DAY.B"].into_iter().enumerate() {
        let mut t = base_ms + k as i64 * 11;
        let mut cents = 5_000 + 2_000 * k as i64;
        while t < base_ms + 25 * 3_600_000 + 1_800_000 {
            cents = (cents + next(61) as i64 - 30).max(100);
            rows.push((t, sym, cents as f64 / 100.0, (1 + next(20)) as f64));
            t += 30_000 + next(60_001) as i64;
        }
    }
    rows.sort_by_key(|r| r.0);
    let mut text = String::from("ts,symbol,price,size,side\n");
    for (t, sym, price, size) in &rows {
        text.push_str(&format!("{t},{sym},{price},{size},buy\n"));
    }
    (text, rows)
}

/// The 24 h ticker of `symbol` as docs/PROTOCOL.md defines it, straight from the file's rows.
fn expected(rows: &[(i64, &str, f64, f64)], symbol: &str) -> Value {
    let own: Vec<_> = rows.iter().filter(|r| r.1 == symbol).collect();
    let newest = own.iter().map(|r| r.0).max().unwrap();
    let open_time = (newest.div_euclid(MINUTE_MS) - 1_440) * MINUTE_MS;
    let window: Vec<_> = own.iter().filter(|r| r.0 >= open_time).collect();
    let open = window.iter().min_by_key(|r| r.0).unwrap().2;
    let last = window.iter().max_by_key(|r| r.0).unwrap().2;
    let high = window.iter().map(|r| r.2).fold(f64::MIN, f64::max);
    let low = window.iter().map(|r| r.2).fold(f64::MAX, f64::min);
    let volume: f64 = window.iter().map(|r| r.3).sum();
    let quote: f64 = window.iter().map(|r| r.2 * r.3).sum();
    json!({"open": open, "high": high, "low": low, "last": last, "volume": volume,
        "quote_volume": quote, "change": last - open, "change_pct": (last - open) / open * 100.0,
        "trades": window.len(), "open_time": open_time, "close_time": newest})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_days_ticker_equals_the_one_computed_from_the_file() {
    let base = now_ms() - 3 * 86_400_000;
    let (text, rows) = day_file(base);
    let dir = std::env::temp_dir().join(format!("tickcast-e2e-ticker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("day.csv");
    std::fs::write(&path, &text).unwrap();
    let mut cfg = util::config();
    cfg.feeds.replay.enabled = true;
    cfg.feeds.replay.path = path;
    cfg.feeds.replay.speed = 0.0;
    cfg.ring.capacity = 4096;
    let srv = util::start(cfg).await;
    for symbol in ["DAY", "DAY.B"] {
        let want = expected(&rows, symbol);
        // The window drops the file's first hour and a half: the test covers the roll.
        assert!(
            want["trades"].as_u64().unwrap() < rows.iter().filter(|r| r.1 == symbol).count() as u64,
            "{want}"
        );
        let mut got = Value::Null;
        util::wait_until(&format!("{symbol}'s last ticker"), util::WAIT, async || {
            got = rest_ticker(&srv, symbol).await.1;
            got["close_time"] == want["close_time"] && got["trades"] == want["trades"]
        })
        .await;
        for k in FIELDS {
            let (g, w) = (got[k].as_f64().unwrap(), want[k].as_f64().unwrap());
            // Sums are added per minute, then over minutes: the same up to rounding.
            assert!(
                (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{symbol} {k}: {g} vs {w}"
            );
        }
        // The channel's snapshot is the same ticker.
        let mut c = srv.connect().await;
        c.subscribe(json!({"op":"subscribe","channels":[format!("ticker:{symbol}")]}))
            .await;
        let snap = c.event_of("snapshot").await;
        same_stats(&snap["data"][0], &got);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
