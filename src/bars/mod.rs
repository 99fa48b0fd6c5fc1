//! OHLCV bar builders: one [`BarBuilder`] per (symbol, interval), fed with trades, emitting bars
//! aligned to exchange-time boundaries (1 s and 1 m in tickcast; any interval in ms works).
//!
//! Bars follow the **event time** of the data, the exchange clock, never the server's clock
//! alone: a file replayed at any speed yields exactly the bars its timestamps define, whether it
//! is stamped two days ago or next week.
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
//! - **Closing.** A bar closes when the symbol's *event clock* passes its end
//!   ([`BarBuilder::close_until`] with `clock_ms >= start + interval`), or when a trade for a
//!   later window arrives (the exchange clock has moved on). Either way the bar is handed out by
//!   the next `close_until`, oldest first, exactly once.
//! - **Event clock.** The pipeline computes `clock_ms` per symbol with [`EventClock`]: the newest
//!   exchange time of the symbol's trades, plus the wall time elapsed since its latest trade
//!   arrived (at 1x), the wall clock being the time of the pipeline batch (which runs
//!   `pipeline.close_delay_ms` after each interval boundary). A live feed's quiet symbol so
//!   closes its bar when the wall clock passes the end (later only for a feed more than the delay
//!   behind); a replayed file's bars close by the file's own time, never by "now". Example, 1 s
//!   bars, close delay 50 ms: a live trade stamped 12:00:00.970 arrives at .990; with no more
//!   trades, the batch at 12:00:01.050 sees the clock at 00.970 + (01.050 - 00.990) = 01.030 and
//!   closes the 12:00:00 bar. A file stamped two days ago and played at 400x has its 12:00:00 bar
//!   closed by its first trade of 12:00:01 (or, after its last trade, once a second of wall time
//!   has passed), never by today's clock.
//! - **Late ticks.** Once a window is closed, every earlier window is closed too: the builder keeps
//!   a *frontier*, the start of the oldest window still open (the open bar's start, or the event
//!   clock's window after `close_until`). A trade whose window starts before the frontier is
//!   *late*: it is counted in [`BarBuilder::late_ticks`] and folded into the current open bar, as
//!   if it had happened now: its price updates close, high and low, its size adds to volume and it
//!   counts as a trade (open is kept). If no bar is open, the late trade opens the bar of the
//!   frontier window. Closed bars are never reopened or re-sent. A file in exchange-time order,
//!   played at 1x or faster, has no late ticks (unless a trade reaches the pipeline more than the
//!   close delay behind the file's pace); one played slower than 1x can (a bar may close by the
//!   1x wall-clock advance before the file's next trade in that bar arrives).
//! - **In-progress bar.** [`BarBuilder::current`] is the open bar, for `"final": false` updates.
//!
//! Input: prices must be finite and strictly positive, sizes finite and non-negative;
//! [`BarBuilder::on_trade`] skips anything else and returns `false`.
//!
//! All of this is pure computation: the caller supplies the clocks, so tests need no real time.

mod clock;

pub(crate) use clock::EventClock;

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

impl Bar {
    /// The bar as the pipeline publishes it (and the recorder and `tickcast import` store it).
    pub(crate) fn event(&self, is_final: bool) -> crate::model::BarEvent {
        crate::model::BarEvent {
            start_ms: self.start_ms,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            trades: self.trades,
            is_final,
        }
    }
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

    /// Closes every bar whose window has ended by event-clock time `clock_ms` (ms since the Unix
    /// epoch, see [`EventClock`]), and returns them with any bar closed earlier by a later trade,
    /// oldest first. Each bar is returned once. Windows without trades produce no bar.
    pub(crate) fn close_until(&mut self, clock_ms: i64) -> Vec<Bar> {
        if self.open.is_some_and(|bar| bar.end_ms() <= clock_ms) {
            self.closed.extend(self.open.take());
        }
        self.frontier_ms = self.frontier_ms.max(self.window_start(clock_ms));
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
mod tests;
