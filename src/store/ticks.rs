//! Ticks: the write-behind bulk insert, the `/ticks` cursor read and counting.

use std::sync::Arc;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::bulk::{BulkRow, SKIP_STORED};
use super::{Order, Store, StoreError, tick_side_code, tick_side_of};
use crate::model::Side;

/// One `/ticks` page after a (ts, id) cursor, read in `ticks_symbol_ts` index order; the index
/// holds every selected column (migration 0014), so the page never visits the table.
pub(crate) const TICKS_PAGE_SQL: &str = "SELECT id, ts, ingest_ts, epoch, seq, price, size, side \
     FROM ticks WHERE symbol = $1 AND ts >= $2 AND ts < $3 \
     AND (ts > $4 OR (ts = $4 AND id > $5)) ORDER BY ts, id LIMIT $6";

/// The `order=desc` page: newest first, strictly before the cursor's (ts, id). A row-value
/// comparison, which both backends take as one range bound on `(symbol, ts, id)` (scanned
/// backward, no sort); written as the `asc` page's `OR`, PostgreSQL may pick another index and
/// sort the range.
pub(crate) const TICKS_PAGE_DESC_SQL: &str = "SELECT id, ts, ingest_ts, epoch, seq, price, size, \
     side FROM ticks WHERE symbol = $1 AND ts >= $2 AND ts < $3 \
     AND (ts, id) < ($4, $5) ORDER BY ts DESC, id DESC LIMIT $6";
/// The lowest `seq` of a run's ticks of a symbol at or after a time, below a bound: the first
/// entry of `ticks_run_seq` (migration 0013) in `seq` order whose time is at or after `$3`, an
/// index walk that stops at the first match, where `MIN(seq)` was an aggregate over every tick of
/// the run after that time. `epoch > 0` names the partial index (live runs only) for the planner.
pub(crate) const RUN_START_SQL: &str = "SELECT seq FROM ticks \
     WHERE symbol = $1 AND epoch = $2 AND epoch > 0 AND ts >= $3 AND seq < $4 \
     ORDER BY seq LIMIT 1";

/// A run's ticks of a symbol by `seq`, in `ticks_run_seq` index order (no sort).
pub(crate) const RUN_PAGE_SQL: &str = "SELECT id, ts, ingest_ts, epoch, seq, price, size, side \
     FROM ticks WHERE symbol = $1 AND epoch = $2 AND epoch > 0 AND seq >= $3 AND seq < $4 \
     ORDER BY seq LIMIT $5";

/// SQLite allows 32,766 bound parameters per statement; 8 per tick row.
pub(crate) const SQLITE_ROWS_PER_INSERT: usize = 4000;

/// One stored tick.
#[derive(Debug, Clone, PartialEq)]
pub struct TickRow {
    pub symbol: Arc<str>,
    /// Exchange time, ns since the epoch.
    pub ts: i64,
    /// Server ingest time, ns since the epoch.
    pub ingest_ts: i64,
    /// The server run that assigned `seq` (its ingest epoch); with `symbol` and `seq` the tick's
    /// unique identity, so a batch written twice stores each tick once.
    pub epoch: i64,
    pub seq: i64,
    pub price: f64,
    pub size: f64,
    /// `None` when the source gave no side (stored as code 2).
    pub side: Option<Side>,
}

/// A tick read back, with its row id (the cursor's tie-break).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTick {
    pub id: i64,
    pub row: TickRow,
}

/// A stored tick as its queries select it: `id, ts, ingest_ts, epoch, seq, price, size, side`.
type TickTuple = (i64, i64, i64, i64, i64, f64, f64, i16);

/// Selected rows of `symbol` as ticks.
fn stored_ticks(symbol: &str, rows: Vec<TickTuple>) -> Vec<StoredTick> {
    let symbol: Arc<str> = Arc::from(symbol);
    rows.into_iter()
        .map(
            |(id, ts, ingest_ts, epoch, seq, price, size, side)| StoredTick {
                id,
                row: TickRow {
                    symbol: symbol.clone(),
                    ts,
                    ingest_ts,
                    epoch,
                    seq,
                    price,
                    size,
                    side: tick_side_of(side),
                },
            },
        )
        .collect()
}

/// One multi-row SQLite `INSERT INTO ticks` of `rows` (at most [`SQLITE_ROWS_PER_INSERT`]);
/// a tick already stored (same identity) is skipped.
pub(crate) fn sqlite_ticks_insert(rows: &[TickRow]) -> QueryBuilder<'_, Sqlite> {
    TickRow::sqlite_insert(rows, SKIP_STORED)
}

impl BulkRow for TickRow {
    const SQLITE_ROWS_PER_INSERT: usize = SQLITE_ROWS_PER_INSERT;

    fn sqlite_insert<'a>(rows: &'a [Self], conflict: &str) -> QueryBuilder<'a, Sqlite> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO ticks (symbol, ts, ingest_ts, epoch, seq, price, size, side) ",
        );
        qb.push_values(rows, |mut b, r| {
            b.push_bind(&*r.symbol)
                .push_bind(r.ts)
                .push_bind(r.ingest_ts)
                .push_bind(r.epoch)
                .push_bind(r.seq)
                .push_bind(r.price)
                .push_bind(r.size)
                .push_bind(tick_side_code(r.side));
        });
        qb.push(conflict);
        qb
    }

    fn postgres_insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments> {
        let col = |f: fn(&TickRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
        let int = |f: fn(&TickRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        let symbols: Vec<&str> = rows.iter().map(|r| &*r.symbol).collect();
        let side: Vec<i16> = rows.iter().map(|r| tick_side_code(r.side)).collect();
        sqlx::query(
            "INSERT INTO ticks (symbol, ts, ingest_ts, epoch, seq, price, size, side) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], \
             $5::int8[], $6::float8[], $7::float8[], $8::int2[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(symbols)
        .bind(int(|r| r.ts))
        .bind(int(|r| r.ingest_ts))
        .bind(int(|r| r.epoch))
        .bind(int(|r| r.seq))
        .bind(col(|r| r.price))
        .bind(col(|r| r.size))
        .bind(side)
    }
}

// === impl Store: ticks ===

impl Store {
    /// Inserts rows in one transaction ([`BulkRow`]); a tick whose identity
    /// (symbol, epoch, seq) is already stored is skipped. Returns how many rows were new.
    pub async fn insert_ticks(&self, rows: &[TickRow]) -> Result<u64, StoreError> {
        self.insert_bulk(rows).await
    }

    /// Ticks of `symbol` with `from <= ts < to`, ordered by (ts, id) in `order`, strictly
    /// past the cursor `after` in that order.
    pub(crate) async fn ticks(
        &self,
        symbol: &str,
        (from, to): (i64, i64),
        after: Option<(i64, i64)>,
        limit: usize,
        order: Order,
    ) -> Result<Vec<StoredTick>, StoreError> {
        let (sql, start) = match order {
            Order::Asc => (TICKS_PAGE_SQL, (i64::MIN, i64::MIN)),
            Order::Desc => (TICKS_PAGE_DESC_SQL, (i64::MAX, i64::MAX)),
        };
        let (after_ts, after_id) = after.unwrap_or(start);
        type Row = (i64, i64, i64, i64, i64, f64, f64, i16);
        let rows: Vec<Row> = self
            .bounded(async {
                Ok(on_pool!(&self.history, p => {
                    sqlx::query_as(sql)
                    .bind(symbol)
                    .bind(from)
                    .bind(to)
                    .bind(after_ts)
                    .bind(after_id)
                    .bind(limit as i64)
                    .fetch_all(p)
                    .await?
                }))
            })
            .await?;
        Ok(stored_ticks(symbol, rows))
    }

    /// The ticks of `symbol` of run `epoch` with `seq` in `[start, before)`, in `seq` order, at
    /// most `limit`; `start` is `after + 1`, or without `after` the lowest `seq` whose exchange
    /// time is at or after `since` (a replay from a time, `ws/replay.rs`). Only live runs'
    /// ticks (`epoch > 0`) are read by `seq`: other epochs give nothing.
    pub(crate) async fn run_ticks(
        &self,
        symbol: &str,
        epoch: i64,
        since: i64,
        after: Option<i64>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<StoredTick>, StoreError> {
        let start = match after {
            Some(a) => Some(a.saturating_add(1)),
            None => {
                let first: Option<(i64,)> = self
                    .bounded(async {
                        Ok(on_pool!(&self.read, p => {
                            sqlx::query_as(RUN_START_SQL)
                                .bind(symbol)
                                .bind(epoch)
                                .bind(since)
                                .bind(before)
                                .fetch_optional(p)
                                .await?
                        }))
                    })
                    .await?;
                first.map(|(seq,)| seq)
            }
        };
        let Some(start) = start else {
            return Ok(Vec::new());
        };
        let rows: Vec<TickTuple> = self
            .bounded(async {
                Ok(on_pool!(&self.read, p => {
                    sqlx::query_as(RUN_PAGE_SQL)
                        .bind(symbol)
                        .bind(epoch)
                        .bind(start)
                        .bind(before)
                        .bind(limit as i64)
                        .fetch_all(p)
                        .await?
                }))
            })
            .await?;
        Ok(stored_ticks(symbol, rows))
    }

    /// Number of stored ticks (all symbols, or one).
    pub async fn count_ticks(&self, symbol: Option<&str>) -> Result<i64, StoreError> {
        let n: (i64,) = self
            .bounded(async {
                Ok(on_pool!(&self.history, p => match symbol {
                    Some(s) => sqlx::query_as("SELECT COUNT(*) FROM ticks WHERE symbol = $1")
                        .bind(s)
                        .fetch_one(p)
                        .await?,
                    None => sqlx::query_as("SELECT COUNT(*) FROM ticks").fetch_one(p).await?,
                }))
            })
            .await?;
        Ok(n.0)
    }
}
