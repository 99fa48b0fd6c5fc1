//! Indicator history: one row per symbol per closed 1 s bar, holding every indicator field as
//! the wire named it when it was computed (a JSON object's text: `{"sma_20":..,"vwap":..}`), so
//! rows stay readable when the configured periods change. Written behind by the recorder like
//! bars; read a page at a time by `GET /api/v1/indicators/{symbol}?from&to&limit&order`.
//!
//! A row's identity is (symbol, bar start): a retried batch, a journal replayed twice or two
//! runs that both closed the same second store it once (the first one written stays).

use std::sync::Arc;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::bars::Order;
use super::bulk::BulkRow;
use super::{Store, StoreError};

/// A page of rows from `$2` (inclusive) to `$3` (exclusive), oldest first; `$4` rows at most.
pub(crate) const INDICATORS_PAGE_SQL: &str = "SELECT ts, fields FROM indicators \
     WHERE symbol = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4";

/// The `order=desc` page: newest first.
pub(crate) const INDICATORS_PAGE_DESC_SQL: &str = "SELECT ts, fields FROM indicators \
     WHERE symbol = $1 AND ts >= $2 AND ts < $3 ORDER BY ts DESC LIMIT $4";

/// SQLite allows 32,766 bound parameters per statement; 4 per row.
const SQLITE_ROWS_PER_INSERT: usize = 8000;

/// One row of indicator history, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorRecord {
    pub symbol: Arc<str>,
    /// Start of the closed 1 s bar, ns since the epoch (exchange time).
    pub start: i64,
    /// The server run that computed it.
    pub epoch: i64,
    /// The fields as a JSON object's text (`protocol::IndicatorFields::row_json`).
    pub fields: String,
}

/// One stored row as a page returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorRow {
    /// Start of the closed 1 s bar, ns since the epoch.
    pub start: i64,
    /// The stored JSON object's text.
    pub fields: String,
}

/// One page of indicator history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndicatorPage {
    /// In the page's order.
    pub rows: Vec<IndicatorRow>,
    /// Where the next page starts, ns: its `from` (asc) or its exclusive `to` (desc); `None`
    /// on the last page.
    pub next: Option<i64>,
}

impl BulkRow for IndicatorRecord {
    const SQLITE_ROWS_PER_INSERT: usize = SQLITE_ROWS_PER_INSERT;

    fn sqlite_insert<'a>(rows: &'a [Self], conflict: &str) -> QueryBuilder<'a, Sqlite> {
        let mut qb = QueryBuilder::new("INSERT INTO indicators (symbol, ts, epoch, fields) ");
        qb.push_values(rows, |mut b, r| {
            b.push_bind(&*r.symbol)
                .push_bind(r.start)
                .push_bind(r.epoch)
                .push_bind(r.fields.as_str());
        });
        qb.push(conflict);
        qb
    }

    fn postgres_insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments> {
        let symbols: Vec<&str> = rows.iter().map(|r| &*r.symbol).collect();
        let starts: Vec<i64> = rows.iter().map(|r| r.start).collect();
        let epochs: Vec<i64> = rows.iter().map(|r| r.epoch).collect();
        let fields: Vec<&str> = rows.iter().map(|r| r.fields.as_str()).collect();
        sqlx::query(
            "INSERT INTO indicators (symbol, ts, epoch, fields) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(symbols)
        .bind(starts)
        .bind(epochs)
        .bind(fields)
    }
}

// === impl Store: indicator history ===

impl Store {
    /// Inserts indicator rows in one transaction ([`BulkRow`]); a row already stored (same
    /// symbol and bar start) is skipped. Returns how many were new.
    pub async fn insert_indicators(&self, rows: &[IndicatorRecord]) -> Result<u64, StoreError> {
        self.insert_bulk(rows).await
    }

    /// The stored rows of `symbol` over `from <= start < to`, at most `limit`, in `order`, and
    /// where the next page starts. One index range scan under a limit: a row per start, so the
    /// page's last start is an exact key for the next.
    pub async fn indicator_history(
        &self,
        symbol: &str,
        (from, to): (i64, i64),
        limit: usize,
        order: Order,
    ) -> Result<IndicatorPage, StoreError> {
        let sql = match order {
            Order::Asc => INDICATORS_PAGE_SQL,
            Order::Desc => INDICATORS_PAGE_DESC_SQL,
        };
        let wanted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String)> = self
            .bounded(async {
                Ok(on_pool!(&self.history, p => {
                    sqlx::query_as(sql)
                    .bind(symbol)
                    .bind(from)
                    .bind(to)
                    .bind(wanted)
                    .fetch_all(p)
                    .await?
                }))
            })
            .await?;
        let mut rows: Vec<IndicatorRow> = rows
            .into_iter()
            .map(|(start, fields)| IndicatorRow { start, fields })
            .collect();
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| match order {
                // Rows are 1 s bars: the next start after this one is a second later.
                Order::Asc => r.start.saturating_add(super::BAR_1S_NS),
                Order::Desc => r.start,
            })
        } else {
            None
        };
        Ok(IndicatorPage { rows, next })
    }

    /// Number of stored indicator rows (all symbols).
    pub async fn count_indicators(&self) -> Result<i64, StoreError> {
        let n: (i64,) = self
            .bounded(async {
                Ok(on_pool!(&self.history, p => {
                    sqlx::query_as("SELECT COUNT(*) FROM indicators")
                        .fetch_one(p)
                        .await?
                }))
            })
            .await?;
        Ok(n.0)
    }
}
