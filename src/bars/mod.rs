//! OHLCV bar builders: one [`BarBuilder`] per (symbol, interval), fed with trades, emitting bars
//! aligned to wall-clock boundaries (1 s and 1 m in tickcast; any interval in ms works).
//!
//! # Rules
//! - **Windows.** A trade with exchange time `ts` (ms since the Unix epoch) belongs to the window
//!   `[start, start + interval)` with `start = floor(ts / interval) * interval` (floor, also for
//!   negative times), so bars of every symbol line up on the same boundaries.
//! - **Bar fields.** `open` is the first trade to arrive in the bar, `close` the last, `high` /
//!   `low` the extremes, `volume` the sum of sizes and `trades` the number of trades. Arrival order,
//!   not exchange-time order, decides open and close.
//! - **Empty intervals are omitted.** An interval with no trades produces no bar at all: no
//!   zero-volume bar, no bar repeating the previous close. Consumers see a gap in `start`.
//! - **Closing.** A bar closes when the wall clock passes its end ([`BarBuilder::close_until`]
//!   with `now_ms >= start + interval`), or earlier, when a trade for a later window arrives (the
//!   exchange clock has moved on). Either way the bar is handed out by the next `close_until`,
//!   oldest first, exactly once.
//! - **Late ticks.** Once a window is closed, every earlier window is closed too: the builder keeps
//!   a *frontier*, the start of the oldest window still open (the open bar's start, or the current
//!   wall-clock window after `close_until`). A trade whose window starts before the frontier is
//!   *late*: it is counted in [`BarBuilder::late_ticks`] and folded into the current open bar, as
//!   if it had happened now: its price updates close, high and low, its size adds to volume and it
//!   counts as a trade (open is kept). If no bar is open, the late trade opens the bar of the
//!   frontier window. Closed bars are never reopened or re-sent.
//! - **In-progress bar.** [`BarBuilder::current`] is the open bar, for `"final": false` updates.
//!
//! Input: prices must be finite and strictly positive, sizes finite and non-negative;
//! [`BarBuilder::on_trade`] skips anything else and returns `false`.
//!
//! All of this is pure computation: the caller supplies the wall clock (`now_ms`), so tests need
//! no real time.

use std::fmt;
use std::mem;

/// One OHLCV bar over `[start_ms, start_ms + interval_ms)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bar {
    /// Window start, ms since the Unix epoch, a multiple of `interval_ms`.
    pub start_ms: i64,
    /// Window length in ms (1000 for 1 s bars, 60 000 for 1 m bars).
    pub interval_ms: i64,
    /// Price of the first trade to arrive in the bar.
    pub open: f64,
    /// Highest trade price.
    pub high: f64,
    /// Lowest trade price.
    pub low: f64,
    /// Price of the last trade to arrive in the bar.
    pub close: f64,
    /// Sum of trade sizes.
    pub volume: f64,
    /// Number of trades, late ones included.
    pub trades: u64,
}

// === impl Bar ===

impl Bar {
    /// A bar holding one trade.
    fn first(start_ms: i64, interval_ms: i64, price: f64, size: f64) -> Self {
        Self {
            start_ms,
            interval_ms,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: size,
            trades: 1,
        }
    }

    /// Folds one more trade into the bar.
    fn add(&mut self, price: f64, size: f64) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
        self.volume += size;
        self.trades += 1;
    }

    /// End of the window (exclusive), ms since the Unix epoch.
    pub(crate) fn end_ms(&self) -> i64 {
        self.start_ms.saturating_add(self.interval_ms)
    }
}

/// A bar interval that is not a positive number of milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InvalidInterval(pub i64);

impl fmt::Display for InvalidInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bar interval must be a positive number of ms, got {}",
            self.0
        )
    }
}

impl std::error::Error for InvalidInterval {}

/// Builds the bars of one symbol at one interval.
#[derive(Clone, Debug)]
pub(crate) struct BarBuilder {
    /// Window length in ms, > 0.
    interval_ms: i64,
    /// The bar accepting trades, if any trade arrived since the last bar closed.
    open: Option<Bar>,
    /// Bars closed by a trade of a later window, waiting for the next `close_until`.
    closed: Vec<Bar>,
    /// Start of the oldest window still open; every window starting before it is closed.
    frontier_ms: i64,
    /// Trades that arrived for an already-closed window.
    late_ticks: u64,
}

// === impl BarBuilder ===

impl BarBuilder {
    /// A builder for `interval_ms`-long bars; the interval must be positive.
    pub fn new(interval_ms: i64) -> Result<Self, InvalidInterval> {
        if interval_ms <= 0 {
            return Err(InvalidInterval(interval_ms));
        }
        Ok(Self {
            interval_ms,
            open: None,
            closed: Vec::new(),
            frontier_ms: i64::MIN,
            late_ticks: 0,
        })
    }

    /// Start of the window holding `ts_ms`: the largest multiple of the interval `<= ts_ms`.
    pub(crate) fn window_start(&self, ts_ms: i64) -> i64 {
        // Saturating: a timestamp within one interval of i64::MIN has no representable window
        // start; clamp instead of overflowing on garbage input.
        ts_ms.saturating_sub(ts_ms.rem_euclid(self.interval_ms))
    }

    /// Feeds one trade. Returns `false`, changing nothing, if the price is not finite and positive
    /// or the size not finite and non-negative.
    pub(crate) fn on_trade(&mut self, exchange_ts_ms: i64, price: f64, size: f64) -> bool {
        if !(price.is_finite() && price > 0.0 && size.is_finite() && size >= 0.0) {
            return false;
        }
        let start = self.window_start(exchange_ts_ms);
        if start < self.frontier_ms {
            self.late_ticks += 1;
            match &mut self.open {
                Some(bar) => bar.add(price, size),
                None => {
                    self.open = Some(Bar::first(self.frontier_ms, self.interval_ms, price, size));
                }
            }
            return true;
        }
        match &mut self.open {
            Some(bar) if bar.start_ms == start => bar.add(price, size),
            open => {
                // No bar open, or the trade is for a later window than the open bar: that bar is
                // done, by the exchange's clock.
                if let Some(done) = open.replace(Bar::first(start, self.interval_ms, price, size)) {
                    self.closed.push(done);
                }
                self.frontier_ms = start;
            }
        }
        true
    }

    /// Closes every bar whose window has ended by wall-clock time `now_ms` (ms since the Unix
    /// epoch), and returns them with any bar closed earlier by a later trade, oldest first. Each
    /// bar is returned once. Windows without trades produce no bar.
    pub(crate) fn close_until(&mut self, now_ms: i64) -> Vec<Bar> {
        if self.open.is_some_and(|bar| bar.end_ms() <= now_ms) {
            self.closed.extend(self.open.take());
        }
        self.frontier_ms = self.frontier_ms.max(self.window_start(now_ms));
        mem::take(&mut self.closed)
    }

    /// The bar still accepting trades, for `"final": false` updates.
    pub(crate) fn current(&self) -> Option<&Bar> {
        self.open.as_ref()
    }

    /// How many trades arrived for an already-closed window (and were folded into the open bar).
    pub(crate) fn late_ticks(&self) -> u64 {
        self.late_ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: i64 = 1_000;
    const MIN: i64 = 60_000;

    fn builder(interval_ms: i64) -> BarBuilder {
        BarBuilder::new(interval_ms).expect("positive interval")
    }

    /// A bar built field by field, for expectations.
    #[allow(clippy::too_many_arguments)]
    fn bar(start_ms: i64, iv: i64, o: f64, h: f64, l: f64, c: f64, v: f64, n: u64) -> Bar {
        Bar {
            start_ms,
            interval_ms: iv,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v,
            trades: n,
        }
    }

    /// From-scratch reference: sort trades by exchange time (stable, so arrival order decides
    /// within a window), group consecutive trades by window start, one bar per non-empty group.
    fn reference(trades: &[(i64, f64, f64)], iv: i64) -> Vec<Bar> {
        let mut sorted = trades.to_vec();
        sorted.sort_by_key(|t| t.0);
        let mut bars: Vec<Bar> = Vec::new();
        for (ts, p, s) in sorted {
            let start = ts.div_euclid(iv) * iv;
            match bars.last_mut() {
                Some(b) if b.start_ms == start => {
                    b.high = b.high.max(p);
                    b.low = b.low.min(p);
                    b.close = p;
                    b.volume += s;
                    b.trades += 1;
                }
                _ => bars.push(bar(start, iv, p, p, p, p, s, 1)),
            }
        }
        bars
    }

    #[test]
    fn invalid_interval() {
        assert_eq!(BarBuilder::new(0).err(), Some(InvalidInterval(0)));
        assert_eq!(BarBuilder::new(-5).err(), Some(InvalidInterval(-5)));
        assert!(InvalidInterval(0).to_string().contains("positive"));
    }

    #[test]
    fn window_alignment() {
        let b = builder(SEC);
        for (ts, start) in [
            (0, 0),
            (999, 0),
            (1_000, 1_000),
            (1_764_070_000_123, 1_764_070_000_000),
            (-1, -1_000),
            (-1_000, -1_000),
            (-1_001, -2_000),
            (i64::MIN, i64::MIN), // clamped, no overflow
        ] {
            assert_eq!(b.window_start(ts), start, "ts {ts}");
        }
        assert_eq!(
            builder(MIN).window_start(1_764_070_059_999),
            1_764_070_020_000
        );
    }

    #[test]
    fn hand_worked_one_second_bars() {
        let mut b = builder(SEC);
        // Window [10 000, 11 000): 10 x 1, 12 x 2, 9 x 3, 11 x 4.
        for (ts, p, s) in [
            (10_000, 10.0, 1.0),
            (10_250, 12.0, 2.0),
            (10_500, 9.0, 3.0),
            (10_999, 11.0, 4.0),
        ] {
            assert!(b.on_trade(ts, p, s));
        }
        // Window still open at 10 999 ms wall clock.
        assert_eq!(b.close_until(10_999), []);
        assert_eq!(
            b.current(),
            Some(&bar(10_000, SEC, 10.0, 12.0, 9.0, 11.0, 10.0, 4))
        );
        // Closes exactly at its end: O 10, H 12, L 9, C 11, V 1 + 2 + 3 + 4 = 10, 4 trades.
        assert_eq!(
            b.close_until(11_000),
            [bar(10_000, SEC, 10.0, 12.0, 9.0, 11.0, 10.0, 4)]
        );
        assert_eq!(b.current(), None);
        assert_eq!(b.close_until(20_000), [], "each bar is emitted once");
        assert_eq!(b.late_ticks(), 0);
    }

    #[test]
    fn empty_intervals_are_omitted() {
        let mut b = builder(SEC);
        b.on_trade(1_500, 5.0, 1.0);
        b.on_trade(4_200, 6.0, 2.0); // windows 2 000 and 3 000 have no trades
        assert_eq!(
            b.close_until(10_000),
            [
                bar(1_000, SEC, 5.0, 5.0, 5.0, 5.0, 1.0, 1),
                bar(4_000, SEC, 6.0, 6.0, 6.0, 6.0, 2.0, 1),
            ]
        );
        assert_eq!(b.close_until(20_000), []);
    }

    #[test]
    fn later_trade_closes_bar_before_wall_clock() {
        let mut b = builder(SEC);
        b.on_trade(1_100, 5.0, 1.0);
        b.on_trade(2_100, 7.0, 1.0); // exchange clock moved on
        // Wall clock lags the exchange: bar 1 000 is still handed out, bar 2 000 stays open.
        assert_eq!(
            b.close_until(1_500),
            [bar(1_000, SEC, 5.0, 5.0, 5.0, 5.0, 1.0, 1)]
        );
        assert_eq!(b.current().map(|b| b.start_ms), Some(2_000));
    }

    #[test]
    fn late_tick_folds_into_open_bar() {
        let mut b = builder(SEC);
        b.on_trade(1_100, 10.0, 1.0);
        b.on_trade(2_100, 11.0, 1.0); // closes bar 1 000
        // Late: window 1 000 is closed. Folded into bar 2 000: high 15, close 15, volume 3.
        b.on_trade(1_900, 15.0, 2.0);
        // Late as well, and a new low.
        b.on_trade(500, 3.0, 1.0);
        assert_eq!(b.late_ticks(), 2);
        assert_eq!(
            b.current(),
            Some(&bar(2_000, SEC, 11.0, 15.0, 3.0, 3.0, 4.0, 3))
        );
        assert_eq!(
            b.close_until(3_000),
            [
                bar(1_000, SEC, 10.0, 10.0, 10.0, 10.0, 1.0, 1),
                bar(2_000, SEC, 11.0, 15.0, 3.0, 3.0, 4.0, 3),
            ]
        );
    }

    #[test]
    fn late_tick_with_no_open_bar_opens_the_current_window() {
        let mut b = builder(SEC);
        b.on_trade(1_100, 10.0, 1.0);
        assert_eq!(b.close_until(5_300).len(), 1); // frontier is now window 5 000
        // Exchange time 4 900 is in window 4 000, closed by the wall clock (empty, omitted).
        b.on_trade(4_900, 12.0, 2.0);
        assert_eq!(b.late_ticks(), 1);
        assert_eq!(
            b.current(),
            Some(&bar(5_000, SEC, 12.0, 12.0, 12.0, 12.0, 2.0, 1))
        );
        // A trade in the frontier window itself is on time.
        b.on_trade(5_400, 13.0, 1.0);
        assert_eq!(b.late_ticks(), 1);
        assert_eq!(
            b.close_until(6_000),
            [bar(5_000, SEC, 12.0, 13.0, 12.0, 13.0, 3.0, 2)]
        );
    }

    #[test]
    fn one_minute_bars() {
        let mut b = builder(MIN);
        let t0 = 1_764_070_020_000; // a minute boundary
        b.on_trade(t0 + 1, 100.0, 1.0);
        b.on_trade(t0 + 59_999, 101.0, 1.0);
        assert_eq!(b.close_until(t0 + 59_999), []);
        b.on_trade(t0 + 60_000, 99.0, 1.0);
        assert_eq!(
            b.close_until(t0 + 60_500),
            [bar(t0, MIN, 100.0, 101.0, 100.0, 101.0, 2.0, 2)]
        );
        assert_eq!(b.close_until(i64::MAX).len(), 1, "flush at shutdown");
    }

    #[test]
    fn invalid_trades_are_skipped() {
        let mut b = builder(SEC);
        for (p, s) in [
            (f64::NAN, 1.0),
            (0.0, 1.0),
            (-1.0, 1.0),
            (f64::INFINITY, 1.0),
            (1.0, -1.0),
            (1.0, f64::NAN),
        ] {
            assert!(!b.on_trade(1_000, p, s));
        }
        assert_eq!(b.current(), None);
        assert!(b.on_trade(1_000, 1.0, 0.0), "zero size is a valid trade");
    }

    /// Trades on a millisecond clock spanning a few 1 s windows, with repeated timestamps.
    fn trades() -> impl Strategy<Value = Vec<(i64, f64, f64)>> {
        prop::collection::vec((-3_000i64..8_000, 0.01f64..1e4, 0.0f64..1e3), 0..80)
    }

    proptest! {
        #[test]
        fn in_order_trades_equal_grouping(
            mut trades in trades(),
            iv in prop_oneof![Just(SEC), Just(MIN), 1i64..3_000],
            clock in prop::collection::vec(any::<bool>(), 80),
        ) {
            trades.sort_by_key(|t| t.0);
            let mut b = builder(iv);
            let mut bars = Vec::new();
            for (i, &(ts, p, s)) in trades.iter().enumerate() {
                // Sometimes let the wall clock reach this trade's time first (never past it, so
                // no trade is late).
                if clock[i] {
                    bars.extend(b.close_until(ts));
                }
                prop_assert!(b.on_trade(ts, p, s));
            }
            bars.extend(b.close_until(i64::MAX));
            prop_assert_eq!(b.late_ticks(), 0);
            prop_assert_eq!(bars, reference(&trades, iv));
        }

        #[test]
        fn out_of_order_trades_conserve_and_count_late(trades in trades(), iv in 1i64..3_000) {
            let mut b = builder(iv);
            let mut late = 0;
            let mut newest_start: Option<i64> = None;
            for &(ts, p, s) in &trades {
                // Without wall-clock closes, a trade is late exactly when an earlier arrival was
                // in a later window.
                let start = ts.div_euclid(iv) * iv;
                if newest_start.is_some_and(|n| start < n) {
                    late += 1;
                }
                newest_start = newest_start.max(Some(start));
                b.on_trade(ts, p, s);
            }
            let open_start = b.current().map(|bar| bar.start_ms);
            let bars = b.close_until(i64::MAX);
            prop_assert_eq!(b.late_ticks(), late);
            prop_assert_eq!(open_start, newest_start);
            // Bars come out in strictly increasing, aligned windows.
            for w in bars.windows(2) {
                prop_assert!(w[0].start_ms < w[1].start_ms);
            }
            for bar in &bars {
                prop_assert_eq!(bar.start_ms.rem_euclid(iv), 0);
                prop_assert!(bar.low <= bar.open.min(bar.close) && bar.high >= bar.open.max(bar.close));
            }
            // Nothing is lost: every trade, its size and its price extremes end up in some bar.
            prop_assert_eq!(bars.iter().map(|b| b.trades).sum::<u64>(), trades.len() as u64);
            let vol_bars: f64 = bars.iter().map(|b| b.volume).sum();
            let vol_trades: f64 = trades.iter().map(|t| t.2).sum();
            prop_assert!((vol_bars - vol_trades).abs() <= 1e-9 * vol_trades.max(1.0));
            let hi = trades.iter().map(|t| t.1).fold(f64::MIN, f64::max);
            let lo = trades.iter().map(|t| t.1).fold(f64::MAX, f64::min);
            if !trades.is_empty() {
                prop_assert_eq!(bars.iter().map(|b| b.high).fold(f64::MIN, f64::max), hi);
                prop_assert_eq!(bars.iter().map(|b| b.low).fold(f64::MAX, f64::min), lo);
            }
        }
    }
}
