//! PostgreSQL's partitioned history: ticks and bars in one partition per UTC day, made ahead and
//! for any day a write needs, a DEFAULT partition as the safety net, retention by dropping whole
//! days, and migration 0010 carrying an unpartitioned store forward without losing a row. SQLite
//! keeps its plain tables and the same code paths.

use serde_json::json;
use sqlx::PgPool;
use tickcast::store::partitions::{DAY_NS, day_of};
use tickcast::store::retention::{Retained, sweep};
use tickcast::store::{BAR_1M_NS, Db, Store, TickRow};
use tokio_util::sync::CancellationToken;

use crate::util::{self, TestDb};

/// A tick row as both schemas hold it: id, symbol, ts, ingest_ts, seq, price, side, epoch.
type StoredTickRow = (i64, String, i64, i64, i64, f64, i16, i64);

/// The schema before partitioning.
const UNPARTITIONED_VERSION: i64 = 9;

fn pg(store: &Store) -> &PgPool {
    match store.db() {
        Db::Postgres(p) => p,
        Db::Sqlite(_) => panic!("a PostgreSQL store"),
    }
}

fn tick(symbol: &str, ts: i64, seq: i64) -> TickRow {
    TickRow {
        symbol: symbol.into(),
        ts,
        ingest_ts: ts,
        epoch: 1,
        seq,
        price: 100.0 + seq as f64,
        size: 1.0,
        side: None,
    }
}

/// Which table each of `table`'s rows is stored in, by row: (table, ts).
async fn homes(store: &Store, table: &str) -> Vec<(String, i64)> {
    sqlx::query_as(&format!(
        "SELECT tableoid::regclass::text, ts FROM {table} ORDER BY ts, id"
    ))
    .fetch_all(pg(store))
    .await
    .unwrap()
}

/// `relkind` of a table: `p` partitioned, `r` plain.
async fn relkind(store: &Store, table: &str) -> String {
    let (kind,): (String,) =
        sqlx::query_as("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)")
            .bind(table)
            .fetch_one(pg(store))
            .await
            .unwrap();
    kind
}

#[tokio::test]
async fn migration_0010_partitions_an_unpartitioned_store_without_losing_a_row() {
    let db = TestDb::postgres().await;
    let day0 = day_of(tickcast::model::now_ns()) - 3 * DAY_NS;
    // Every row of the previous schema, as that schema stored it (ids from its identity).
    let (ticks_before, bars_before) = {
        let store = Store::open(&db.config().database).unwrap();
        store.migrate_to(UNPARTITIONED_VERSION).await.unwrap();
        assert_eq!(relkind(&store, "ticks").await, "r");
        // Three days, and a tick before 1970 and one at the first day's start (old rows as
        // migration 0003 left them: each its own negative epoch).
        sqlx::query(
            "INSERT INTO ticks (symbol, ts, ingest_ts, seq, price, size, side, epoch) \
             SELECT 'S' || (i % 3), $1 + i * 3600000000000, 7, i, 100 + i, 1, i % 3, 42 \
             FROM generate_series(0, 71) i",
        )
        .bind(day0)
        .execute(pg(&store))
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO ticks (symbol, ts, ingest_ts, seq, price, size, side, epoch) \
             VALUES ('OLD', -5, -5, 1, 1, 1, 0, -1), ('OLD', $1, 0, 1, 1, 1, 0, -2)",
        )
        .bind(day0)
        .execute(pg(&store))
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO bars (symbol, interval_ns, ts, epoch, open, high, low, close, volume, \
             trades) SELECT 'S1', $2, $1 + i * $2, 0, 1, 2, 0.5, 1.5, 3, 4 \
             FROM generate_series(0, 2999) i",
        )
        .bind(day0)
        .bind(BAR_1M_NS)
        .execute(pg(&store))
        .await
        .unwrap();
        let ticks: Vec<StoredTickRow> = sqlx::query_as(
            "SELECT id, symbol, ts, ingest_ts, seq, price, side, epoch FROM ticks ORDER BY id",
        )
        .fetch_all(pg(&store))
        .await
        .unwrap();
        let bars: Vec<(i64, i64, f64, f64)> =
            sqlx::query_as("SELECT id, ts, high, low FROM bars ORDER BY id")
                .fetch_all(pg(&store))
                .await
                .unwrap();
        store.close().await;
        (ticks, bars)
    };
    assert_eq!(ticks_before.len(), 74);

    // The current server migrates it at start-up.
    let mut srv = util::start(db.config()).await;
    let store = srv.server().store().clone();
    // Start-up waits for the migration a bounded time only; this waits for it to end.
    store.migrate().await.unwrap();
    assert_eq!(relkind(&store, "ticks").await, "p");
    assert_eq!(relkind(&store, "bars").await, "p");
    let ticks_after: Vec<StoredTickRow> = sqlx::query_as(
        "SELECT id, symbol, ts, ingest_ts, seq, price, side, epoch FROM ticks ORDER BY id",
    )
    .fetch_all(pg(&store))
    .await
    .unwrap();
    assert_eq!(ticks_after, ticks_before, "every tick kept, ids too");
    let bars_after: Vec<(i64, i64, f64, f64)> =
        sqlx::query_as("SELECT id, ts, high, low FROM bars ORDER BY id")
            .fetch_all(pg(&store))
            .await
            .unwrap();
    assert_eq!(bars_after, bars_before, "every bar kept");
    // Each row in its day's partition, none in DEFAULT.
    for (table, rows) in [
        ("ticks", homes(&store, "ticks").await),
        ("bars", homes(&store, "bars").await),
    ] {
        for (home, ts) in rows {
            let date = time::OffsetDateTime::from_unix_timestamp(day_of(ts) / 1_000_000_000)
                .unwrap()
                .date();
            let want = format!(
                "{table}_{:04}{:02}{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            );
            assert_eq!(home, want, "{table} row at {ts}");
        }
    }
    let days = store.partitions("ticks").await.unwrap();
    assert!(
        days.last().is_some_and(|p| p.range.is_none()),
        "DEFAULT last: {days:?}"
    );

    // New rows continue after the old ids, and the REST reads find old and new.
    let new_ts = day0 + 5 * 3600 * 1_000_000_000 + 1;
    let (status, body) = srv
        .ingest(json!([{"symbol": "S2", "price": 7, "size": 1, "side": "buy", "ts": new_ts}]))
        .await;
    assert_eq!(status, 202, "{body}");
    srv.wait_persisted(1).await;
    let max_old = ticks_before.iter().map(|t| t.0).max().unwrap();
    let (new_id,): (i64,) = sqlx::query_as("SELECT id FROM ticks WHERE price = 7")
        .fetch_one(pg(&store))
        .await
        .unwrap();
    assert!(new_id > max_old, "{new_id} after {max_old}");
    let (status, _, page) = srv
        .get(
            &format!("/api/v1/ticks/S2?from={}&limit=1000", day0 / 1_000_000),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let prices: Vec<f64> = page["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["price"].as_f64().unwrap())
        .collect();
    assert_eq!(
        prices.len(),
        25,
        "24 migrated ticks of S2 and the new one: {prices:?}"
    );
    assert!(
        prices.contains(&7.0) && prices.contains(&102.0),
        "{prices:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_day_without_a_partition_goes_to_default_and_moves_out_when_made() {
    let db = TestDb::postgres().await;
    let store = Store::open(&db.config().database).unwrap();
    store.migrate().await.unwrap();
    let day = day_of(tickcast::model::now_ns()) - 20 * DAY_NS;
    let rows: Vec<TickRow> = (0..10).map(|i| tick("D", day + i * 1000, i)).collect();
    // Written without asking for the day first: the DEFAULT partition takes them.
    assert_eq!(store.insert_ticks(&rows).await.unwrap(), 10);
    let at = homes(&store, "ticks").await;
    assert!(at.iter().all(|(t, _)| t == "ticks_default"), "{at:?}");
    store
        .ensure_partitions_for(rows.iter().map(|r| r.ts))
        .await
        .unwrap();
    let at = homes(&store, "ticks").await;
    assert_eq!(at.len(), 10);
    assert!(at.iter().all(|(t, _)| t != "ticks_default"), "{at:?}");
    // Identity holds across the move: the same batch again stores nothing.
    assert_eq!(store.insert_ticks(&rows).await.unwrap(), 0);
    assert_eq!(store.count_ticks(Some("D")).await.unwrap(), 10);
    // A range wider than one call may make is refused, naming it.
    let e = store
        .ensure_partitions(0, 1000 * DAY_NS)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("days"), "{e}");
    store.close().await;
}

#[tokio::test]
async fn the_maintenance_sweep_makes_days_ahead_and_drops_whole_expired_days() {
    for db in util::backends().await {
        let mut cfg = db.config().database;
        cfg.retention_days = 7;
        cfg.partitions_ahead_days = 2;
        cfg.retention_batch_rows = 2;
        let store = Store::open(&cfg).unwrap();
        store.migrate().await.unwrap();
        let now = tickcast::model::now_ns();
        let today = day_of(now);
        // Ticks on days -10, -9 (wholly expired), on the cut-off's day before and after it, and
        // today; bars and rows of indicator history likewise.
        let cut = tickcast::store::retention::cutoff(now, 7);
        let times = [
            today - 10 * DAY_NS,
            today - 9 * DAY_NS + 5,
            cut - 1,
            cut - 2,
            cut + 1,
            now,
        ];
        let ticks: Vec<TickRow> = times
            .iter()
            .zip(0..)
            .map(|(&ts, i)| tick("R", ts, i))
            .collect();
        let bars: Vec<_> = times
            .iter()
            .map(|&ts| util::flat_bar("R", BAR_1M_NS, ts))
            .collect();
        store
            .ensure_partitions_for(times.iter().copied())
            .await
            .unwrap();
        assert_eq!(store.insert_ticks(&ticks).await.unwrap(), 6);
        assert_eq!(store.insert_bars(&bars).await.unwrap(), 6);
        let indicators: Vec<_> = times
            .iter()
            .map(|&ts| tickcast::store::IndicatorRecord {
                symbol: "R".into(),
                start: ts,
                epoch: 1,
                fields: r#"{"sma_20":1.0}"#.into(),
            })
            .collect();
        assert_eq!(store.insert_indicators(&indicators).await.unwrap(), 6);

        sweep(&store, &cfg, now, &CancellationToken::new()).await;

        assert_eq!(store.count_indicators().await.unwrap(), 2, "{}", db.backend);
        assert_eq!(
            store.count_ticks(Some("R")).await.unwrap(),
            2,
            "{}",
            db.backend
        );
        assert_eq!(
            store.count_bars(BAR_1M_NS).await.unwrap(),
            2,
            "{}",
            db.backend
        );
        if db.backend == "postgres" {
            for table in ["ticks", "bars", "indicators"] {
                let days: Vec<Option<(i64, i64)>> = store
                    .partitions(table)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|p| p.range)
                    .collect();
                let day = |d: i64| Some((today + d * DAY_NS, today + (d + 1) * DAY_NS));
                let cut_day = day_of(cut);
                // The cut-off's day stays (its later rows are kept), today and 2 days ahead
                // are made, the expired days are gone.
                assert_eq!(
                    days,
                    vec![
                        Some((cut_day, cut_day + DAY_NS)),
                        day(0),
                        day(1),
                        day(2),
                        None
                    ],
                    "{table}"
                );
            }
        }
        // Nothing left to do: a second sweep changes nothing.
        sweep(&store, &cfg, now, &CancellationToken::new()).await;
        assert_eq!(store.count_ticks(Some("R")).await.unwrap(), 2);
        // And the bounded DELETE alone, as on SQLite, finds nothing older.
        assert_eq!(
            store
                .delete_before(Retained::Ticks, cut, 100)
                .await
                .unwrap(),
            0
        );
        store.close().await;
    }
}

#[tokio::test]
async fn the_recorder_writes_past_days_into_their_own_partitions() {
    let db = TestDb::postgres().await;
    let mut srv = util::start(db.config()).await;
    let past = day_of(tickcast::model::now_ns()) - 30 * DAY_NS + 1_000;
    let ticks: Vec<_> = (0..5)
        .map(|i| json!({"symbol": "P", "price": 1 + i, "size": 1, "side": "buy", "ts": past + i * DAY_NS}))
        .collect();
    let (status, body) = srv.ingest(serde_json::Value::Array(ticks)).await;
    assert_eq!(status, 202, "{body}");
    srv.wait_persisted(5).await;
    let store = srv.server().store().clone();
    let at = homes(&store, "ticks").await;
    assert_eq!(at.len(), 5);
    let tables: std::collections::BTreeSet<_> = at.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(tables.len(), 5, "one partition per day: {at:?}");
    assert!(!tables.contains("ticks_default"), "{at:?}");
    srv.shutdown().await;
}

/// Making a day locks the parent before it reads the DEFAULT partition, the order `LOCK TABLE`,
/// `ALTER TABLE` and migrations take: a session holding the parent and then locking the DEFAULT
/// partition waits for nothing (before 0015 the two deadlocked and PostgreSQL aborted one).
#[tokio::test]
async fn making_a_day_locks_the_parent_before_the_default_partition() {
    let db = TestDb::postgres().await;
    let store = Store::open(&db.config().database).unwrap();
    store.migrate().await.unwrap();
    let pool = pg(&store).clone();
    let day = day_of(tickcast::model::now_ns()) - 30 * DAY_NS;

    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *holder).await.unwrap();
    sqlx::query("LOCK TABLE ONLY ticks IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let maker = {
        let pool = pool.clone();
        tokio::spawn(async move {
            sqlx::query_scalar::<_, bool>("SELECT tickcast_ensure_partition('ticks', $1)")
                .bind(day)
                .fetch_one(&pool)
                .await
        })
    };
    // Until the maker waits on a lock (it can only be ours).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%tickcast_ensure_partition%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the maker never waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The DEFAULT partition is not held by the waiting maker: ours at once, no deadlock.
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *holder)
        .await
        .unwrap();
    sqlx::query("LOCK TABLE ticks_default IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .expect("the DEFAULT partition after the parent");
    sqlx::query("COMMIT").execute(&mut *holder).await.unwrap();
    drop(holder);
    let made = maker
        .await
        .unwrap()
        .expect("the day made once the lock is free");
    assert!(made, "a new day");
    let (attached,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'ticks'::regclass \
         AND inhrelid = to_regclass('ticks_' || to_char(to_timestamp($1 / 1e9) AT TIME ZONE 'UTC', 'YYYYMMDD')))",
    )
    .bind(day)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(attached, "the day is a partition of ticks");
    store.close().await;
}
