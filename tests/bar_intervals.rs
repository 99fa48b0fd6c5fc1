//! Bars at every interval, end to end: a replayed file's bars on the `bars.<interval>` channels
//! (resumed from the start, snapshot, live), stored as they close and served by `/bars` bar for
//! bar, equal to what `tickcast import` builds from the same file, and the latest N by
//! `order=desc`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tickcast::config::Config;

use crate::util::{self, TestDb, TestServer};

const MS: i64 = 1_000_000;
const MIN_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// 2026-11-01T22:00:00Z, ms: the file crosses 4 h boundaries and UTC midnight.
const START_MS: i64 = 1_793_570_400_000;
/// The closing trades, at UTC midnight three days on (so the windows they open, at every
/// interval, start there): every bar of the file closes by the exchange's clock.
const END_MS: i64 = START_MS + 2 * HOUR_MS + 3 * DAY_MS;
const SYMBOLS: [&str; 2] = ["AAA", "BBB"];
const INTERVALS: [&str; 7] = ["1s", "1m", "5m", "15m", "1h", "4h", "1d"];

/// 26 hours of both symbols, a trade of each every 20 s (BBB 7 s after AAA), then one trade each
/// at [`END_MS`].
fn history_file(dir: &Path) -> std::path::PathBuf {
    let mut csv = String::from("ts,symbol,price,size,side\n");
    for i in 0..(26 * 180) {
        for (k, symbol) in SYMBOLS.iter().enumerate() {
            let ts = (START_MS + i * 20_000 + k as i64 * 7_000) * MS;
            let price = 100.0 + ((i as usize * 7919 + k * 13) % 400) as f64 / 8.0;
            let size = 1 + (i % 5);
            let side = ["buy", "sell"][(i as usize + k) % 2];
            csv.push_str(&format!("{ts},{symbol},{price},{size},{side}\n"));
        }
    }
    for symbol in SYMBOLS {
        csv.push_str(&format!("{},{symbol},100,1,buy\n", END_MS * MS));
    }
    let path = dir.join("day.csv");
    std::fs::write(&path, csv).expect("write the file");
    path
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tickcast-bar-intervals-{}-{}",
        std::process::id(),
        tickcast::model::now_ns() % 1_000_000_007
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Every stored bar of `symbol` at `interval` in `[from_ms, to_ms)`, oldest first, following
/// `next_from` over pages.
async fn all_bars(
    srv: &TestServer,
    symbol: &str,
    interval: &str,
    from_ms: i64,
    to_ms: i64,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut from = from_ms;
    loop {
        let path =
            format!("/api/v1/bars/{symbol}?interval={interval}&from={from}&to={to_ms}&limit=1000");
        let (status, _, body) = srv.get(&path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        out.extend(body["bars"].as_array().expect("bars").iter().cloned());
        match body["next_from"].as_i64() {
            Some(next) => from = next,
            None => return out,
        }
    }
}

/// The live server: the file through the replay feed at speed 0, the pipeline and the
/// recorder, with rings deep enough to resume every `bars.5m` event from the first.
async fn live_server(db: &TestDb, file: &Path) -> TestServer {
    let mut cfg: Config = db.config();
    cfg.feeds.replay.enabled = true;
    cfg.feeds.replay.path = file.to_path_buf();
    cfg.feeds.replay.speed = 0.0;
    cfg.ring.capacity = 4096;
    cfg.ring.long_bar_capacity = 4096;
    util::start(cfg).await
}

/// Runs `tickcast import` of `file` into `db` (the binary, default config: every interval).
async fn import(db: &TestDb, file: &Path) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("import")
        .arg(file)
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bar's values, from a `bar` event or a `/bars` row (the wire writes a whole `volume` as an
/// integer, REST as a float: compared as numbers).
fn as_rest(e: &Value) -> Value {
    json!({"start": e["start"], "open": e["open"], "high": e["high"], "low": e["low"],
        "close": e["close"], "volume": e["volume"], "trades": e["trades"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interval_is_streamed_stored_and_imported_alike() {
    let dir = temp_dir();
    let file = history_file(&dir);
    for backend in ["sqlite", "postgres"] {
        let (live_db, import_db) = match backend {
            "sqlite" => (TestDb::sqlite(), TestDb::sqlite()),
            _ => (TestDb::postgres().await, TestDb::postgres().await),
        };
        let mut live = live_server(&live_db, &file).await;
        import(&import_db, &file).await;
        let mut imported = util::start(import_db.config()).await;

        // 1. Import and live replay store the same bars at every interval (UTC-aligned: the
        //    first 4 h and 1 d bars start before the file, at 20:00 and midnight).
        let from = START_MS - DAY_MS;
        for symbol in SYMBOLS {
            for interval in INTERVALS {
                let want = all_bars(&imported, symbol, interval, from, END_MS).await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                let mut got = all_bars(&live, symbol, interval, from, END_MS).await;
                while got != want && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    got = all_bars(&live, symbol, interval, from, END_MS).await;
                }
                assert_eq!(got, want, "{backend} {symbol} {interval}");
                let starts: Vec<i64> = want.iter().map(|b| b["start"].as_i64().unwrap()).collect();
                let (len_ms, n) = match interval {
                    "1d" => (DAY_MS, 2),
                    "4h" => (4 * HOUR_MS, 7),
                    "1h" => (HOUR_MS, 26),
                    "15m" => (15 * MIN_MS, 26 * 4),
                    _ => (1, starts.len()),
                };
                assert_eq!(starts.len(), n, "{backend} {symbol} {interval}: {starts:?}");
                assert!(starts.iter().all(|s| s % len_ms == 0), "{interval} aligned");
            }
        }
        let five_min: Vec<Value> = all_bars(&live, "AAA", "5m", START_MS, END_MS)
            .await
            .iter()
            .map(as_rest)
            .collect();
        assert_eq!(five_min.len(), 26 * 12, "{backend}");

        // 2. The `bars.5m` stream, resumed from its first event, equals `/bars?interval=5m`
        //    bar for bar; its seqs are contiguous.
        let mut c = live.connect().await;
        c.subscribe(json!({"op":"subscribe","id":1,"channels":["bars.5m:AAA"],
            "from":{"bars.5m:AAA":0}}))
            .await;
        let mut stream = Vec::new();
        let mut seq = 0;
        let mut take = |e: Value, stream: &mut Vec<Value>| {
            assert_eq!(e["type"], "bar", "{e}");
            assert_eq!(e["ch"], "bars.5m:AAA");
            seq += 1;
            assert_eq!(e["seq"], seq, "{e}");
            if e["final"] == true {
                stream.push(as_rest(&e));
            }
        };
        // As many final bars as REST has (each within `util::WAIT`: a loaded machine may pause
        // the replay longer than any quiet window), then whatever follows at once.
        while stream.len() < five_min.len() {
            take(c.event().await, &mut stream);
        }
        while let Some(util::Got::Event(e)) = c.next_within(Duration::from_millis(300)).await {
            take(e, &mut stream);
        }
        assert_eq!(stream, five_min, "{backend}: the stream and REST agree");

        // 3. A new channel's snapshot: the newest final 1 h bar in it is REST's latest.
        let mut c = live.connect().await;
        c.subscribe(json!({"op":"subscribe","id":2,"channels":["bars.1h:BBB"],"snapshot":3}))
            .await;
        let snap = c.event_of("snapshot").await;
        assert_eq!(snap["ch"], "bars.1h:BBB", "{snap}");
        let data = snap["data"].as_array().expect("data");
        assert!(!data.is_empty() && data.len() <= 3, "{snap}");
        let newest_final = data.iter().rev().find(|e| e["final"] == true).map(as_rest);
        let path = format!("/api/v1/bars/BBB?interval=1h&to={END_MS}&limit=1&order=desc");
        let (_, _, latest) = live.get(&path, None).await;
        assert_eq!(
            newest_final.as_ref(),
            latest["bars"].get(0),
            "{snap} {latest}"
        );

        // 4. Live: a later trade closes the open 15 m bar of AAA, on `bars.15m:*`.
        let mut c = live.connect().await;
        c.subscribe(json!({"op":"subscribe","id":3,"channels":["bars.15m:*"],"snapshot":0}))
            .await;
        let later = (END_MS + 20 * MIN_MS) * MS;
        let (status, body) = live
            .ingest(json!([{"symbol":"AAA","price":101.0,"size":2,"side":"sell","ts":later}]))
            .await;
        assert_eq!(status, 202, "{body}");
        let closed = loop {
            let e = c.event_of("bar").await;
            if e["ch"] == "bars.15m:AAA" && e["final"] == true {
                break e;
            }
        };
        assert_eq!(closed["start"], END_MS - END_MS % (15 * MIN_MS), "{closed}");
        assert_eq!(
            (closed["open"].as_f64(), closed["trades"].as_i64()),
            (Some(100.0), Some(1))
        );

        live.shutdown().await;
        imported.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_intervals_are_streamed() {
    let mut cfg = util::config();
    cfg.pipeline.bar_intervals = vec!["1s".into(), "1m".into(), "1h".into()];
    let srv = util::start(cfg).await;
    srv.ingest_n("MSFT", 1, 10.0).await;
    srv.wait_seq("MSFT", 1).await;
    let mut c = srv.connect().await;
    c.send(json!({"op":"list","id":1})).await;
    let list = c.event_of("list").await;
    assert_eq!(
        list["kinds"],
        json!([
            "ticks",
            "bars.1s",
            "bars.1m",
            "bars.1h",
            "indicators",
            "book",
            "ticker",
            "bbo",
            "predictions"
        ]),
        "{list}"
    );
    c.send(json!({"op":"subscribe","id":2,"channels":["bars.5m:MSFT"]}))
        .await;
    let err = c.event_of("error").await;
    assert_eq!(
        (&err["id"], &err["code"]),
        (&json!(2), &json!("unknown_channel")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("pipeline.bar_intervals"),
        "{err}"
    );
    c.subscribe(json!({"op":"subscribe","id":3,"channels":["bars.1h:MSFT", "bars.1h:*"]}))
        .await;
}
