//! Stored bars: the pipeline's closed 1 s and 1 m bars, inserted write-behind beside the ticks,
//! and the `/bars` read over them.
//!
//! A bar's identity is (symbol, interval, start, epoch): a retried batch stores each bar once,
//! and a window that spans a restart keeps one partial bar per run. The read merges the bars of
//! one bucket (one start for `1s`/`1m`, every 1 m bar under it for `5m`/`1h`/`1d`): open of the
//! first (by start, then run), close of the last, the extremes, and the sums of volume and trades.

use std::sync::Arc;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::bulk::BulkRow;
use super::{Store, StoreError};

/// Length of a stored 1 s bar, ns.
pub const BAR_1S_NS: i64 = 1_000_000_000;
/// Length of a stored 1 m bar, ns.
pub const BAR_1M_NS: i64 = 60_000_000_000;

/// Seek-and-scan rounds one `/bars` page may take to skip gaps in sparse data.
const MAX_WINDOWS_PER_PAGE: usize = 4;

/// The first stored bar of a range, as an index probe: `ORDER BY ts LIMIT 1` stops at the first
/// index entry, where `MIN(ts)` is an aggregate over every matching row unless the planner
/// rewrites it (PostgreSQL does not when its statistics are stale, as after a bulk load).
pub(crate) const FIRST_BAR_SQL: &str = "SELECT ts FROM bars \
     WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 ORDER BY ts LIMIT 1";

/// The stored bars of a range in index order (no sort); `bars` bounds the range by the page.
pub(crate) const SCAN_BARS_SQL: &str = "SELECT ts, open, high, low, close, volume, trades \
     FROM bars WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 ORDER BY ts, epoch";

/// SQLite allows 32,766 bound parameters per statement; 10 per bar row.
pub(crate) const SQLITE_ROWS_PER_INSERT: usize = 3000;

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

impl BarRecord {
    /// A closed bar as the pipeline publishes it, as stored; `None` for a start past what ns
    /// since the epoch can hold (stored not at all rather than wrapped).
    pub fn from_bar(
        symbol: Arc<str>,
        interval_ns: i64,
        epoch: i64,
        b: &crate::model::BarEvent,
    ) -> Option<Self> {
        Some(Self {
            symbol,
            interval_ns,
            start: b.start_ms.checked_mul(1_000_000)?,
            epoch,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
            trades: i64::try_from(b.trades).unwrap_or(i64::MAX),
        })
    }
}

/// One page of `/bars`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarPage {
    pub bars: Vec<BarRow>,
    /// Start (ns) of the next page's first bucket; `None` when nothing follows.
    pub next: Option<i64>,
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

/// One multi-row SQLite `INSERT INTO bars` of `rows` (at most [`SQLITE_ROWS_PER_INSERT`]),
/// ending with `conflict` (the recorder skips a stored bar; an import replaces a changed one).
pub(crate) fn sqlite_bars_insert<'a>(
    rows: &'a [BarRecord],
    conflict: &str,
) -> QueryBuilder<'a, Sqlite> {
    BarRecord::sqlite_insert(rows, conflict)
}

impl BulkRow for BarRecord {
    const SQLITE_ROWS_PER_INSERT: usize = SQLITE_ROWS_PER_INSERT;

    fn sqlite_insert<'a>(rows: &'a [Self], conflict: &str) -> QueryBuilder<'a, Sqlite> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO bars (symbol, interval_ns, ts, epoch, open, high, low, close, volume, \
             trades) ",
        );
        qb.push_values(rows, |mut b, r| {
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
        qb.push(conflict);
        qb
    }

    fn postgres_insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments> {
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
    }
}

// === impl Store: bars ===

impl Store {
    /// Inserts closed bars in one transaction ([`BulkRow`]); a bar already stored (same
    /// identity) is skipped. Returns how many were new.
    pub async fn insert_bars(&self, rows: &[BarRecord]) -> Result<u64, StoreError> {
        self.insert_bulk(rows).await
    }

    /// OHLCV bars of `bucket_ns` over `from <= start < to`, oldest first, at most `limit`,
    /// merged from the stored bars of `source_ns` ([`BAR_1S_NS`] or [`BAR_1M_NS`]; a multiple
    /// of it for roll-ups), and where the next page starts (`None` on the last page).
    ///
    /// Cost is bounded by the page, not the range: an index seek finds the first stored bar, a
    /// scan covers the buckets still wanted from there, read in index order (no sort) and merged
    /// here; gaps are skipped by seeking again, at most [`MAX_WINDOWS_PER_PAGE`] times, so a
    /// page over sparse data can hold fewer than `limit` bars. One more seek says whether
    /// anything follows; `next` is then the boundary where this page stopped.
    pub(crate) async fn bars(
        &self,
        symbol: &str,
        source_ns: i64,
        bucket_ns: i64,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<BarPage, StoreError> {
        let mut bars: Vec<BarRow> = Vec::new();
        let mut from = from;
        for _ in 0..MAX_WINDOWS_PER_PAGE {
            let Some(first) = self.first_bar(symbol, source_ns, from, to).await? else {
                return Ok(BarPage { bars, next: None });
            };
            let window = first.div_euclid(bucket_ns).saturating_mul(bucket_ns);
            let wanted = i64::try_from(limit - bars.len()).unwrap_or(i64::MAX);
            let scan_to = to.min(window.saturating_add(bucket_ns.saturating_mul(wanted)));
            self.scan_bars(symbol, source_ns, bucket_ns, from, scan_to, &mut bars)
                .await?;
            if scan_to >= to {
                return Ok(BarPage { bars, next: None });
            }
            from = scan_to;
            if bars.len() >= limit {
                break;
            }
        }
        // `from` is the bucket boundary where this page stopped; is there anything after it?
        let next = self
            .first_bar(symbol, source_ns, from, to)
            .await?
            .map(|_| from);
        Ok(BarPage { bars, next })
    }

    /// Reads the stored bars in `[from, to)` in index order and merges them into `bars`, one
    /// per bucket: open of the first (by start, then run), close of the last.
    async fn scan_bars(
        &self,
        symbol: &str,
        source_ns: i64,
        bucket_ns: i64,
        from: i64,
        to: i64,
        bars: &mut Vec<BarRow>,
    ) -> Result<(), StoreError> {
        type Row = (i64, f64, f64, f64, f64, f64, i64);
        let rows: Vec<Row> = self
            .bounded(async {
                Ok(on_pool!(&self.history, p => {
                    sqlx::query_as(SCAN_BARS_SQL)
                    .bind(symbol)
                    .bind(source_ns)
                    .bind(from)
                    .bind(to)
                    .fetch_all(p)
                    .await?
                }))
            })
            .await?;
        for (ts, open, high, low, close, volume, trades) in rows {
            let start = ts.div_euclid(bucket_ns).saturating_mul(bucket_ns);
            match bars.last_mut() {
                Some(b) if b.start == start => {
                    b.high = b.high.max(high);
                    b.low = b.low.min(low);
                    b.close = close;
                    b.volume += volume;
                    b.trades = b.trades.saturating_add(trades);
                }
                _ => bars.push(BarRow {
                    start,
                    open,
                    high,
                    low,
                    close,
                    volume,
                    trades,
                }),
            }
        }
        Ok(())
    }

    /// Start of the first stored bar of `interval_ns` in `[from, to)`: one index seek.
    async fn first_bar(
        &self,
        symbol: &str,
        interval_ns: i64,
        from: i64,
        to: i64,
    ) -> Result<Option<i64>, StoreError> {
        let first: Option<(i64,)> = self
            .bounded(async {
                Ok(on_pool!(&self.history, p => {
                    sqlx::query_as(FIRST_BAR_SQL)
                    .bind(symbol)
                    .bind(interval_ns)
                    .bind(from)
                    .bind(to)
                    .fetch_optional(p)
                    .await?
                }))
            })
            .await?;
        Ok(first.map(|(ts,)| ts))
    }

    /// Number of stored bars of one interval (all symbols).
    pub async fn count_bars(&self, interval_ns: i64) -> Result<i64, StoreError> {
        let n: (i64,) = self
            .bounded(async {
                Ok(on_pool!(&self.history, p => {
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
