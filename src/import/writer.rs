//! Writing imported ticks and bars, per backend, in large transactions.
//!
//! - SQLite: one connection with a large page cache; the store's own multi-row prepared
//!   `INSERT ... ON CONFLICT DO NOTHING` of ticks, one transaction per chunk; bars by a
//!   multi-row upsert.
//! - PostgreSQL: one connection; each chunk is `COPY`ed (text format) into a temporary staging
//!   table and moved with `INSERT ... SELECT ... ON CONFLICT`, one transaction per chunk (the
//!   staging rows go with the commit).
//!
//! Ticks already stored (same identity) are skipped; a bar already stored under the import's
//! epoch is replaced only where its values differ, so a re-import writes nothing.

use std::fmt::Write as _;
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Postgres, Sqlite};

use super::bars::Edge;
use super::identity::IMPORT_EPOCH;
use crate::store::{
    BarRecord, Db, SQLITE_BARS_PER_INSERT, SQLITE_TICKS_PER_INSERT, Store, StoreError, TickRow,
    sqlite_bars_insert, sqlite_ticks_insert,
};

/// SQLite page cache of the import's connection, KiB.
const SQLITE_CACHE_KIB: u32 = 512 * 1024;

const BAR_COLUMNS: &str = "symbol, interval_ns, ts, epoch, open, high, low, close, volume, trades";

/// The upsert's tail: replace a stored bar of the same identity only where a value differs.
fn bar_upsert_tail(distinct: &str) -> String {
    let fields = ["open", "high", "low", "close", "volume", "trades"];
    let set: Vec<String> = fields
        .iter()
        .map(|f| format!("{f} = excluded.{f}"))
        .collect();
    let differs: Vec<String> = fields
        .iter()
        .map(|f| format!("bars.{f} {distinct} excluded.{f}"))
        .collect();
    format!(
        " ON CONFLICT (symbol, interval_ns, ts, epoch) DO UPDATE SET {} WHERE {}",
        set.join(", "),
        differs.join(" OR ")
    )
}

/// Where the rows go.
pub(crate) enum Writer {
    /// One connection with a large page cache.
    Sqlite(Box<PoolConnection<Sqlite>>),
    Postgres(Box<PoolConnection<Postgres>>),
}

impl Writer {
    /// A writer on the store's write pool (PostgreSQL: one connection with its staging tables).
    pub(crate) async fn open(store: Arc<Store>) -> Result<Writer, StoreError> {
        match store.db() {
            Db::Sqlite(p) => {
                let mut conn = p.acquire().await?;
                // The identity index takes rows in hash order: with SQLite's default 2 MB
                // cache nearly every insert missed it.
                // Multi-row upserts keep a statement journal: in memory, not a temporary file.
                for pragma in [
                    format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}"),
                    "PRAGMA temp_store = MEMORY".to_owned(),
                ] {
                    sqlx::query(&pragma).execute(&mut *conn).await?;
                }
                Ok(Writer::Sqlite(Box::new(conn)))
            }
            Db::Postgres(p) => {
                let mut conn = p.acquire().await?;
                for sql in [
                    "CREATE TEMP TABLE IF NOT EXISTS import_ticks (symbol text, ts int8, \
                     ingest_ts int8, epoch int8, seq int8, price float8, size float8, side int2) \
                     ON COMMIT DELETE ROWS",
                    "CREATE TEMP TABLE IF NOT EXISTS import_bars (symbol text, interval_ns int8, \
                     ts int8, epoch int8, open float8, high float8, low float8, close float8, \
                     volume float8, trades int8) ON COMMIT DELETE ROWS",
                ] {
                    sqlx::query(sql).execute(&mut *conn).await?;
                }
                Ok(Writer::Postgres(Box::new(conn)))
            }
        }
    }

    /// Stores the ticks not stored yet; returns how many were new.
    pub(crate) async fn ticks(&mut self, rows: &[TickRow]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        match self {
            Writer::Sqlite(conn) => {
                let mut tx = conn.begin().await?;
                let mut stored = 0;
                for chunk in rows.chunks(SQLITE_TICKS_PER_INSERT) {
                    let mut qb = sqlite_ticks_insert(chunk);
                    stored += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(stored)
            }
            Writer::Postgres(conn) => {
                let mut text = String::with_capacity(rows.len() * 80);
                for r in rows {
                    // Symbols are [A-Z0-9._-] (ingest's rule): nothing to escape.
                    let _ = writeln!(
                        text,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.symbol,
                        r.ts,
                        r.ingest_ts,
                        r.epoch,
                        r.seq,
                        r.price,
                        r.size,
                        crate::store::tick_side_code(r.side)
                    );
                }
                copy_and_move(
                    conn,
                    "COPY import_ticks FROM STDIN",
                    text,
                    "INSERT INTO ticks (symbol, ts, ingest_ts, epoch, seq, price, size, side) \
                     SELECT symbol, ts, ingest_ts, epoch, seq, price, size, side FROM import_ticks \
                     ON CONFLICT DO NOTHING",
                )
                .await
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
            Writer::Sqlite(conn) => {
                let tail = bar_upsert_tail("IS NOT");
                let mut tx = conn.begin().await?;
                let mut written = 0;
                for chunk in rows.chunks(SQLITE_BARS_PER_INSERT) {
                    let mut qb = sqlite_bars_insert(chunk, &tail);
                    written += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(written)
            }
            Writer::Postgres(conn) => {
                let mut text = String::with_capacity(rows.len() * 100);
                for r in rows {
                    let _ = writeln!(
                        text,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.symbol,
                        r.interval_ns,
                        r.start,
                        r.epoch,
                        r.open,
                        r.high,
                        r.low,
                        r.close,
                        r.volume,
                        r.trades
                    );
                }
                let insert = format!(
                    "INSERT INTO bars ({BAR_COLUMNS}) SELECT {BAR_COLUMNS} FROM import_bars{}",
                    bar_upsert_tail("IS DISTINCT FROM")
                );
                copy_and_move(conn, "COPY import_bars FROM STDIN", text, &insert).await
            }
        }
    }
}

impl Writer {
    /// Makes the partitions (PostgreSQL) of the days of these times, on this connection.
    pub(crate) async fn partitions(
        &mut self,
        store: &Store,
        times: impl IntoIterator<Item = i64>,
    ) -> Result<(), StoreError> {
        match self {
            Writer::Sqlite(_) => Ok(()),
            Writer::Postgres(conn) => store.ensure_partitions_on(conn, times).await,
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
            Writer::Sqlite(conn) => fetch!(&mut ***conn),
            Writer::Postgres(conn) => fetch!(&mut ***conn),
        })
    }
}

/// One transaction: `COPY` the text into a staging table, then `insert` from it; returns the
/// rows the insert wrote.
async fn copy_and_move(
    conn: &mut PoolConnection<Postgres>,
    copy: &str,
    text: String,
    insert: &str,
) -> Result<u64, StoreError> {
    let mut tx = conn.begin().await?;
    let mut sink = tx.copy_in_raw(copy).await?;
    sink.send(text.into_bytes()).await?;
    sink.finish().await?;
    let written = sqlx::query(insert).execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(written)
}
