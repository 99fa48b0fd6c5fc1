//! `tickcast import`, end to end: the built binary loads files into a real store (SQLite and
//! PostgreSQL), and a real server then serves what it stored.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tickcast::config::Config;
use tickcast::store::{Db, Store};

use crate::util::{self, TestDb};

/// 2026-11-02T10:00:00Z, ns.
const T0: i64 = 1_793_613_600_000_000_000;
const MS: i64 = 1_000_000;

/// A directory of its own for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tickcast-import-{name}-{}-{}",
        std::process::id(),
        tickcast::model::now_ns() % 1_000_000_007
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// What one `tickcast import` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// A number of the summary, by its label (`ticks stored`).
    fn count(&self, label: &str) -> u64 {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in the summary: {}", self.stdout))
    }
}

async fn import(db: &TestDb, files: &[&Path]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("import")
        .args(files)
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .expect("runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An import that must succeed.
async fn import_ok(db: &TestDb, files: &[&Path]) -> Run {
    let run = import(db, files).await;
    assert_eq!(
        run.code,
        Some(0),
        "{}: {}{}",
        db.backend,
        run.stdout,
        run.stderr
    );
    run
}

async fn counts(db: &TestDb) -> (i64, i64) {
    let store = Store::open(&db.config().database).expect("store");
    let ticks = store.count_ticks(None).await.expect("count ticks");
    let sql = "SELECT COUNT(*) FROM bars";
    let (bars,): (i64,) = match store.db() {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await,
    }
    .expect("count bars");
    store.close().await;
    (ticks, bars)
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

/// `n` ticks of three symbols, `step_ms` apart, in time order, as CSV and as JSONL lines; the
/// 8th and 9th are the same trade twice (same time, price, size and side).
fn history(n: usize, step_ms: i64) -> (String, Vec<String>) {
    let mut csv = String::from("ts,symbol,price,size,side\n");
    let mut jsonl = Vec::new();
    for i in 0..n {
        let i = if i == 9 { 8 } else { i };
        let ts = T0 + i as i64 * step_ms * MS;
        let symbol = ["AAA", "BBB", "CCC"][i % 3];
        let price = 100.0 + ((i * 7919) % 400) as f64 / 8.0;
        let size = 1.0 + (i % 5) as f64;
        let side = ["buy", "sell", ""][i % 3];
        csv.push_str(&format!("{ts},{symbol},{price},{size},{side}\n"));
        let side = if side.is_empty() {
            Value::Null
        } else {
            side.into()
        };
        jsonl.push(
            serde_json::json!({"ts": ts, "symbol": symbol, "price": price, "size": size, "side": side})
                .to_string(),
        );
    }
    (csv, jsonl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_reported_by_line_and_the_good_ones_stored() {
    let dir = temp_dir("bad");
    // A typical vendor export: RFC 3339 times, `qty`, sides in capitals or missing.
    let file = dir.join("export.csv");
    std::fs::write(
        &file,
        "timestamp,symbol,price,qty,side\n\
         2026-11-02T10:00:00.000Z,AAPL,189.5,100,buy\n\
         2026-11-02T10:00:00.250Z,MSFT,410.25,5,SELL\n\
         2026-11-02T10:00:00.500Z,AAPL,-1,100,buy\n\
         not-a-time,AAPL,189.6,100,buy\n\
         \n\
         2026-11-02T10:00:01.000Z,aapl lower,189.6,1,buy\n\
         2026-11-02T10:00:01.250Z,AAPL,189.7,100,\n\
         2026-11-02T10:00:01.500Z,AAPL,189.8,100,hold\n\
         2026-11-02T10:00:02.000Z,AAPL,189.9,100,b\n",
    )
    .unwrap();
    for db in util::backends().await {
        let run = import_ok(&db, &[&file]).await;
        assert_eq!(run.count("records read"), 8, "{}", run.stdout);
        assert_eq!(run.count("ticks stored"), 4, "{}", run.stdout);
        assert_eq!(run.count("rejected"), 4, "{}", run.stdout);
        // Each rejected line by its physical line number (line 6 is blank) and reason.
        for (line, reason) in [(4, "price"), (5, "ts"), (7, "symbol"), (9, "side")] {
            let at = format!("export.csv:{line}: ");
            let reported = run.stdout.lines().find(|l| l.contains(&at));
            assert!(
                reported.is_some_and(|l| l.contains(reason)),
                "{}: line {line} ({reason}) in {}",
                db.backend,
                run.stdout
            );
        }
        // 1 s bars: AAPL at :00, :01, :02, MSFT at :00; then one bar per symbol at each of
        // 1m, 5m, 15m, 1h, 4h, 1d (every interval of the default `pipeline.bar_intervals`).
        assert_eq!(run.count("bars written"), 4 + 6 * 2, "{}", run.stdout);
        assert_eq!(counts(&db).await, (4, 16), "{}", db.backend);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_files_and_a_failing_store_have_their_exit_codes() {
    let dir = temp_dir("exit");
    let db = TestDb::sqlite();
    let missing = dir.join("missing.csv");
    let run = import(&db, &[&missing]).await;
    assert_eq!(run.code, Some(66), "{}", run.stderr);
    assert!(run.stderr.contains("missing.csv"), "{}", run.stderr);
    // A gzip file cut short is a file that cannot be read, not a bad line.
    let (csv, _) = history(2000, 10);
    let cut = dir.join("cut.csv.gz");
    let whole = gzip(&csv);
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let run = import(&db, &[&cut]).await;
    assert_eq!(run.code, Some(66), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("cut.csv.gz"), "{}", run.stderr);
    // Nothing listening there: the store fails.
    let good = dir.join("good.csv");
    std::fs::write(&good, &csv).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("import")
        .arg(&good)
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:9/none")
        .env("TICKCAST_DATABASE__TIMEOUT_MS", "300")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reimport_stores_nothing_twice_whatever_the_compression_or_split() {
    let dir = temp_dir("again");
    let (csv, jsonl) = history(3000, 97);
    let plain = dir.join("h.csv");
    std::fs::write(&plain, &csv).unwrap();
    let gz = dir.join("h.csv.gz");
    std::fs::write(&gz, gzip(&csv)).unwrap();
    // The same history as JSONL, split in two at another place, zstd and plain.
    let (a, b) = jsonl.split_at(1234);
    let part1 = dir.join("p1.jsonl.zst");
    let text1 = a.join("\n") + "\n";
    std::fs::write(
        &part1,
        ruzstd::encoding::compress_to_vec(
            text1.as_bytes(),
            ruzstd::encoding::CompressionLevel::Fastest,
        ),
    )
    .unwrap();
    let part2 = dir.join("p2.jsonl");
    std::fs::write(&part2, b.join("\n") + "\n").unwrap();
    for db in util::backends().await {
        let first = import_ok(&db, &[&plain]).await;
        assert_eq!(first.count("ticks stored"), 3000, "{}", first.stdout);
        let stored = counts(&db).await;
        assert_eq!(
            stored.0, 3000,
            "{}: the repeated trade is stored twice",
            db.backend
        );
        assert_eq!(
            stored.1 as u64,
            first.count("bars written"),
            "{}",
            db.backend
        );
        for files in [vec![gz.as_path()], vec![&part1, &part2], vec![&plain]] {
            let again = import_ok(&db, &files).await;
            assert_eq!(again.count("records read"), 3000, "{files:?}");
            assert_eq!(again.count("ticks stored"), 0, "{}: {files:?}", db.backend);
            assert_eq!(again.count("already present"), 3000, "{files:?}");
            assert_eq!(again.count("bars written"), 0, "{}: {files:?}", db.backend);
            assert_eq!(counts(&db).await, stored, "{}: {files:?}", db.backend);
        }
    }
}

/// Two imports of the same file at once: whichever copies first, the other meets its rows
/// (PostgreSQL: the direct `COPY` of a new range hits the identity index and falls back to the
/// staging table) and every tick is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_imports_of_the_same_file_at_once_store_it_once() {
    let dir = temp_dir("race");
    let (csv, _) = history(20_000, 13);
    let file = dir.join("h.csv");
    std::fs::write(&file, &csv).unwrap();
    for db in util::backends().await {
        // Migrated first, so the two runs do not race to create the schema.
        Store::open(&db.config().database)
            .expect("store")
            .migrate()
            .await
            .expect("migrate");
        let files = [file.as_path()];
        let (a, b) = tokio::join!(import_ok(&db, &files), import_ok(&db, &files));
        let stored = a.count("ticks stored") + b.count("ticks stored");
        assert_eq!(stored, 20_000, "{}: {}\n{}", db.backend, a.stdout, b.stdout);
        assert_eq!(
            a.count("already present") + b.count("already present"),
            20_000,
            "{}",
            db.backend
        );
        assert_eq!(counts(&db).await.0, 20_000, "{}", db.backend);
    }
}

/// Every stored bar, in identity order.
async fn stored_bars(db: &TestDb) -> Vec<(String, i64, i64, f64, f64, f64, f64, f64, i64)> {
    let store = Store::open(&db.config().database).expect("store");
    let sql = "SELECT symbol, interval_ns, ts, open, high, low, close, volume, trades FROM bars \
               ORDER BY symbol, interval_ns, ts, epoch";
    let rows = match store.db() {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await,
    }
    .expect("read bars");
    store.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_imported_in_two_runs_gets_the_bars_of_one_run() {
    let dir = temp_dir("split");
    let (csv, _) = history(3000, 97);
    let lines: Vec<&str> = csv.lines().collect();
    let whole = dir.join("whole.csv");
    std::fs::write(&whole, &csv).unwrap();
    // Split inside a second and inside a minute of every symbol (ticks are 97 ms apart).
    let header = lines[0];
    let (first, second) = lines[1..].split_at(1500);
    let part1 = dir.join("part1.csv");
    std::fs::write(&part1, format!("{header}\n{}\n", first.join("\n"))).unwrap();
    let part2 = dir.join("part2.csv");
    std::fs::write(&part2, format!("{header}\n{}\n", second.join("\n"))).unwrap();
    for backend in ["sqlite", "postgres"] {
        let (one, two) = match backend {
            "sqlite" => (TestDb::sqlite(), TestDb::sqlite()),
            _ => (TestDb::postgres().await, TestDb::postgres().await),
        };
        import_ok(&one, &[&whole]).await;
        import_ok(&two, &[&part1]).await;
        import_ok(&two, &[&part2]).await;
        let want = stored_bars(&one).await;
        assert!(want.len() > 100, "{}", want.len());
        assert_eq!(stored_bars(&two).await, want, "{backend}");
        // And again in the other order: the bars do not depend on which part came last.
        let three = match backend {
            "sqlite" => TestDb::sqlite(),
            _ => TestDb::postgres().await,
        };
        import_ok(&three, &[&part2]).await;
        import_ok(&three, &[&part1]).await;
        assert_eq!(stored_bars(&three).await, want, "{backend}, reversed");
    }
}

/// `/bars` of `symbol` at `interval` over `[from_ms, to_ms)`.
async fn bars(
    srv: &util::TestServer,
    symbol: &str,
    interval: &str,
    from_ms: i64,
    to_ms: i64,
) -> Value {
    let path =
        format!("/api/v1/bars/{symbol}?interval={interval}&from={from_ms}&to={to_ms}&limit=1000");
    let (status, _, body) = srv.get(&path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["bars"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_bars_equal_the_live_pipelines_for_the_same_file() {
    let dir = temp_dir("bars");
    // Four minutes of three symbols, then one trade each an hour later, which closes (in the
    // live pipeline, by the exchange's clock) every bar before it.
    let (mut csv, _) = history(1800, 131);
    let end = T0 + 3_600_000 * MS;
    for (i, s) in ["AAA", "BBB", "CCC"].iter().enumerate() {
        csv.push_str(&format!("{},{s},100,1,buy\n", end + i as i64 * MS));
    }
    let file = dir.join("live.csv");
    std::fs::write(&file, &csv).unwrap();
    let (from, to) = (T0 / MS, end / MS);
    for backend in ["sqlite", "postgres"] {
        let (live_db, import_db) = match backend {
            "sqlite" => (TestDb::sqlite(), TestDb::sqlite()),
            _ => (TestDb::postgres().await, TestDb::postgres().await),
        };
        // The live path: the replay feed at speed 0, the pipeline, the recorder.
        let mut cfg: Config = live_db.config();
        cfg.feeds.replay.enabled = true;
        cfg.feeds.replay.path = file.clone();
        cfg.feeds.replay.speed = 0.0;
        let mut live = util::start(cfg).await;
        import_ok(&import_db, &[&file]).await;
        let mut imported = util::start(import_db.config()).await;
        for symbol in ["AAA", "BBB", "CCC"] {
            for interval in ["1s", "1m"] {
                let want = bars(&imported, symbol, interval, from, to).await;
                assert!(want.as_array().is_some_and(|b| b.len() >= 4), "{want}");
                // The live recorder stores bars as the pipeline closes them: wait (bounded).
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                let mut got = bars(&live, symbol, interval, from, to).await;
                while got != want && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    got = bars(&live, symbol, interval, from, to).await;
                }
                assert_eq!(got, want, "{backend} {symbol} {interval}");
            }
        }
        live.shutdown().await;
        imported.shutdown().await;
    }
}
