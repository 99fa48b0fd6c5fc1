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

/// The first stored bar of a range, as an index probe: `ORDER BY ts LIMIT 1` stops at the first
/// index entry, where `MIN(ts)` is an aggregate over every matching row unless the planner
/// rewrites it (PostgreSQL does not when its statistics are stale, as after a bulk load).
pub(crate) const FIRST_BAR_SQL: &str = "SELECT ts FROM bars \
     WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 ORDER BY ts LIMIT 1";

/// The last stored bar of a range, as an index probe (the `order=desc` page's seek).
pub(crate) const LAST_BAR_SQL: &str = "SELECT ts FROM bars \
     WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 ORDER BY ts DESC LIMIT 1";

/// The stored rows of a range in index order (no sort): `bars` reads one start's runs with it.
pub(crate) const SCAN_BARS_SQL: &str = "SELECT ts, open, high, low, close, volume, trades \
     FROM bars WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 ORDER BY ts, epoch";

/// One `/bars` page, oldest first: the first `$5` stored rows from `$3`, a walk of
/// `bars_identity` in index order that stops at its limit, whatever the range's length or its
/// gaps. Rows of one start from several runs are adjacent (`epoch` is the index's last column).
pub(crate) const PAGE_BARS_SQL: &str = "SELECT ts, open, high, low, close, volume, trades \
     FROM bars WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 \
     ORDER BY ts, epoch LIMIT $5";

/// The `order=desc` page: the last `$5` stored rows before `$4`, the same index walked backward.
pub(crate) const PAGE_BARS_DESC_SQL: &str = "SELECT ts, open, high, low, close, volume, trades \
     FROM bars WHERE symbol = $1 AND interval_ns = $2 AND ts >= $3 AND ts < $4 \
     ORDER BY ts DESC, epoch DESC LIMIT $5";

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

/// A stored bar row as the page queries select it: start, open, high, low, close, volume,
/// trades.
type StoredBar = (i64, f64, f64, f64, f64, f64, i64);

/// Rows in (start, epoch) order merged one bar per start: open of the first run, close of the
/// last, the extremes, and the sums.
fn merge(rows: Vec<StoredBar>) -> Vec<BarRow> {
    let mut bars: Vec<BarRow> = Vec::with_capacity(rows.len());
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
    bars
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
    /// Cost is bounded by the page, not the range: one index walk reads the first (asc) or last
    /// (desc) `limit + 1` stored rows ([`PAGE_BARS_SQL`], [`PAGE_BARS_DESC_SQL`]), merged here one
    /// bar per start. A full read means more follows: the bar past the page is dropped (it may
    /// lack runs beyond the limit) and `next` is where this page stopped. Only when runs of one
    /// start fill the read (a restart in every bar) is the last start read whole and one seek
    /// made for what follows.
    pub(crate) async fn bars(
        &self,
        symbol: &str,
        interval_ns: i64,
        (from, to): (i64, i64),
        limit: usize,
        order: Order,
    ) -> Result<BarPage, StoreError> {
        let want = limit.saturating_add(1);
        let sql = match order {
            Order::Asc => PAGE_BARS_SQL,
            Order::Desc => PAGE_BARS_DESC_SQL,
        };
        let mut rows = self
            .bar_rows(sql, symbol, interval_ns, (from, to), Some(want))
            .await?;
        let full = rows.len() == want;
        // Merged in (start, epoch) order whichever way the page reads.
        if order == Order::Desc {
            rows.reverse();
        }
        let mut bars = merge(rows);
        if order == Order::Desc {
            bars.reverse();
        }
        // `bars` is in page order now; its last bar is the far end of what was read.
        if !full {
            return Ok(BarPage { bars, next: None });
        }
        let boundary = |kept: &BarRow| match order {
            Order::Asc => kept.start.saturating_add(interval_ns),
            Order::Desc => kept.start,
        };
        if bars.len() > limit {
            let past = bars.split_off(limit);
            let next = bars.last().map(|kept| match order {
                Order::Asc => boundary(kept).min(past[0].start),
                Order::Desc => boundary(kept),
            });
            return Ok(BarPage { bars, next });
        }
        // Fewer starts than rows: runs of one start share the read, and the far start may have
        // more runs past it. Read that start whole, then look beyond it.
        let Some(far) = bars.pop() else {
            return Ok(BarPage { bars, next: None });
        };
        let whole = self
            .bar_rows(
                SCAN_BARS_SQL,
                symbol,
                interval_ns,
                (far.start, far.start.saturating_add(1)),
                None,
            )
            .await?;
        let whole = merge(whole).pop().unwrap_or(far);
        bars.push(whole);
        let beyond = match order {
            Order::Asc => {
                let after = far.start.saturating_add(1);
                self.seek_bar(FIRST_BAR_SQL, symbol, interval_ns, after, to)
                    .await?
            }
            Order::Desc => {
                self.seek_bar(LAST_BAR_SQL, symbol, interval_ns, from, far.start)
                    .await?
            }
        };
        let next = beyond.map(|_| boundary(&whole));
        Ok(BarPage { bars, next })
    }

    /// The stored rows of `[from, to)` as `sql` reads them (`limit` is its `$5`, when it has
    /// one).
    async fn bar_rows(
        &self,
        sql: &'static str,
        symbol: &str,
        interval_ns: i64,
        (from, to): (i64, i64),
        limit: Option<usize>,
    ) -> Result<Vec<StoredBar>, StoreError> {
        self.bounded(async {
            Ok(on_pool!(&self.history, p => {
                let q = sqlx::query_as(sql)
                    .bind(symbol)
                    .bind(interval_ns)
                    .bind(from)
                    .bind(to);
                match limit {
                    Some(n) => q.bind(i64::try_from(n).unwrap_or(i64::MAX)),
                    None => q,
                }
                .fetch_all(p)
                .await?
            }))
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000 * BAR_1S_NS;

    fn row(start: i64, epoch: i64, open: f64, close: f64) -> BarRecord {
        BarRecord {
            symbol: "RUN".into(),
            interval_ns: BAR_1S_NS,
            start,
            epoch,
            open,
            high: open.max(close),
            low: open.min(close),
            close,
            volume: 1.0,
            trades: 1,
        }
    }

    /// Every start stored by two runs: a page's read of `limit + 1` rows ends inside a start, which
    /// is then read whole (open of the first run, close of the last), and `next` still finds
    /// what follows, both ways; the pages together are every start once.
    #[tokio::test]
    async fn pages_whose_read_ends_inside_a_start_complete_it() {
        let dir = std::env::temp_dir().join(format!("tc-bars-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = crate::config::Config::defaults().unwrap().database;
        cfg.url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
        let store = Store::open(&cfg).unwrap();
        store.migrate().await.unwrap();
        let starts: Vec<i64> = (0..5).map(|i| T0 + i * BAR_1S_NS).collect();
        let rows: Vec<BarRecord> = starts
            .iter()
            .flat_map(|&s| [row(s, 1, 10.0, 11.0), row(s, 2, 12.0, 13.0)])
            .collect();
        store.insert_bars(&rows).await.unwrap();

        for order in [Order::Asc, Order::Desc] {
            let (mut from, mut to) = (0, i64::MAX);
            let mut seen = Vec::new();
            for _ in 0..10 {
                let page = store
                    .bars("RUN", BAR_1S_NS, (from, to), 2, order)
                    .await
                    .unwrap();
                assert!(!page.bars.is_empty() && page.bars.len() <= 2, "{page:?}");
                for b in &page.bars {
                    assert_eq!((b.open, b.close, b.trades), (10.0, 13.0, 2), "{order:?}");
                    seen.push(b.start);
                }
                match (page.next, order) {
                    (None, _) => break,
                    (Some(n), Order::Asc) => from = n,
                    (Some(n), Order::Desc) => to = n,
                }
            }
            if order == Order::Desc {
                seen.reverse();
            }
            assert_eq!(seen, starts, "{order:?}");
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
