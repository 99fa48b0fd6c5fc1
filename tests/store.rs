//! Write-behind persistence: a clean stop loses no ingested tick; a database that goes away
//! (PostgreSQL connections cut and refused, a locked SQLite file) never stops streaming,
//! degrades `/readyz`, counts what it must drop, and recovers by itself.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;
use tickcast::store::Store;

use crate::util::{self, TestDb, TestServer};

async fn ingest_batch(srv: &TestServer, symbol: &str, n: usize, base: f64) {
    let ticks: Vec<Value> = (0..n)
        .map(|i| json!({"symbol": symbol, "price": base + i as f64 + 1.0, "size": 1, "side": "sell"}))
        .collect();
    let (status, body) = srv.ingest(Value::Array(ticks)).await;
    assert_eq!(status, 202, "{body}");
}

async fn stored(db: &TestDb) -> i64 {
    let mut cfg = util::config().database;
    cfg.url = db.url.clone();
    let store = Store::open(&cfg).unwrap();
    let n = store.count_ticks(None).await.unwrap();
    store.close().await;
    n
}

#[tokio::test]
async fn graceful_shutdown_flushes_every_ingested_tick() {
    for db in util::backends().await {
        let mut c = db.config();
        // Small batches and a long flush interval: plenty is still queued when the stop comes.
        c.database.batch_size = 500;
        c.database.flush_interval_ms = 60_000;
        let mut srv = util::start(c).await;
        for i in 0..10 {
            ingest_batch(&srv, "AAPL", 1000, i as f64).await;
        }
        let m = srv.server().metrics().clone();
        srv.shutdown().await;
        assert_eq!(m.db_rows_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(m.db_rows_written.load(Ordering::Relaxed), 10_000);
        assert_eq!(stored(&db).await, 10_000, "{}", db.backend);
    }
}

/// Reads tick events until `seq` `last` arrives; returns how many ticks were seen.
async fn read_ticks_until(client: &mut util::Client, last: u64) -> u64 {
    let mut n = 0;
    loop {
        let e = client.event().await;
        if e["type"] == "tick" {
            n += 1;
            if e["seq"] == last {
                return n;
            }
        }
    }
}

async fn wait_for(what: &str, ok: impl AsyncFnMut() -> bool) {
    util::wait_until(what, util::WAIT, ok).await
}

#[tokio::test]
async fn postgres_cut_and_back_loses_no_tick() {
    let db = TestDb::postgres().await;
    let mut c = db.config();
    c.database.timeout_ms = 300;
    c.database.breaker_failures = 2;
    c.database.breaker_probe_ms = 100;
    c.database.batch_size = 200;
    let srv = util::start(c).await;
    ingest_batch(&srv, "AAPL", 1, 0.0).await;
    srv.wait_persisted(1).await;
    let mut client = srv.connect().await;
    client
        .subscribe(json!({"op": "subscribe", "channels": ["ticks:AAPL"]}))
        .await;

    // Cut: refuse new connections to the database and kill the pool's.
    let outage = util::PgOutage::begin(&db).await;

    // Streaming goes on while the database is away.
    let mut sent = 1u64;
    for i in 0..20 {
        ingest_batch(&srv, "AAPL", 100, i as f64).await;
        sent += 100;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_ticks_until(&mut client, sent).await, sent - 1);
    let m = srv.server().metrics().clone();
    let body = srv.wait_degraded().await;
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"]["ok"], false);
    // What went wrong is for the log: readiness names no host, database or driver message.
    let reason = body["checks"]["database"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        [
            "writes failing; circuit breaker open",
            "database unreachable",
            "database check failed"
        ]
        .contains(&reason),
        "{body}"
    );
    assert!(m.db_write_errors.load(Ordering::Relaxed) >= 2);
    assert!(m.db_backlog.load(Ordering::Relaxed) > 0);

    // Back: the breaker's probe succeeds and the backlog drains, every tick exactly once.
    outage.end().await;
    srv.wait_persisted(sent).await;
    srv.wait_ready().await;
    // Closed bars queue behind the ticks, so the gauge reaches 0 a moment after the last tick.
    wait_for("backlog drains", async || {
        m.db_backlog.load(Ordering::Relaxed) == 0
    })
    .await;
    assert_eq!(m.db_rows_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(stored(&db).await, sent as i64);
}

#[tokio::test]
async fn postgres_connections_killed_while_ticks_flow() {
    let db = TestDb::postgres().await;
    let mut c = db.config();
    c.database.batch_size = 100;
    let srv = util::start(c).await;
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&util::pg_admin_url())
        .await
        .unwrap();
    let mut sent = 0u64;
    for i in 0..30 {
        ingest_batch(&srv, "MSFT", 100, i as f64).await;
        sent += 100;
        if i % 5 == 2 {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(&name)
            .execute(&mut admin)
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.wait_persisted(sent).await;
    assert_eq!(stored(&db).await, sent as i64);
    let _ = admin.close().await;
}

#[tokio::test]
async fn sqlite_locked_with_drop_keeps_streaming_counts_drops_and_recovers() {
    let db = TestDb::sqlite();
    let mut c = db.outage_config();
    // Dropping, as chosen; the default (a journal) loses nothing (tests/noloss.rs).
    c.database.on_overload = tickcast::store::OnOverload::Drop;
    let srv = util::start(c).await;
    ingest_batch(&srv, "AAPL", 1, 0.0).await;
    srv.wait_persisted(1).await;
    let mut client = srv.connect().await;
    client
        .subscribe(json!({"op": "subscribe", "channels": ["ticks:AAPL"]}))
        .await;

    // Another process holds the write lock: every write times out with SQLITE_BUSY.
    let mut locker = util::lock_sqlite(&db.url).await;

    ingest_batch(&srv, "AAPL", 200, 0.0).await;
    assert_eq!(
        read_ticks_until(&mut client, 201).await,
        200,
        "streaming went on"
    );
    let m = srv.server().metrics().clone();
    let body = srv.wait_degraded().await;
    assert_eq!(body["checks"]["database"]["ok"], false);
    // The queue holds 50 and the writer at most one batch of 10; the rest was dropped, counted.
    let dropped = m.db_rows_dropped.load(Ordering::Relaxed);
    assert!((140..=150).contains(&dropped), "dropped {dropped}");
    let (_, _, text) = util::http(srv.addr, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains(&format!("tickcast_db_rows_dropped_total {dropped}\n")));

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let _ = locker.close().await;
    let kept = 201 - dropped;
    srv.wait_persisted(kept).await;
    srv.wait_ready().await;
    assert_eq!(stored(&db).await, kept as i64);
}

#[tokio::test]
async fn retention_deletes_only_old_ticks() {
    for db in util::backends().await {
        let mut cfg = util::config().database;
        cfg.url = db.url.clone();
        let store = Store::open(&cfg).unwrap();
        store.migrate().await.unwrap();
        let now = tickcast::model::now_ns();
        let day = 86_400_000_000_000i64;
        let rows: Vec<_> = [now - 10 * day, now - 8 * day, now - day, now]
            .iter()
            .zip(1..)
            .map(|(&ts, seq)| tickcast::store::TickRow {
                symbol: "AAPL".into(),
                ts,
                ingest_ts: ts,
                epoch: 1,
                seq,
                price: 1.0,
                size: 1.0,
                side: Some(tickcast::model::Side::Buy),
            })
            .collect();
        store.insert_ticks(&rows).await.unwrap();
        let cutoff = tickcast::store::retention::cutoff(now, 7);
        // In bounded batches: one row per DELETE here.
        use tickcast::store::retention::Retained;
        assert_eq!(
            store
                .delete_before(Retained::Ticks, cutoff, 1)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .delete_before(Retained::Ticks, cutoff, 1)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .delete_before(Retained::Ticks, cutoff, 1)
                .await
                .unwrap(),
            0
        );
        // Stored bars age out the same way.
        let bars: Vec<_> = [now - 9 * day, now - 8 * day, now]
            .iter()
            .map(|&start| util::flat_bar("AAPL", tickcast::store::BAR_1M_NS, start))
            .collect();
        assert_eq!(store.insert_bars(&bars).await.unwrap(), 3);
        assert_eq!(
            store
                .delete_before(Retained::Bars, cutoff, 100)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store.count_bars(tickcast::store::BAR_1M_NS).await.unwrap(),
            1
        );
        assert_eq!(
            store.count_ticks(Some("AAPL")).await.unwrap(),
            2,
            "{}",
            db.backend
        );
        store.close().await;
    }
}

#[tokio::test]
async fn postgres_with_sslmode_require_connects_over_tls() {
    let db = TestDb::postgres().await;
    let url = format!("{}?sslmode=require", db.url);
    // The server's store writes over that URL...
    let mut c = db.config();
    c.database.url = url.clone();
    let mut srv = util::start(c).await;
    ingest_batch(&srv, "TLS", 5, 1.0).await;
    srv.wait_persisted(5).await;
    srv.shutdown().await;
    assert_eq!(stored(&db).await, 5);
    // ...and a connection made with it is encrypted (as PostgreSQL itself reports).
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("sslmode=require connects");
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_ssl");
    assert!(ssl, "the connection is TLS");
    let _ = conn.close().await;
}

/// One tick row of run `epoch`.
fn tick(symbol: &str, epoch: i64, seq: i64) -> tickcast::store::TickRow {
    tickcast::store::TickRow {
        symbol: symbol.into(),
        ts: 1_764_070_000_000_000_000 + seq * 1_000_000,
        ingest_ts: 1_764_070_000_000_000_000 + seq * 1_000_000,
        epoch,
        seq,
        price: 100.0 + seq as f64,
        size: 1.0,
        side: Some(tickcast::model::Side::Buy),
    }
}

#[tokio::test]
async fn a_batch_written_twice_stores_each_tick_once() {
    for db in util::backends().await {
        let mut cfg = util::config().database;
        cfg.url = db.url.clone();
        let store = Store::open(&cfg).unwrap();
        store.migrate().await.unwrap();
        let batch: Vec<_> = (1..=50)
            .flat_map(|seq| [tick("AAPL", 7, seq), tick("MSFT", 7, seq)])
            .collect();
        assert_eq!(store.insert_ticks(&batch).await.unwrap(), 100);
        // The commit's acknowledgement was lost: the writer retries the same batch, and a
        // later batch overlaps it.
        assert_eq!(
            store.insert_ticks(&batch).await.unwrap(),
            0,
            "{}",
            db.backend
        );
        let overlap: Vec<_> = (41..=60).map(|seq| tick("AAPL", 7, seq)).collect();
        assert_eq!(store.insert_ticks(&overlap).await.unwrap(), 10);
        // The next run restarts seq: a new epoch, so new ticks.
        assert_eq!(store.insert_ticks(&[tick("AAPL", 8, 1)]).await.unwrap(), 1);
        assert_eq!(
            store.count_ticks(Some("AAPL")).await.unwrap(),
            61,
            "{}",
            db.backend
        );
        assert_eq!(
            store.count_ticks(Some("MSFT")).await.unwrap(),
            50,
            "{}",
            db.backend
        );
        store.close().await;
    }
}

#[tokio::test]
async fn migrations_dedupe_old_ticks_and_rebuild_their_bars() {
    for db in util::backends().await {
        let mut cfg = util::config().database;
        cfg.url = db.url.clone();
        let store = Store::open(&cfg).unwrap();
        // The schema as it was before tick identities, with a duplicated commit and a second
        // run whose seqs repeat the first one's.
        let init = match store.db() {
            tickcast::store::Db::Sqlite(_) => include_str!("../migrations/sqlite/0001_init.sql"),
            tickcast::store::Db::Postgres(_) => {
                include_str!("../migrations/postgres/0001_init.sql")
            }
        };
        let rows = "INSERT INTO ticks (symbol, ts, ingest_ts, seq, price, size, side) VALUES \
            ('AAPL', 10, 100, 1, 1.0, 1.0, 0), ('AAPL', 11, 101, 2, 2.0, 1.0, 0), \
            ('AAPL', 10, 100, 1, 1.0, 1.0, 0), ('AAPL', 11, 101, 2, 2.0, 1.0, 0), \
            ('AAPL', 20, 200, 1, 3.0, 1.0, 1)";
        match store.db() {
            tickcast::store::Db::Sqlite(p) => {
                sqlx::raw_sql(init).execute(p).await.unwrap();
                sqlx::raw_sql(rows).execute(p).await.unwrap();
            }
            tickcast::store::Db::Postgres(p) => {
                sqlx::raw_sql(init).execute(p).await.unwrap();
                sqlx::raw_sql(rows).execute(p).await.unwrap();
            }
        }
        let migration = match store.db() {
            tickcast::store::Db::Sqlite(_) => {
                include_str!("../migrations/sqlite/0003_tick_identity.sql")
            }
            tickcast::store::Db::Postgres(_) => {
                include_str!("../migrations/postgres/0003_tick_identity.sql")
            }
        };
        match store.db() {
            tickcast::store::Db::Sqlite(p) => {
                sqlx::raw_sql(migration).execute(p).await.unwrap();
            }
            tickcast::store::Db::Postgres(p) => {
                sqlx::raw_sql(migration).execute(p).await.unwrap();
            }
        }
        assert_eq!(
            store.count_ticks(Some("AAPL")).await.unwrap(),
            3,
            "{}",
            db.backend
        );
        // Stored bars: the old ticks' 1 s and 1 m bars are rebuilt, open/close by exchange time.
        let bars = match store.db() {
            tickcast::store::Db::Sqlite(_) => include_str!("../migrations/sqlite/0004_bars.sql"),
            tickcast::store::Db::Postgres(_) => {
                include_str!("../migrations/postgres/0004_bars.sql")
            }
        };
        let q =
            "SELECT interval_ns, ts, open, close, volume, trades FROM bars ORDER BY interval_ns";
        type Bar = (i64, i64, f64, f64, f64, i64);
        let got: Vec<Bar> = match store.db() {
            tickcast::store::Db::Sqlite(p) => {
                sqlx::raw_sql(bars).execute(p).await.unwrap();
                sqlx::query_as(q).fetch_all(p).await.unwrap()
            }
            tickcast::store::Db::Postgres(p) => {
                sqlx::raw_sql(bars).execute(p).await.unwrap();
                sqlx::query_as(q).fetch_all(p).await.unwrap()
            }
        };
        assert_eq!(
            got,
            vec![
                (1_000_000_000, 0, 1.0, 3.0, 3.0, 3),
                (60_000_000_000, 0, 1.0, 3.0, 3.0, 3)
            ],
            "{}",
            db.backend
        );

        // Old rows do not collide with a live run's identities.
        assert_eq!(store.insert_ticks(&[tick("AAPL", 1, 1)]).await.unwrap(), 1);
        assert_eq!(store.count_ticks(Some("AAPL")).await.unwrap(), 4);
        store.close().await;
    }
}

/// A long history of stored bars of `symbol`: `n` bars each of 1 s, 1 m and 1 d.
async fn bar_history(store: &Store, symbol: &str, n: i64) {
    let t0 = 1_764_028_800_000_000_000i64; // a UTC midnight
    let day_ns = 86_400_000_000_000;
    for interval_ns in [
        tickcast::store::BAR_1S_NS,
        tickcast::store::BAR_1M_NS,
        day_ns,
    ] {
        let rows: Vec<_> = (0..n)
            .map(|i| tickcast::store::BarRecord {
                symbol: symbol.into(),
                interval_ns,
                start: t0 + i * interval_ns,
                epoch: 1,
                open: 100.0,
                high: 101.0,
                low: 99.0,
                close: 100.5,
                volume: 10.0,
                trades: 3,
            })
            .collect();
        for chunk in rows.chunks(5000) {
            store.insert_bars(chunk).await.unwrap();
        }
    }
}

#[tokio::test]
async fn concurrent_long_bars_reads_leave_the_recorder_writing() {
    for db in util::backends().await {
        let mut c = db.config();
        c.pipeline.enabled = false;
        // Small pools: on one shared pool ten readers would hold every connection.
        c.database.pool_size = 2;
        c.database.read_pool_size = 2;
        c.database.batch_size = 50;
        let srv = util::start(c).await;
        let _ = srv.server().symbols().intern("AAPL").unwrap();
        // Two weeks of 1 m bars, five and a half hours of 1 s bars, 1 d bars (each interval is
        // read from its own stored bars).
        bar_history(srv.server().store(), "AAPL", 20_000).await;
        let m = srv.server().metrics().clone();
        let written = m.db_rows_written.load(Ordering::Relaxed);

        // Ticks flow while ten clients read long ranges, three times each.
        let flow = async {
            for i in 0..20 {
                ingest_batch(&srv, "AAPL", 50, i as f64).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let reads = futures_util::future::join_all((0..10).map(|i| {
            let srv = &srv;
            async move {
                let path = if i % 2 == 0 {
                    "/api/v1/bars/AAPL?interval=1s&limit=1000"
                } else {
                    "/api/v1/bars/AAPL?interval=1d&limit=1000"
                };
                let mut served = 0;
                for _ in 0..3 {
                    let (status, _, body) = srv.get(path, None).await;
                    match status {
                        200 => {
                            assert!(!body["bars"].as_array().unwrap().is_empty(), "{body}");
                            served += 1;
                        }
                        // Ten readers queue for two connections: on a loaded machine a read
                        // can wait past `database.timeout_ms` for one, and is refused as
                        // designed (bounded waiting), never with anything else.
                        _ => assert_eq!(
                            (status, body["code"].as_str()),
                            (503, Some("database_unavailable")),
                            "{body}"
                        ),
                    }
                }
                served
            }
        }));
        let ((), served) = tokio::join!(flow, reads);
        // The reads were real: long pages were served while the ticks flowed (the pool serves
        // its waiters in turn; on a loaded machine some wait past the timeout, not all).
        let served: usize = served.into_iter().sum();
        assert!(served >= 2, "{}: {served} of 30 reads served", db.backend);
        srv.wait_persisted(written + 1000).await;
        let health = &srv.server().app().health.recorder.health;
        assert!(
            !health.breaker_open.load(Ordering::Relaxed),
            "{}",
            db.backend
        );
        assert_eq!(health.consecutive_failures.load(Ordering::Relaxed), 0);
        assert_eq!(
            m.db_write_errors.load(Ordering::Relaxed),
            0,
            "{}",
            db.backend
        );
        assert_eq!(m.db_rows_dropped.load(Ordering::Relaxed), 0);
    }
}

#[tokio::test]
async fn a_blocked_read_times_out_as_503_while_ticks_are_written() {
    let db = TestDb::postgres().await;
    let mut c = db.config();
    c.database.query_timeout_ms = 200;
    // Only the test touches the bars table.
    c.pipeline.enabled = false;
    let ahead = i64::from(c.database.partitions_ahead_days);
    let started = tickcast::model::now_ns();
    let srv = util::start(c).await;
    ingest_batch(&srv, "AAPL", 1, 0.0).await;
    srv.wait_persisted(1).await;
    let _ = srv.server().symbols().intern("AAPL").unwrap();
    // The maintenance task makes the days ahead at start, ticks then bars of each day: once the
    // last day's bars exist it is done. Locking `bars` while it makes one would deadlock with it
    // (it reads the DEFAULT partition, then wants the parent: the reverse of LOCK TABLE's order).
    let last_day =
        tickcast::store::partitions::day_of(started) + ahead * tickcast::store::partitions::DAY_NS;
    let store = srv.server().store();
    util::wait_until("the days ahead are made", util::WAIT, async || {
        let bars = store.partitions("bars").await.unwrap();
        bars.iter()
            .any(|p| p.range.is_some_and(|(from, _)| from >= last_day))
    })
    .await;

    // Another session holds the bars table: a read on it would wait forever.
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE bars IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let (status, _, body) = srv.get("/api/v1/bars/AAPL?interval=1s", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "database_unavailable");
    // The server cancelled the statement: nothing of ours goes on waiting on the lock (the
    // database's cancel may land a moment after the caller's own bound on a loaded machine).
    util::wait_until("no statement waits on the lock", util::WAIT, async || {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut locker)
        .await
        .unwrap();
        waiting == 0
    })
    .await;
    // Ticks do not touch the locked table: the recorder goes on writing.
    ingest_batch(&srv, "AAPL", 10, 1.0).await;
    srv.wait_persisted(11).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let (status, _, _) = srv.get("/api/v1/bars/AAPL?interval=1s", None).await;
    assert_eq!(status, 200);
    let _ = locker.close().await;
}
