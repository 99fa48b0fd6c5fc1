//! Incremental technical indicators for the per-second batching pipeline.
//!
//! Every indicator here is a small state machine fed one value at a time: `update` costs O(1)
//! (a ring buffer of the window plus running sums, never a pass over the window on the hot path)
//! and `value()` is `None` until the indicator has seen enough input. No indicator ever reports a
//! made-up number during warm-up.
//!
//! | indicator | fed with | warm-up | file |
//! | --- | --- | --- | --- |
//! | SMA(n) | bar closes | n closes | [`sma`] |
//! | EMA(n), SMA-seeded | bar closes | n closes | [`ema`] |
//! | RSI(n), Wilder | bar closes | n + 1 closes | [`rsi`] |
//! | Volatility(n), sample std of log returns | bar closes | n closes | [`volatility`] |
//! | VWAP, session | ticks (price, size) | first tick with size > 0 | [`vwap`] |
//!
//! The exact convention of each indicator is written in its own module doc.
//!
//! [`IndicatorSet`] bundles one of each for a symbol: the pipeline calls
//! [`IndicatorSet::on_tick`] for every trade, [`IndicatorSet::on_bar_close`] for every closed bar
//! and [`IndicatorSet::snapshot`] once a second. Each bar-close indicator runs once per configured
//! period (`pipeline.indicators`), in [`IndicatorPeriods`]' order.
//!
//! # Input contract
//! Prices must be finite and strictly positive, sizes finite and non-negative ([`valid_price`],
//! [`valid_size`]). The single-indicator `update` methods `debug_assert!` this and leave the
//! rejection to the caller: one NaN would otherwise poison a running sum for a whole window (EMA and
//! VWAP: forever). [`IndicatorSet`] is the boundary the pipeline talks to, so it checks and skips
//! invalid input itself and reports it by returning `false`.

pub mod ema;
pub mod rsi;
pub mod sma;
pub mod volatility;
pub mod vwap;

use std::fmt;

pub use ema::Ema;
pub use rsi::Rsi;
pub use sma::Sma;
pub use volatility::Volatility;
pub use vwap::Vwap;

/// The periods, and the latest value of every indicator of one symbol (shared with the wire
/// layer).
pub use crate::model::{IndicatorPeriods, IndicatorValues};

/// True for a price the indicators accept: finite and strictly positive.
pub(crate) fn valid_price(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// True for a trade size the indicators accept: finite and non-negative.
pub(crate) fn valid_size(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

/// The longest period any indicator accepts: 10,000 closes (2 h 46 min of 1 s bars). Each period
/// costs every symbol a window of that many closes, so a larger one is a mistake, not a need.
pub const MAX_PERIOD: usize = 10_000;

/// The most periods one indicator may list (each is computed for every symbol on every close).
pub const MAX_PERIODS_PER_INDICATOR: usize = 8;

/// A configured list of periods an indicator refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidPeriod {
    /// A period below the indicator's minimum (for example SMA(0), or a volatility window of 2
    /// prices, which holds a single return and has no sample standard deviation).
    TooSmall {
        /// Which indicator rejected the period, e.g. `"sma"`.
        indicator: &'static str,
        /// The period that was asked for.
        period: usize,
        /// The smallest period that indicator accepts.
        min: usize,
    },
    /// A period above [`MAX_PERIOD`].
    TooLarge {
        indicator: &'static str,
        period: usize,
    },
    /// No period at all: every indicator is computed with at least one.
    Empty { indicator: &'static str },
    /// The same period twice (it would name two fields alike).
    Duplicate {
        indicator: &'static str,
        period: usize,
    },
    /// More than [`MAX_PERIODS_PER_INDICATOR`] periods.
    TooMany {
        indicator: &'static str,
        count: usize,
    },
}

impl InvalidPeriod {
    /// Which indicator rejected its periods (`"sma"`, ...: the key under `pipeline.indicators`).
    pub fn indicator(&self) -> &'static str {
        match self {
            Self::TooSmall { indicator, .. }
            | Self::TooLarge { indicator, .. }
            | Self::Empty { indicator }
            | Self::Duplicate { indicator, .. }
            | Self::TooMany { indicator, .. } => indicator,
        }
    }
}

impl fmt::Display for InvalidPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall {
                indicator,
                period,
                min,
            } => write!(f, "{indicator} period must be at least {min}, got {period}"),
            Self::TooLarge { indicator, period } => write!(
                f,
                "{indicator} period must be at most {MAX_PERIOD}, got {period}"
            ),
            Self::Empty { indicator } => {
                write!(
                    f,
                    "{indicator} needs at least one period, got an empty list"
                )
            }
            Self::Duplicate { indicator, period } => {
                write!(f, "{indicator} period {period} is listed twice")
            }
            Self::TooMany { indicator, count } => write!(
                f,
                "{indicator} takes at most {MAX_PERIODS_PER_INDICATOR} periods, got {count}"
            ),
        }
    }
}

impl std::error::Error for InvalidPeriod {}

/// Checks `min <= period <= MAX_PERIOD` for the named indicator.
pub(crate) fn check_period(
    indicator: &'static str,
    period: usize,
    min: usize,
) -> Result<(), InvalidPeriod> {
    if period < min {
        Err(InvalidPeriod::TooSmall {
            indicator,
            period,
            min,
        })
    } else if period > MAX_PERIOD {
        Err(InvalidPeriod::TooLarge { indicator, period })
    } else {
        Ok(())
    }
}

/// Checks one indicator's list: non-empty, at most [`MAX_PERIODS_PER_INDICATOR`], each period
/// in bounds, none twice.
fn check_periods(
    indicator: &'static str,
    periods: &[usize],
    min: usize,
) -> Result<(), InvalidPeriod> {
    if periods.is_empty() {
        return Err(InvalidPeriod::Empty { indicator });
    }
    if periods.len() > MAX_PERIODS_PER_INDICATOR {
        return Err(InvalidPeriod::TooMany {
            indicator,
            count: periods.len(),
        });
    }
    for (i, &period) in periods.iter().enumerate() {
        check_period(indicator, period, min)?;
        if periods[..i].contains(&period) {
            return Err(InvalidPeriod::Duplicate { indicator, period });
        }
    }
    Ok(())
}

/// A running sum with Neumaier compensation (an improved Kahan summation).
///
/// The sliding-window and session sums add and subtract values for as long as the process runs;
/// plain `f64` addition would let rounding error grow with the number of updates. The
/// compensation term carries the low-order bits lost by each addition, so the error stays at a
/// few ulps of the sum instead of growing with its history.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CompensatedSum {
    /// The naive running sum.
    sum: f64,
    /// Accumulated rounding error of `sum`, added back on read.
    comp: f64,
}

// === impl CompensatedSum ===

impl CompensatedSum {
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub(crate) fn value(&self) -> f64 {
        self.sum + self.comp
    }
}

// === impl IndicatorPeriods ===

// The type lives in `model` beside the values it labels (the wire names its fields after it);
// the bounds it is checked against are the indicators', here.
impl IndicatorPeriods {
    /// Checks every list against its indicator's bounds, so a bad config is refused at startup.
    pub fn validate(&self) -> Result<(), InvalidPeriod> {
        check_periods("sma", &self.sma, sma::MIN_PERIOD)?;
        check_periods("ema", &self.ema, ema::MIN_PERIOD)?;
        check_periods("rsi", &self.rsi, rsi::MIN_PERIOD)?;
        check_periods("volatility", &self.volatility, volatility::MIN_PERIOD)
    }
}

/// All indicators of one symbol, as the pipeline worker owns them: one of each configured
/// period, in [`IndicatorPeriods`]' order.
#[derive(Clone, Debug)]
pub(crate) struct IndicatorSet {
    /// Fed with bar closes.
    sma: Vec<Sma>,
    /// Fed with bar closes.
    ema: Vec<Ema>,
    /// Fed with bar closes.
    rsi: Vec<Rsi>,
    /// Fed with bar closes.
    volatility: Vec<Volatility>,
    /// Fed with ticks; reset at session boundaries.
    vwap: Vwap,
}

// === impl IndicatorSet ===

impl IndicatorSet {
    /// Builds a set with the given periods; fails if any list is refused by
    /// [`IndicatorPeriods::validate`].
    pub fn new(config: &IndicatorPeriods) -> Result<Self, InvalidPeriod> {
        config.validate()?;
        Ok(Self {
            sma: config
                .sma
                .iter()
                .map(|&n| Sma::new(n))
                .collect::<Result<_, _>>()?,
            ema: config
                .ema
                .iter()
                .map(|&n| Ema::new(n))
                .collect::<Result<_, _>>()?,
            rsi: config
                .rsi
                .iter()
                .map(|&n| Rsi::new(n))
                .collect::<Result<_, _>>()?,
            volatility: config
                .volatility
                .iter()
                .map(|&n| Volatility::new(n))
                .collect::<Result<_, _>>()?,
            vwap: Vwap::new(),
        })
    }

    /// Feeds one trade to the tick-based indicators (VWAP). Returns `false`, changing nothing, if
    /// the price is not a [`valid_price`] or the size not a [`valid_size`].
    pub(crate) fn on_tick(&mut self, price: f64, size: f64) -> bool {
        if !valid_price(price) || !valid_size(size) {
            return false;
        }
        self.vwap.update(price, size);
        true
    }

    /// Feeds one closed bar's close to the bar-based indicators (SMA, EMA, RSI, volatility).
    /// Returns `false`, changing nothing, if the close is not a [`valid_price`].
    pub(crate) fn on_bar_close(&mut self, close: f64) -> bool {
        if !valid_price(close) {
            return false;
        }
        self.sma.iter_mut().for_each(|i| i.update(close));
        self.ema.iter_mut().for_each(|i| i.update(close));
        self.rsi.iter_mut().for_each(|i| i.update(close));
        self.volatility.iter_mut().for_each(|i| i.update(close));
        true
    }

    /// Starts a new VWAP session; the bar-based indicators keep their history.
    pub(crate) fn reset_session(&mut self) {
        self.vwap.reset();
    }

    /// The bar-close values, in [`IndicatorPeriods`]' order.
    pub(crate) fn periodic(&self) -> Vec<Option<f64>> {
        let mut out = Vec::with_capacity(
            self.sma.len() + self.ema.len() + self.rsi.len() + self.volatility.len(),
        );
        out.extend(self.sma.iter().map(Sma::value));
        out.extend(self.ema.iter().map(Ema::value));
        out.extend(self.rsi.iter().map(Rsi::value));
        out.extend(self.volatility.iter().map(Volatility::value));
        out
    }

    /// The current value of every indicator (no closes: the worker adds the batch's).
    pub(crate) fn snapshot(&self) -> IndicatorValues {
        IndicatorValues {
            periodic: self.periodic(),
            vwap: self.vwap.value(),
            // Filled in by the coordinator from the book at the batch.
            book: Default::default(),
            closes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod conformance;

/// Helpers shared by the indicator test modules: deterministic series and float comparison.
#[cfg(test)]
pub(crate) mod test_support {
    use proptest::prelude::*;

    /// Relative tolerance every incremental value must meet against its from-scratch reference.
    pub(crate) const REL_TOL: f64 = 1e-9;

    /// `|a - b| <= tol * max(|a|, |b|)`, with exact equality required when both are zero.
    pub(crate) fn close_rel(a: f64, b: f64, tol: f64) -> bool {
        a == b || (a - b).abs() <= tol * a.abs().max(b.abs())
    }

    /// Asserts two optional values are both `None` or both `Some` and `close_rel`.
    #[track_caller]
    pub(crate) fn assert_close(got: Option<f64>, want: Option<f64>, tol: f64) {
        match (got, want) {
            (None, None) => {}
            (Some(g), Some(w)) => assert!(close_rel(g, w, tol), "got {g}, want {w} (tol {tol})"),
            _ => panic!("got {got:?}, want {want:?}"),
        }
    }

    /// 200 deterministic prices around 100: a slow sine trend plus a faster wobble and a
    /// quadratic-residue "noise" term, so gains, losses and flat steps all occur.
    /// `p_i = 100 + 10 sin(i / 15) + 3 cos(i / 2.7) + ((i * i * 7919) mod 101) / 50 - 1`
    pub(crate) fn series_200() -> Vec<f64> {
        (0..200u64)
            .map(|i| {
                let t = i as f64;
                let noise = ((i * i * 7919) % 101) as f64 / 50.0 - 1.0;
                100.0 + 10.0 * (t / 15.0).sin() + 3.0 * (t / 2.7).cos() + noise
            })
            .collect()
    }

    /// Random positive finite price paths for property tests: a start price in `[0.01, 1e5]`
    /// followed by multiplicative steps in `[0.5, 2]`, a third of them exactly flat (repeated
    /// prices are common in real feeds and exercise the zero-change branches).
    pub(crate) fn price_path(max_len: usize) -> impl Strategy<Value = Vec<f64>> {
        let step = prop_oneof![1 => Just(1.0f64), 2 => 0.5f64..2.0];
        (0.01f64..1e5, prop::collection::vec(step, 0..max_len)).prop_map(|(start, steps)| {
            let mut prices = Vec::with_capacity(steps.len() + 1);
            let mut p = start;
            prices.push(p);
            for s in steps {
                p *= s;
                prices.push(p);
            }
            prices
        })
    }
}

#[cfg(test)]
mod tests;
