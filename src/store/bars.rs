//! Stored bars: the pipeline's closed bars of every configured interval (1 s ... 1 d), inserted
//! write-behind beside the ticks (and by `tickcast import`), and the `/bars` read over them.
//!
//! A bar's identity is (symbol, interval, start, epoch): a retried batch stores each bar once,
//! and a window that spans a restart keeps one partial bar per run. The read serves each
//! interval from its own rows, never rolled up from another interval; it merges the rows of one
//! start (one per run): open of the first run, close of the last, the extremes, and the sums of
//! volume and trades.

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

/// The last stored bar of a range, as an index probe (the `order=desc` page's seek).
pub(crate) const LAST_BAR_SQL: &str = "SELECT ts FROM bars \
     WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 ORDER BY ts DESC LIMIT 1";

/// The stored bars of a range in index order (no sort); `bars` bounds the range by the page.
pub(crate) const SCAN_BARS_SQL: &str = "SELECT ts, open, high, low, close, volume, trades \
     FROM bars WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 ORDER BY ts, epoch";

/// SQLite allows 32,766 bound parameters per statement; 10 per bar row.
pub(crate) const SQLITE_ROWS_PER_INSERT: usize = 3000;

/// One closed bar as the pipeline published it, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct BarRecord {
    pub symbol: Arc<str>,
    /// The interval's length, ns (`BarInterval::ns`: [`BAR_1S_NS`], [`BAR_1M_NS`], ...).
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

/// The order of a history page: oldest first (`asc`, the default) or newest first (`desc`,
/// "the latest N").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// One page of `/bars`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarPage {
    /// In the page's order.
    pub bars: Vec<BarRow>,
    /// Where the next page starts, ns: its `from` (asc) or its exclusive `to` (desc); `None`
    /// when nothing follows.
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

    /// The stored bars of `interval_ns` over `from <= start < to`, at most `limit`, in `order`,
    /// and where the next page starts (`None` on the last page).
    ///
    /// Cost is bounded by the page, not the range: an index seek finds the first (asc) or last
    /// (desc) stored bar, a scan covers the starts still wanted from there, read in index order
    /// (no sort) and merged here; gaps are skipped by seeking again, at most
    /// [`MAX_WINDOWS_PER_PAGE`] times, so a page over sparse data can hold fewer than `limit`
    /// bars. One more seek says whether anything follows; `next` is then the boundary where this
    /// page stopped.
    pub(crate) async fn bars(
        &self,
        symbol: &str,
        interval_ns: i64,
        (from, to): (i64, i64),
        limit: usize,
        order: Order,
    ) -> Result<BarPage, StoreError> {
        let mut bars: Vec<BarRow> = Vec::new();
        let (mut from, mut to) = (from, to);
        let span = |n: usize| interval_ns.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX));
        for _ in 0..MAX_WINDOWS_PER_PAGE {
            let wanted = limit - bars.len();
            match order {
                Order::Asc => {
                    let Some(first) = self
                        .seek_bar(FIRST_BAR_SQL, symbol, interval_ns, from, to)
                        .await?
                    else {
                        return Ok(BarPage { bars, next: None });
                    };
                    let scan_to = to.min(first.saturating_add(span(wanted)));
                    self.scan_bars(symbol, interval_ns, from, scan_to, &mut bars)
                        .await?;
                    if scan_to >= to {
                        return Ok(BarPage { bars, next: None });
                    }
                    from = scan_to;
                }
                Order::Desc => {
                    let Some(last) = self
                        .seek_bar(LAST_BAR_SQL, symbol, interval_ns, from, to)
                        .await?
                    else {
                        return Ok(BarPage { bars, next: None });
                    };
                    let scan_from = from.max(last.saturating_sub(span(wanted - 1)));
                    let mut window = Vec::new();
                    self.scan_bars(symbol, interval_ns, scan_from, to, &mut window)
                        .await?;
                    bars.extend(window.into_iter().rev());
                    if scan_from <= from {
                        return Ok(BarPage { bars, next: None });
                    }
                    to = scan_from;
                }
            }
            if bars.len() >= limit {
                break;
            }
        }
        // The page stopped at a start boundary (`from` or `to`); is there anything beyond it?
        let (sql, boundary) = match order {
            Order::Asc => (FIRST_BAR_SQL, from),
            Order::Desc => (LAST_BAR_SQL, to),
        };
        let next = self
            .seek_bar(sql, symbol, interval_ns, from, to)
            .await?
            .map(|_| boundary);
        Ok(BarPage { bars, next })
    }

    /// Reads the stored bars in `[from, to)` in index order and merges them into `bars`, one
    /// per start: open of the first run, close of the last.
    async fn scan_bars(
        &self,
        symbol: &str,
        interval_ns: i64,
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
                    .bind(interval_ns)
                    .bind(from)
                    .bind(to)
                    .fetch_all(p)
                    .await?
                }))
            })
            .await?;
        for (start, open, high, low, close, volume, trades) in rows {
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

    /// Start of the first ([`FIRST_BAR_SQL`]) or last ([`LAST_BAR_SQL`]) stored bar of
    /// `interval_ns` in `[from, to)`: one index seek.
    async fn seek_bar(
        &self,
        sql: &'static str,
        symbol: &str,
        interval_ns: i64,
        from: i64,
        to: i64,
    ) -> Result<Option<i64>, StoreError> {
        let found: Option<(i64,)> = self
            .bounded(async {
                Ok(on_pool!(&self.history, p => {
                    sqlx::query_as(sql)
                    .bind(symbol)
                    .bind(interval_ns)
                    .bind(from)
                    .bind(to)
                    .fetch_optional(p)
                    .await?
                }))
            })
            .await?;
        Ok(found.map(|(ts,)| ts))
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
