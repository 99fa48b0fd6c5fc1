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

/// The load (`load:`) line of the summary.
fn load_line(run: &Run) -> &str {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("load:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no load line in the summary: {}", run.stdout))
}

/// Every index of `ticks` and `bars` (SQLite: name and SQL; PostgreSQL: each partition's index
/// count and the parent's definitions), and the tables the store holds.
async fn schema(db: &TestDb) -> Vec<String> {
    let store = Store::open(&db.config().database).expect("store");
    let rows: Vec<(String,)> = match store.db() {
        Db::Sqlite(p) => sqlx::query_as(
            "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master \
             WHERE tbl_name IN ('ticks', 'bars') ORDER BY type, name",
        )
        .fetch_all(p)
        .await,
        Db::Postgres(p) => sqlx::query_as(
            "SELECT c.relname::text || ' ' || (SELECT COUNT(*) FROM pg_index i \
             WHERE i.indrelid = c.oid)::text || ' ' || COALESCE(pg_get_expr(c.relpartbound, c.oid), '') \
             FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace \
             AND (c.relname LIKE 'ticks%' OR c.relname LIKE 'bars%' OR c.relname LIKE 'tickcast_import%') \
             ORDER BY 1",
        )
        .fetch_all(p)
        .await,
    }
    .expect("read the catalog");
    store.close().await;
    rows.into_iter().map(|(r,)| r).collect()
}

/// An empty store is loaded without indexes and gets every one of them back; the same file
/// named twice in one run is still stored once (its duplicates removed before the unique index
/// is built), and a later import goes into the indexed tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_is_loaded_without_indexes_and_gets_them_all_back() {
    let dir = temp_dir("fresh");
    let (csv, _) = history(3000, 97);
    let file = dir.join("h.csv");
    std::fs::write(&file, &csv).unwrap();
    for db in util::backends().await {
        Store::open(&db.config().database)
            .expect("store")
            .migrate()
            .await
            .expect("migrate");
        let before = schema(&db).await;
        let run = import_ok(&db, &[&file, &file]).await;
        assert_eq!(run.count("ticks stored"), 3000, "{}", run.stdout);
        assert_eq!(run.count("already present"), 3000, "{}", run.stdout);
        let load = load_line(&run);
        let stored = counts(&db).await;
        assert_eq!(stored.0, 3000, "{}", db.backend);
        assert_eq!(stored.1 as u64, run.count("bars written"), "{}", db.backend);
        let after = schema(&db).await;
        match db.backend {
            "sqlite" => {
                assert!(load.starts_with("empty store"), "{load}");
                assert_eq!(after, before, "every index back, as it was");
            }
            _ => {
                // 2026-11-02: one new day for ticks and one for bars, attached under the day's
                // name with the parent's indexes (primary key, identity, and the rest), and no
                // standalone table left.
                assert_eq!(load, "2 new day partitions, indexed after the load");
                let parent = |name: &str| {
                    let row = before.iter().find(|r| r.starts_with(&format!("{name} ")));
                    row.and_then(|r| r.split(' ').nth(1)).unwrap().to_owned()
                };
                for name in ["ticks", "bars"] {
                    let want = format!(
                        "{name}_20261102 {} FOR VALUES FROM ('{}') TO ('{}')",
                        parent(name),
                        1_793_577_600_000_000_000i64,
                        1_793_577_600_000_000_000i64 + 86_400_000_000_000
                    );
                    assert!(after.contains(&want), "{want} in {after:?}");
                }
                assert!(
                    !after.iter().any(|r| r.starts_with("tickcast_import")),
                    "{after:?}"
                );
            }
        }
        // The store as the live path reads it: the rows, by the indexes.
        let again = import_ok(&db, &[&file]).await;
        assert_eq!(again.count("ticks stored"), 0, "{}", again.stdout);
        assert_eq!(again.count("bars written"), 0, "{}", again.stdout);
        assert_eq!(load_line(&again), "into the indexed tables");
        assert_eq!(counts(&db).await, stored, "{}", db.backend);
    }
}

/// PostgreSQL: a new day whose rows the DEFAULT partition already holds (written before the day
/// had a partition) cannot be attached; the staged rows go in through the identity instead, and
/// nothing is lost or left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_day_with_rows_in_the_default_partition_is_moved_not_attached() {
    let dir = temp_dir("strays");
    let (csv, _) = history(3000, 97);
    let file = dir.join("h.csv");
    std::fs::write(&file, &csv).unwrap();
    let db = TestDb::postgres().await;
    let store = Store::open(&db.config().database).expect("store");
    store.migrate().await.expect("migrate");
    let Db::Postgres(pool) = store.db() else {
        unreachable!()
    };
    // A tick of that day recorded live (a server run's epoch) before the day had a partition.
    sqlx::query(
        "INSERT INTO ticks (symbol, ts, ingest_ts, epoch, seq, price, size, side) \
         VALUES ('AAA', $1, $1, 7, 1, 1.0, 1.0, 0)",
    )
    .bind(T0 + 5 * MS)
    .execute(pool)
    .await
    .expect("a stray row");
    let (strays,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ticks_default")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(strays, 1, "the day has no partition yet");
    store.close().await;
    let run = import_ok(&db, &[&file]).await;
    assert_eq!(run.count("ticks stored"), 3000, "{}", run.stdout);
    // Only the bars' day was attached.
    assert_eq!(
        load_line(&run),
        "1 new day partitions, indexed after the load"
    );
    assert_eq!(counts(&db).await.0, 3001);
    let after = schema(&db).await;
    assert!(
        after.iter().any(|r| r.starts_with("ticks_20261102 ")),
        "{after:?}"
    );
    assert!(
        !after.iter().any(|r| r.starts_with("tickcast_import")),
        "{after:?}"
    );
    let store = Store::open(&db.config().database).expect("store");
    let Db::Postgres(pool) = store.db() else {
        unreachable!()
    };
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ticks_default")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the stray moved into its day");
    store.close().await;
}

/// The statements at the end of an import (here `ANALYZE`, kept waiting on a lock) are not
/// bound by the write connections' statement timeout (10 x `database.timeout_ms`): a long one
/// does not fail the import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_analyze_at_the_end_does_not_fail_the_import() {
    use sqlx::Connection;
    let dir = temp_dir("analyze");
    let (csv, _) = history(3000, 97);
    let file = dir.join("h.csv");
    std::fs::write(&file, &csv).unwrap();
    let db = TestDb::postgres().await;
    import_ok(&db, &[&file]).await;
    // ANALYZE needs SHARE UPDATE EXCLUSIVE on `bars`; the re-import's writes do not.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE bars IN SHARE UPDATE EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    // Write statements time out after 10 x 500 ms.
    let timeout_s = 5.0;
    let run = tokio::spawn({
        let (url, file) = (db.url.clone(), file.clone());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
                .arg("import")
                .arg(&file)
                .env("DATABASE_URL", &url)
                .env("TICKCAST_DATABASE__TIMEOUT_MS", "500")
                .output()
                .await
                .expect("runs")
        }
    });
    let mut watcher = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (waited,): (f64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(EXTRACT(EPOCH FROM clock_timestamp() - query_start)), 0)::float8 \
             FROM pg_stat_activity WHERE datname = current_database() \
             AND query LIKE 'ANALYZE%' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waited > timeout_s * 1.5 {
            break;
        }
        assert!(
            !run.is_finished(),
            "the import ended while its ANALYZE had waited {waited:.1} s"
        );
        assert!(tokio::time::Instant::now() < deadline, "no ANALYZE waited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let out = run.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("already present: 3000"), "{stdout}");
}
