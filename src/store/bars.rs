//! Stored bars: the pipeline's closed 1 s and 1 m bars, inserted write-behind beside the ticks,
//! and the `/bars` read over them.
//!
//! A bar's identity is (symbol, interval, start, epoch): a retried batch stores each bar once,
//! and a window that spans a restart keeps one partial bar per run. The read merges the bars of
//! one bucket (one start for `1s`/`1m`, every 1 m bar under it for `5m`/`1h`/`1d`): open of the
//! first (by start, then run), close of the last, the extremes, and the sums of volume and trades.

use std::sync::Arc;

use sqlx::{QueryBuilder, Sqlite};

use super::{Db, Store, StoreError};

/// Length of a stored 1 s bar, ns.
pub const BAR_1S_NS: i64 = 1_000_000_000;
/// Length of a stored 1 m bar, ns.
pub const BAR_1M_NS: i64 = 60_000_000_000;

/// SQLite allows 32,766 bound parameters per statement; 10 per bar row.
const SQLITE_ROWS_PER_INSERT: usize = 3000;

/// One closed bar as the pipeline published it, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct BarRecord {
    pub symbol: Arc<str>,
    /// [`BAR_1S_NS`] or [`BAR_1M_NS`].
    pub interval_ns: i64,
    /// Bar start, ns since the epoch.
    pub start: i64,
    /// The server run that built it (see `TickRow::epoch`).
    pub epoch: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub trades: i64,
}

/// One OHLCV bar as `/bars` returns it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarRow {
    /// Bucket start, ns since the epoch.
    pub start: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub trades: i64,
}

// === impl Store: bars ===

impl Store {
    /// Inserts closed bars in one transaction; a bar already stored (same identity) is skipped.
    /// Returns how many were new.
    pub async fn insert_bars(&self, rows: &[BarRecord]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let write = async {
            match &self.db {
                Db::Sqlite(p) => {
                    let mut tx = p.begin().await?;
                    let mut inserted = 0;
                    for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
                        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                            "INSERT INTO bars (symbol, interval_ns, ts, epoch, open, high, low, \
                             close, volume, trades) ",
                        );
                        qb.push_values(chunk, |mut b, r| {
                            b.push_bind(&*r.symbol)
                                .push_bind(r.interval_ns)
                                .push_bind(r.start)
                                .push_bind(r.epoch)
                                .push_bind(r.open)
                                .push_bind(r.high)
                                .push_bind(r.low)
                                .push_bind(r.close)
                                .push_bind(r.volume)
                                .push_bind(r.trades);
                        });
                        qb.push(" ON CONFLICT DO NOTHING");
                        inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                    }
                    tx.commit().await.map(|()| inserted)
                }
                Db::Postgres(p) => {
                    let col = |f: fn(&BarRecord) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
                    let int = |f: fn(&BarRecord) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
                    let symbols: Vec<&str> = rows.iter().map(|r| &*r.symbol).collect();
                    sqlx::query(
                        "INSERT INTO bars (symbol, interval_ns, ts, epoch, open, high, low, close, \
                         volume, trades) \
                         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], \
                         $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::float8[], \
                         $10::int8[]) ON CONFLICT DO NOTHING",
                    )
                    .bind(symbols)
                    .bind(int(|r| r.interval_ns))
                    .bind(int(|r| r.start))
                    .bind(int(|r| r.epoch))
                    .bind(col(|r| r.open))
                    .bind(col(|r| r.high))
                    .bind(col(|r| r.low))
                    .bind(col(|r| r.close))
                    .bind(col(|r| r.volume))
                    .bind(int(|r| r.trades))
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected())
                }
            }
        };
        let limit = self.timeout.saturating_mul(super::WRITE_TIMEOUT_FACTOR);
        let inserted = tokio::time::timeout(limit, write)
            .await
            .map_err(|_| StoreError::Timeout(limit))??;
        Ok(inserted)
    }

    /// OHLCV bars of `bucket_ns` over `from <= start < to`, oldest first, at most `limit`,
    /// merged from the stored bars of `source_ns` ([`BAR_1S_NS`] or [`BAR_1M_NS`]; a multiple
    /// of it for roll-ups).
    ///
    /// When each bucket is one stored start (`source_ns == bucket_ns`), the range is first cut to
    /// the `limit` starts the page needs (read from the index in order), so the query reads the
    /// bars it returns, not the whole range.
    pub(crate) async fn bars(
        &self,
        symbol: &str,
        source_ns: i64,
        bucket_ns: i64,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<BarRow>, StoreError> {
        let mut to = to;
        if source_ns == bucket_ns {
            let last: (Option<i64>,) = self
                .bounded(async {
                    Ok(on_pool!(&self.read, p => {
                        sqlx::query_as(
                            "SELECT MAX(ts) FROM (SELECT DISTINCT ts FROM bars \
                             WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 \
                             ORDER BY ts LIMIT $5) t",
                        )
                        .bind(symbol)
                        .bind(source_ns)
                        .bind(from)
                        .bind(to)
                        .bind(limit as i64)
                        .fetch_one(p)
                        .await?
                    }))
                })
                .await?;
            match last.0 {
                None => return Ok(Vec::new()),
                Some(last) => to = to.min(last.saturating_add(1)),
            }
        }
        type Row = (i64, f64, f64, f64, f64, f64, i64);
        let rows: Vec<Row> = self.bounded(async { Ok(on_pool!(&self.read, p => {
            sqlx::query_as(
                "SELECT bucket, MIN(o), MAX(high), MIN(low), MIN(c), SUM(volume), \
                   CAST(SUM(trades) AS BIGINT) FROM ( \
                   SELECT ts / $2 AS bucket, high, low, volume, trades, \
                     FIRST_VALUE(open) OVER w AS o, LAST_VALUE(close) OVER w AS c \
                   FROM bars WHERE symbol = $1 AND interval_ns = $3 AND ts >= $4 AND ts < $5 \
                   WINDOW w AS (PARTITION BY ts / $2 ORDER BY ts, epoch \
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) \
                 ) t GROUP BY bucket ORDER BY bucket LIMIT $6",
            )
            .bind(symbol)
            .bind(bucket_ns)
            .bind(source_ns)
            .bind(from)
            .bind(to)
            .bind(limit as i64)
            .fetch_all(p)
            .await?
        })) }).await?;
        Ok(rows
            .into_iter()
            .map(|(bucket, open, high, low, close, volume, trades)| BarRow {
                start: bucket.saturating_mul(bucket_ns),
                open,
                high,
                low,
                close,
                volume,
                trades,
            })
            .collect())
    }

    /// Number of stored bars of one interval (all symbols).
    pub async fn count_bars(&self, interval_ns: i64) -> Result<i64, StoreError> {
        let n: (i64,) = self
            .bounded(async {
                Ok(on_pool!(&self.read, p => {
                    sqlx::query_as("SELECT COUNT(*) FROM bars WHERE interval_ns = $1")
                        .bind(interval_ns)
                        .fetch_one(p)
                        .await?
                }))
            })
            .await?;
        Ok(n.0)
    }
}
