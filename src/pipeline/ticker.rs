//! The rolling 24 h ticker of one symbol, on event time.
//!
//! # The window, exactly
//! Trades are kept in per-minute buckets by exchange time (`minute = floor(xts_ms / 60_000)`).
//! With `M` the minute of the symbol's newest trade (by exchange time), the window is the
//! minutes `M - 1440 ..= M`: the 1,440 complete minutes before the current one, plus the current
//! one. Statistics are over every trade the server has read whose minute is in the window:
//! - `open`: the price of the window's earliest trade by exchange time (ties: the first to
//!   arrive); `last`: the price of its newest (ties: the last to arrive);
//! - `high`, `low`, `volume` (Σ size), `quote_volume` (Σ price × size), `trades` (count);
//! - `change = last - open`, `change_pct = change / open × 100`;
//! - `open_time` = `(M - 1440) × 60_000` ms, `close_time` = the newest trade's exchange time.
//!
//! A trade whose minute is already older than the window is not counted (it is still a tick);
//! one in an older bucket that is still in the window is. The window moves with the symbol's
//! trades only: a symbol that stops trading keeps its last statistics. Memory: at most 1,441
//! buckets of 72 bytes per symbol (about 104 KB for a symbol that trades every minute).

use std::collections::VecDeque;

use crate::model::TickerStats;

/// Minutes before the current one that the window holds.
pub(crate) const WINDOW_MINUTES: i64 = 1_440;
const MINUTE_MS: i64 = 60_000;

/// The trades of one exchange-time minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    minute: i64,
    /// Exchange time (ms) and price of the bucket's earliest and newest trades.
    first: (i64, f64),
    latest: (i64, f64),
    high: f64,
    low: f64,
    volume: f64,
    quote_volume: f64,
    trades: u64,
}

impl Bucket {
    fn new(minute: i64, ts_ms: i64, price: f64, size: f64) -> Self {
        Bucket {
            minute,
            first: (ts_ms, price),
            latest: (ts_ms, price),
            high: price,
            low: price,
            volume: size,
            quote_volume: price * size,
            trades: 1,
        }
    }

    fn add(&mut self, ts_ms: i64, price: f64, size: f64) {
        if ts_ms < self.first.0 {
            self.first = (ts_ms, price);
        }
        if ts_ms >= self.latest.0 {
            self.latest = (ts_ms, price);
        }
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.volume += size;
        self.quote_volume += price * size;
        self.trades += 1;
    }
}

/// A symbol's buckets, oldest first, none older than the window.
#[derive(Debug, Default)]
pub(crate) struct RollingTicker {
    buckets: VecDeque<Bucket>,
}

impl RollingTicker {
    /// Folds one trade in (exchange time in ms); a trade older than the window is skipped.
    pub(crate) fn on_trade(&mut self, ts_ms: i64, price: f64, size: f64) {
        let minute = ts_ms.div_euclid(MINUTE_MS);
        let newest = self.buckets.back().map_or(i64::MIN, |b| b.minute);
        if minute > newest {
            self.buckets
                .push_back(Bucket::new(minute, ts_ms, price, size));
            let oldest_kept = minute - WINDOW_MINUTES;
            while self.buckets.front().is_some_and(|b| b.minute < oldest_kept) {
                self.buckets.pop_front();
            }
            return;
        }
        if minute < newest - WINDOW_MINUTES {
            return;
        }
        // A trade for a minute already seen (or a gap before the newest): its bucket, kept in
        // minute order.
        match self.buckets.binary_search_by_key(&minute, |b| b.minute) {
            Ok(i) => self.buckets[i].add(ts_ms, price, size),
            Err(i) => self
                .buckets
                .insert(i, Bucket::new(minute, ts_ms, price, size)),
        }
    }

    /// The statistics over the window; `None` before the first trade.
    pub(crate) fn stats(&self) -> Option<TickerStats> {
        let newest = self.buckets.back()?;
        let oldest = self.buckets.front()?;
        let mut s = TickerStats {
            open: oldest.first.1,
            high: f64::MIN,
            low: f64::MAX,
            last: newest.latest.1,
            volume: 0.0,
            quote_volume: 0.0,
            change: 0.0,
            change_pct: 0.0,
            trades: 0,
            open_time_ms: (newest.minute - WINDOW_MINUTES) * MINUTE_MS,
            close_time_ms: newest.latest.0,
        };
        for b in &self.buckets {
            s.high = s.high.max(b.high);
            s.low = s.low.min(b.low);
            s.volume += b.volume;
            s.quote_volume += b.quote_volume;
            s.trades += b.trades;
        }
        s.change = s.last - s.open;
        s.change_pct = s.change / s.open * 100.0;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn the_window_is_the_newest_minute_and_the_1440_before_it() {
        let mut t = RollingTicker::default();
        assert!(t.stats().is_none());
        let base = 1_000 * MINUTE_MS;
        t.on_trade(base + 5, 10.0, 1.0); // minute 1000: drops out below
        t.on_trade(base + MINUTE_MS + 1, 20.0, 2.0); // minute 1001: the window's first
        t.on_trade(base + 12 * H, 5.0, 1.0);
        t.on_trade(base + 24 * H + MINUTE_MS + 30, 15.0, 4.0); // minute 2441
        let s = t.stats().unwrap();
        assert_eq!(s.open, 20.0);
        assert_eq!(s.last, 15.0);
        assert_eq!((s.high, s.low), (20.0, 5.0));
        assert_eq!(s.volume, 7.0);
        assert_eq!(s.quote_volume, 40.0 + 5.0 + 60.0);
        assert_eq!(s.trades, 3);
        assert_eq!(s.change, -5.0);
        assert_eq!(s.change_pct, -25.0);
        assert_eq!(s.open_time_ms, 1_001 * MINUTE_MS);
        assert_eq!(s.close_time_ms, base + 24 * H + MINUTE_MS + 30);
    }

    #[test]
    fn late_trades_count_inside_the_window_and_not_before_it() {
        let mut t = RollingTicker::default();
        let base = 5_000 * MINUTE_MS;
        t.on_trade(base + 30 * MINUTE_MS, 10.0, 1.0);
        // Late, 10 minutes back: a bucket of its own, and the window's new open.
        t.on_trade(base + 20 * MINUTE_MS, 8.0, 1.0);
        // The next minute: the newest trade. Then one late into the minute before: counted,
        // but not `last`.
        t.on_trade(base + 31 * MINUTE_MS - 1 + MINUTE_MS, 11.0, 1.0);
        t.on_trade(base + 30 * MINUTE_MS + 10, 12.0, 1.0);
        // Older than the window: skipped.
        t.on_trade(base - 2_000 * MINUTE_MS, 1.0, 100.0);
        let s = t.stats().unwrap();
        assert_eq!((s.open, s.last, s.trades, s.low), (8.0, 11.0, 4, 8.0));
        assert_eq!(s.volume, 4.0);
    }
}
