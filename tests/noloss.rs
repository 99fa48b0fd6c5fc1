//! No tick dropped from the store unless the user chose it: a replay waits for the database
//! (backpressure), a live feed that outruns it or outlives it spills to the local journal and
//! catches up from it, even across a restart, and every tick sent is stored exactly once.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;
use tickcast::feed::replay::ReplayFormat;
use tickcast::store::{OnOverload, Store};

use crate::util::{self, TestDb, TestServer, wait_until as wait_for};

/// Bound on the long waits here (a debug build writing 200,000 rows on a shared machine).
const LONG_WAIT: Duration = Duration::from_secs(300);

/// Stored ticks, and how many distinct identities (symbol, epoch, seq) they have.
async fn stored(db: &TestDb) -> (i64, i64) {
    let mut cfg = util::config().database;
    cfg.url = db.url.clone();
    let store = Store::open(&cfg).unwrap();
    let q = "SELECT COUNT(*), COUNT(DISTINCT symbol || ':' || CAST(epoch AS TEXT) || ':' || \
             CAST(seq AS TEXT)) FROM ticks";
    let n: (i64, i64) = match store.db() {
        tickcast::store::Db::Sqlite(p) => sqlx::query_as(q).fetch_one(p).await.unwrap(),
        tickcast::store::Db::Postgres(p) => sqlx::query_as(q).fetch_one(p).await.unwrap(),
    };
    store.close().await;
    n
}

/// A CSV of `n` trades over 10 symbols, one a millisecond, dated two days back.
fn replay_file(n: usize) -> std::path::PathBuf {
    let path = util::temp_journal_dir().with_extension("csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "ts,symbol,price,size,side").unwrap();
    let t0 = tickcast::model::now_ns() / 1_000_000 - 2 * 86_400_000;
    for i in 0..n {
        let side = if i % 2 == 0 { "buy" } else { "sell" };
        let price = 100.0 + (i % 97) as f64 / 10.0;
        writeln!(f, "{},S{:02},{price},1,{side}", t0 + i as i64, i % 10).unwrap();
    }
    f.flush().unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_at_speed_zero_stores_every_tick_through_a_tiny_queue() {
    const TICKS: usize = 200_000;
    let path = replay_file(TICKS);
    for db in util::backends().await {
        let mut c = db.config();
        c.feeds.replay.enabled = true;
        c.feeds.replay.path = path.clone();
        c.feeds.replay.format = ReplayFormat::Csv;
        c.feeds.replay.speed = 0.0;
        c.feeds.replay.looping = false;
        c.ring.capacity = 4096;
        // A queue a fraction of a replay chunk's worth of reading ahead: only waiting keeps it.
        c.database.queue_capacity = 1000;
        c.database.batch_size = 500;
        // Backpressure alone, no journal to catch what it would miss.
        c.database.on_overload = OnOverload::Block;
        let srv = util::start(c).await;
        let m = srv.server().metrics().clone();
        wait_for("every tick written", LONG_WAIT, async || {
            m.db_rows_written.load(Ordering::Relaxed) >= TICKS as u64
                || m.db_rows_dropped.load(Ordering::Relaxed) > 0
        })
        .await;
        assert_eq!(
            m.db_rows_dropped.load(Ordering::Relaxed),
            0,
            "{}",
            db.backend
        );
        assert_eq!(m.db_rows_journaled.load(Ordering::Relaxed), 0);
        assert_eq!(
            stored(&db).await,
            (TICKS as i64, TICKS as i64),
            "{}",
            db.backend
        );
        drop(srv);
    }
    let _ = std::fs::remove_file(&path);
}

async fn ingest_batch(srv: &TestServer, n: usize, base: f64) {
    let ticks: Vec<Value> = (0..n)
        .map(
            |i| json!({"symbol": "AAPL", "price": base + i as f64 + 1.0, "size": 1, "side": "buy"}),
        )
        .collect();
    let (status, body) = srv.ingest(Value::Array(ticks)).await;
    assert_eq!(status, 202, "{body}");
}

/// Sends 2,000 ticks while the database is unavailable; returns how many were sent in all.
async fn send_through_outage(srv: &TestServer) -> u64 {
    let m = srv.server().metrics().clone();
    for i in 0..20 {
        ingest_batch(srv, 100, i as f64).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let body = srv.wait_degraded().await;
    assert!(m.db_rows_journaled.load(Ordering::Relaxed) >= 1000);
    assert!(
        body["checks"]["database"]["journal_bytes"]
            .as_u64()
            .unwrap()
            > 0,
        "{body}"
    );
    2001
}

/// After the outage: every tick stored once, nothing dropped, the journal replayed and empty.
async fn check_recovered(srv: &TestServer, db: &TestDb, sent: u64) {
    let m = srv.server().metrics().clone();
    srv.wait_persisted(sent).await;
    wait_for("journal replayed", util::WAIT, async || {
        m.db_journal_bytes.load(Ordering::Relaxed) == 0
    })
    .await;
    srv.wait_ready().await;
    assert_eq!(m.db_rows_dropped.load(Ordering::Relaxed), 0);
    assert!(m.db_rows_replayed.load(Ordering::Relaxed) >= 1000);
    assert_eq!(
        stored(db).await,
        (sent as i64, sent as i64),
        "{}",
        db.backend
    );
    let (_, body) = srv.readyz().await;
    assert_eq!(body["checks"]["database"]["journal_bytes"], 0, "{body}");
}

#[tokio::test]
async fn sqlite_locked_mid_stream_loses_no_tick() {
    let db = TestDb::sqlite();
    let srv = util::start(db.outage_config()).await;
    ingest_batch(&srv, 1, 0.0).await;
    srv.wait_persisted(1).await;
    // Another process holds the write lock: every write times out with SQLITE_BUSY.
    let mut locker = util::lock_sqlite(&db.url).await;
    let sent = send_through_outage(&srv).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let _ = locker.close().await;
    check_recovered(&srv, &db, sent).await;
}

#[tokio::test]
async fn postgres_down_mid_stream_loses_no_tick() {
    let db = TestDb::postgres().await;
    let srv = util::start(db.outage_config()).await;
    ingest_batch(&srv, 1, 0.0).await;
    srv.wait_persisted(1).await;
    // The database goes away: new connections refused, the pool's killed.
    let outage = util::PgOutage::begin(&db).await;
    let sent = send_through_outage(&srv).await;
    outage.end().await;
    check_recovered(&srv, &db, sent).await;
}

#[tokio::test]
async fn a_journal_left_at_shutdown_is_replayed_at_the_next_start() {
    let db = TestDb::sqlite();
    let dir = util::temp_journal_dir();
    let mut c = db.outage_config();
    c.database.journal_dir = dir.display().to_string();
    c.server.shutdown_grace_ms = 2000;
    let mut first = util::start(c.clone()).await;
    ingest_batch(&first, 1, 0.0).await;
    first.wait_persisted(1).await;
    let mut locker = util::lock_sqlite(&db.url).await;
    for i in 0..5 {
        ingest_batch(&first, 100, i as f64).await;
    }
    // The database is still locked when the server stops: what it has not written stays in
    // the journal.
    first.shutdown().await;
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count();
    assert!(segments > 0, "nothing journaled in {}", dir.display());
    assert_eq!(stored(&db).await.0, 1, "the lock held");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let _ = locker.close().await;

    // The next run replays it before anything else; its own ticks follow.
    let second = util::start(c).await;
    let m = second.server().metrics().clone();
    wait_for("journal replayed", util::WAIT, async || {
        m.db_journal_bytes.load(Ordering::Relaxed) == 0 && stored(&db).await.0 == 501
    })
    .await;
    assert!(m.db_rows_replayed.load(Ordering::Relaxed) >= 500);
    ingest_batch(&second, 10, 0.0).await;
    wait_for("new ticks stored", util::WAIT, async || {
        stored(&db).await.0 >= 511
    })
    .await;
    assert_eq!(stored(&db).await, (511, 511));
    assert_eq!(m.db_rows_dropped.load(Ordering::Relaxed), 0);
    drop(second);
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn with_block_http_ingest_answers_503_until_the_store_has_room() {
    let db = TestDb::sqlite();
    let mut c = db.outage_config();
    c.database.on_overload = OnOverload::Block;
    let srv = util::start(c).await;
    ingest_batch(&srv, 1, 0.0).await;
    srv.wait_persisted(1).await;
    let mut locker = util::lock_sqlite(&db.url).await;
    // Accepted until the queue is full, then refused with Retry-After; nothing dropped.
    let mut sent = 1u64;
    let mut refused = None;
    for i in 0..20 {
        let ticks: Vec<Value> = (0..10)
            .map(|j| json!({"symbol": "AAPL", "price": 1.0 + (i * 10 + j) as f64, "size": 1, "side": "buy"}))
            .collect();
        let (status, headers, body) = util::http(
            srv.addr,
            "POST",
            "/api/v1/ingest",
            &[
                ("Authorization", &format!("Bearer {}", util::TOKEN)),
                ("Content-Type", "application/json"),
            ],
            serde_json::to_vec(&ticks).unwrap().as_slice(),
        )
        .await;
        if status == 503 {
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["code"], "ingest_busy", "{body}");
            assert_eq!(util::header(&headers, "retry-after"), Some("1"));
            refused = Some(i);
            break;
        }
        assert_eq!(status, 202);
        sent += 10;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused.is_some(), "never refused; sent {sent}");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let _ = locker.close().await;
    srv.wait_persisted(sent).await;
    let m = srv.server().metrics();
    assert_eq!(m.db_rows_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(stored(&db).await, (sent as i64, sent as i64));
}
