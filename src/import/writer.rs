//! Writing imported ticks and bars, per backend, in large transactions.
//!
//! - SQLite: one connection with a large page cache. Into an empty store, the whole import is
//!   one write transaction that loads the tables without their indexes and builds them at the
//!   end (`sqlite_fresh`); otherwise the store's own multi-row prepared
//!   `INSERT ... ON CONFLICT DO NOTHING` of ticks, one transaction per chunk, and bars by a
//!   multi-row upsert.
//! - PostgreSQL: one connection. A day with no partition yet is binary-`COPY`ed (`pg_copy`)
//!   into a standalone table without indexes, indexed and attached as the day's partition at
//!   the end (`pg_days`). A day that has its partition takes each chunk straight into the table
//!   when no imported row is stored in its time range (nothing can conflict), otherwise through
//!   a temporary staging table moved with `INSERT ... SELECT ... ON CONFLICT`, one transaction
//!   per chunk (the staging rows go with the commit).
//!
//! Ticks already stored (same identity) are skipped; a bar already stored under the import's
//! epoch is replaced only where its values differ, so a re-import writes nothing.
//!
//! Chunks are bounded by the write connection's statement timeout like any write; what runs
//! once at the end (index builds, attaching days, edge windows, `ANALYZE`) takes as long as the
//! history is large and runs without it ([`Writer::finish_load`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Postgres, Sqlite};

use super::bars::{Edge, bar_upsert_tail};
use super::identity::IMPORT_EPOCH;
use super::pg_copy::{self, BAR_COLUMNS, TICK_COLUMNS};
use super::pg_days::{Parent, StagedDays};
use super::sqlite_fresh::{self, FreshLoad};
use crate::store::partitions::day_of;
use crate::store::{
    BarRecord, Db, SQLITE_BARS_PER_INSERT, SQLITE_TICKS_PER_INSERT, Store, StoreError, TickRow,
    sqlite_bars_insert, sqlite_ticks_insert,
};

/// SQLite page cache of the import's connection, KiB.
const SQLITE_CACHE_KIB: u32 = 512 * 1024;
/// How long the import's SQLite connection waits for another writer (another import's whole
/// load is one transaction), ms.
const SQLITE_BUSY_MS: u32 = 3_600_000;
/// PostgreSQL memory for each index build at the end of the import.
const PG_MAINTENANCE_WORK_MEM: &str = "256MB";

/// How the import loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoadMode {
    /// Chunk by chunk into the indexed tables (the store held rows, or the days had partitions).
    #[default]
    Indexed,
    /// SQLite, an empty store: loaded without indexes, built after the load.
    FreshStore,
    /// PostgreSQL: this many new days (partitions of ticks and of bars) loaded without indexes,
    /// indexed and attached after the load.
    NewDays(u64),
}

/// What finishing the load changed in the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Finished {
    pub(crate) mode: LoadMode,
    /// Rows counted as stored chunk by chunk that turned out to be stored already (the import
    /// held them twice, or a day was made meanwhile).
    pub(crate) ticks_dropped: u64,
    pub(crate) bars_dropped: u64,
}

/// Where the rows go.
pub(crate) enum Writer {
    Sqlite {
        conn: Box<PoolConnection<Sqlite>>,
        /// An empty store's load: one transaction, indexes built at the end.
        fresh: Option<FreshLoad>,
        /// Whether the tables have their indexes (always, but during a fresh load).
        indexed: bool,
    },
    Postgres {
        conn: Box<PoolConnection<Postgres>>,
        days: StagedDays,
        store: Arc<Store>,
    },
}

impl Writer {
    /// A writer on the store's write pool (PostgreSQL: one connection with its staging tables).
    pub(crate) async fn open(store: Arc<Store>) -> Result<Writer, StoreError> {
        match store.db() {
            Db::Sqlite(p) => {
                let mut conn = Box::new(p.acquire().await?);
                // The identity index takes rows in hash order: with SQLite's default 2 MB
                // cache nearly every insert missed it.
                // Multi-row upserts keep a statement journal: in memory, not a temporary file.
                // Index builds sort with a helper thread.
                for pragma in [
                    format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}"),
                    "PRAGMA temp_store = MEMORY".to_owned(),
                    format!("PRAGMA busy_timeout = {SQLITE_BUSY_MS}"),
                    "PRAGMA threads = 2".to_owned(),
                ] {
                    sqlx::query(&pragma).execute(&mut **conn).await?;
                }
                let fresh = FreshLoad::begin(&mut conn).await?;
                Ok(Writer::Sqlite {
                    conn,
                    indexed: fresh.is_none(),
                    fresh,
                })
            }
            Db::Postgres(p) => {
                let mut conn = p.acquire().await?;
                for sql in [
                    // A crash loses at most the last commits, never consistency, and an import
                    // is re-run safely (identities): no WAL flush waited for at each chunk.
                    "SET synchronous_commit = off".to_owned(),
                    format!("SET maintenance_work_mem = '{PG_MAINTENANCE_WORK_MEM}'"),
                    "CREATE TEMP TABLE IF NOT EXISTS import_ticks (symbol text, ts int8, \
                     ingest_ts int8, epoch int8, seq int8, price float8, size float8, side int2) \
                     ON COMMIT DELETE ROWS"
                        .to_owned(),
                    "CREATE TEMP TABLE IF NOT EXISTS import_bars (symbol text, interval_ns int8, \
                     ts int8, epoch int8, open float8, high float8, low float8, close float8, \
                     volume float8, trades int8) ON COMMIT DELETE ROWS"
                        .to_owned(),
                ] {
                    sqlx::query(&sql).execute(&mut *conn).await?;
                }
                Ok(Writer::Postgres {
                    conn: Box::new(conn),
                    days: StagedDays::new(),
                    store,
                })
            }
        }
    }

    /// Stores the ticks not stored yet; returns how many were new (during a fresh or new-day
    /// load: how many were copied; [`Writer::finish_load`] tells the duplicates).
    pub(crate) async fn ticks(&mut self, rows: &[TickRow]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        match self {
            Writer::Sqlite { conn, fresh, .. } => {
                if fresh.is_some() {
                    return sqlite_ticks(conn, rows).await;
                }
                let mut tx = conn.begin().await?;
                let stored = sqlite_ticks(&mut tx, rows).await?;
                tx.commit().await?;
                Ok(stored)
            }
            Writer::Postgres { conn, days, store } => {
                let mut stored = 0;
                for (day, group) in by_day(rows, |r| r.ts) {
                    let data = pg_copy::ticks(group.iter().copied());
                    stored += if let Some(table) = days.table(conn, Parent::Ticks, day).await? {
                        let copy =
                            format!("COPY {table} ({TICK_COLUMNS}) FROM STDIN (FORMAT binary)");
                        let n = copy_in(conn, &copy, &data).await?;
                        days.copied(Parent::Ticks, day, n);
                        n
                    } else {
                        store.ensure_partitions_on(conn, [day]).await?;
                        let (first, last) = ts_range(group.iter().map(|r| r.ts));
                        let direct =
                            format!("COPY ticks ({TICK_COLUMNS}) FROM STDIN (FORMAT binary)");
                        match copy_if_new(conn, "ticks", first, last, &direct, &data).await? {
                            Some(n) => n,
                            None => {
                                let insert = format!(
                                    "INSERT INTO ticks ({TICK_COLUMNS}) SELECT {TICK_COLUMNS} \
                                     FROM import_ticks ON CONFLICT DO NOTHING"
                                );
                                copy_and_move(conn, "import_ticks", &data, &insert).await?
                            }
                        }
                    };
                }
                Ok(stored)
            }
        }
    }

    /// Stores bars, replacing an imported bar of the same identity where it differs; returns
    /// how many were written (new or changed).
    pub(crate) async fn bars(&mut self, rows: &[BarRecord]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        match self {
            Writer::Sqlite {
                conn,
                fresh,
                indexed,
            } => {
                // Without the identity index there is nothing to conflict with (the import's
                // own bars are one per window).
                let tail = if *indexed {
                    bar_upsert_tail("IS NOT")
                } else {
                    String::new()
                };
                if fresh.is_some() {
                    return sqlite_bars(conn, rows, &tail).await;
                }
                let mut tx = conn.begin().await?;
                let written = sqlite_bars(&mut tx, rows, &tail).await?;
                tx.commit().await?;
                Ok(written)
            }
            Writer::Postgres { conn, days, store } => {
                let mut written = 0;
                for (day, group) in by_day(rows, |r| r.start) {
                    let data = pg_copy::bars(group.iter().copied());
                    written += if let Some(table) = days.table(conn, Parent::Bars, day).await? {
                        let copy =
                            format!("COPY {table} ({BAR_COLUMNS}) FROM STDIN (FORMAT binary)");
                        let n = copy_in(conn, &copy, &data).await?;
                        days.copied(Parent::Bars, day, n);
                        n
                    } else {
                        store.ensure_partitions_on(conn, [day]).await?;
                        let (first, last) = ts_range(group.iter().map(|r| r.start));
                        let direct =
                            format!("COPY bars ({BAR_COLUMNS}) FROM STDIN (FORMAT binary)");
                        match copy_if_new(conn, "bars", first, last, &direct, &data).await? {
                            Some(n) => n,
                            None => {
                                let insert = format!(
                                    "INSERT INTO bars ({BAR_COLUMNS}) SELECT {BAR_COLUMNS} FROM \
                                     import_bars{}",
                                    bar_upsert_tail("IS DISTINCT FROM")
                                );
                                copy_and_move(conn, "import_bars", &data, &insert).await?
                            }
                        }
                    };
                }
                Ok(written)
            }
        }
    }

    /// Every chunk is written: lifts the statement timeout (what follows is as long as the
    /// history is large), then builds the indexes left for the end (SQLite's fresh load) or
    /// indexes and attaches the new days (PostgreSQL). Edge windows are read after this.
    pub(crate) async fn finish_load(&mut self) -> Result<Finished, StoreError> {
        match self {
            Writer::Sqlite {
                conn,
                fresh,
                indexed,
            } => {
                let Some(load) = fresh else {
                    return Ok(Finished::default());
                };
                let removed = load.build_indexes(conn).await?;
                *indexed = true;
                Ok(Finished {
                    mode: LoadMode::FreshStore,
                    ticks_dropped: removed.ticks,
                    bars_dropped: removed.bars,
                })
            }
            Writer::Postgres { conn, days, .. } => {
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut ***conn)
                    .await?;
                let done = days.finish(conn).await?;
                Ok(Finished {
                    mode: if done.attached > 0 {
                        LoadMode::NewDays(done.attached)
                    } else {
                        LoadMode::Indexed
                    },
                    ticks_dropped: done.ticks_dropped,
                    bars_dropped: done.bars_dropped,
                })
            }
        }
    }

    /// Commits what the import wrote (SQLite's fresh load is one transaction), then refreshes
    /// the planner's statistics for the rows just loaded, so reads keep their index plans: on
    /// this connection, with no time bound (an `ANALYZE` of a large history outlives a write's).
    pub(crate) async fn commit(&mut self) -> Result<(), StoreError> {
        match self {
            Writer::Sqlite { conn, fresh, .. } => {
                if fresh.take().is_some() {
                    FreshLoad::commit(conn).await?;
                }
                sqlx::query("PRAGMA optimize").execute(&mut ***conn).await?;
            }
            Writer::Postgres { conn, .. } => {
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut ***conn)
                    .await?;
                sqlx::query("ANALYZE ticks, bars")
                    .execute(&mut ***conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// After a failure: SQLite's fresh load is rolled back, PostgreSQL's standalone tables
    /// dropped, so a failed import leaves no half-built state behind (best effort: logged).
    pub(crate) async fn abort(&mut self) {
        match self {
            Writer::Sqlite { conn, fresh, .. } => {
                if fresh.take().is_some() {
                    sqlite_fresh::rollback(conn).await;
                }
            }
            Writer::Postgres { conn, days, .. } => days.abandon(conn).await,
        }
    }

    /// The imported ticks of an edge window, `(ts, price, size)` in (time, insertion) order.
    pub(crate) async fn window(&mut self, edge: &Edge) -> Result<Vec<(i64, f64, f64)>, StoreError> {
        let sql = "SELECT ts, price, size FROM ticks WHERE symbol = $1 AND epoch = $2 \
                   AND ts >= $3 AND ts < $4 ORDER BY ts, id";
        let end = edge.start.saturating_add(edge.interval_ns);
        macro_rules! fetch {
            ($executor:expr) => {
                sqlx::query_as(sql)
                    .bind(&*edge.symbol)
                    .bind(IMPORT_EPOCH)
                    .bind(edge.start)
                    .bind(end)
                    .fetch_all($executor)
                    .await?
            };
        }
        Ok(match self {
            Writer::Sqlite { conn, .. } => fetch!(&mut ***conn),
            Writer::Postgres { conn, .. } => fetch!(&mut ***conn),
        })
    }
}

/// `rows` grouped by the UTC day of `ts` (a chunk may cross midnight), days in order, rows in
/// their order within each.
fn by_day<T>(rows: &[T], ts: impl Fn(&T) -> i64) -> BTreeMap<i64, Vec<&T>> {
    let mut days: BTreeMap<i64, Vec<&T>> = BTreeMap::new();
    for r in rows {
        days.entry(day_of(ts(r))).or_default().push(r);
    }
    days
}

async fn sqlite_ticks(conn: &mut SqliteConnection, rows: &[TickRow]) -> Result<u64, StoreError> {
    let mut stored = 0;
    for chunk in rows.chunks(SQLITE_TICKS_PER_INSERT) {
        let mut qb = sqlite_ticks_insert(chunk);
        stored += qb.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(stored)
}

async fn sqlite_bars(
    conn: &mut SqliteConnection,
    rows: &[BarRecord],
    tail: &str,
) -> Result<u64, StoreError> {
    let mut written = 0;
    for chunk in rows.chunks(SQLITE_BARS_PER_INSERT) {
        let mut qb = sqlite_bars_insert(chunk, tail);
        written += qb.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(written)
}

/// Binary `COPY` of `data` (its own transaction); returns the rows copied.
async fn copy_in(
    conn: &mut PoolConnection<Postgres>,
    copy: &str,
    data: &[u8],
) -> Result<u64, StoreError> {
    let mut sink = conn.copy_in_raw(copy).await?;
    sink.send(data).await?;
    Ok(sink.finish().await?)
}

/// The first and last of `times` (`(0, -1)`, an empty range, for none).
fn ts_range(times: impl Iterator<Item = i64>) -> (i64, i64) {
    times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)))
}

/// When `table` holds no imported row between `first` and `last` (inclusive), `COPY`s `data`
/// straight into it: nothing can conflict, so the staging table's second pass is saved. Returns
/// the rows copied, or `None` when the range is not new or the copy met a stored identity
/// anyway (a concurrent import of the same range, or two ticks of the chunk sharing a hash):
/// the caller then takes the staging path, whose `ON CONFLICT` settles it.
async fn copy_if_new(
    conn: &mut PoolConnection<Postgres>,
    table: &str,
    first: i64,
    last: i64,
    copy: &str,
    data: &[u8],
) -> Result<Option<u64>, StoreError> {
    let probe =
        format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE ts >= $1 AND ts <= $2 AND epoch = $3)");
    let (stored,): (bool,) = sqlx::query_as(&probe)
        .bind(first)
        .bind(last)
        .bind(IMPORT_EPOCH)
        .fetch_one(&mut **conn)
        .await?;
    if stored {
        return Ok(None);
    }
    let mut tx = conn.begin().await?;
    let mut sink = tx.copy_in_raw(copy).await?;
    sink.send(data).await?;
    match sink.finish().await {
        Ok(copied) => {
            tx.commit().await?;
            Ok(Some(copied))
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            tracing::debug!(table, "direct COPY met a stored identity; staging instead");
            tx.rollback().await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// One transaction: binary `COPY` of `data` into the `staging` table, then `insert` from it;
/// returns the rows the insert wrote.
async fn copy_and_move(
    conn: &mut PoolConnection<Postgres>,
    staging: &str,
    data: &[u8],
    insert: &str,
) -> Result<u64, StoreError> {
    let mut tx = conn.begin().await?;
    let mut sink = tx
        .copy_in_raw(&format!("COPY {staging} FROM STDIN (FORMAT binary)"))
        .await?;
    sink.send(data).await?;
    sink.finish().await?;
    let written = sqlx::query(insert).execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(written)
}
