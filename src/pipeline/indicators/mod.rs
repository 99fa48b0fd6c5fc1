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
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn valid_inputs() {
        for (x, price, size) in [
            (1.0, true, true),
            (0.0, false, true),
            (-0.0, false, true),
            (-1.0, false, false),
            (f64::NAN, false, false),
            (f64::INFINITY, false, false),
            (f64::NEG_INFINITY, false, false),
            (f64::MIN_POSITIVE, true, true),
            (f64::MAX, true, true),
        ] {
            assert_eq!(valid_price(x), price, "valid_price({x})");
            assert_eq!(valid_size(x), size, "valid_size({x})");
        }
    }

    fn one_each(sma: usize, ema: usize, rsi: usize, volatility: usize) -> IndicatorPeriods {
        IndicatorPeriods {
            sma: vec![sma],
            ema: vec![ema],
            rsi: vec![rsi],
            volatility: vec![volatility],
        }
    }

    #[test]
    fn config_validation() {
        assert_eq!(IndicatorPeriods::default().validate(), Ok(()));
        let min = one_each(1, 1, 1, 3);
        assert_eq!(min.validate(), Ok(()));
        assert!(IndicatorSet::new(&min).is_ok());
        let max = one_each(MAX_PERIOD, MAX_PERIOD, MAX_PERIOD, MAX_PERIOD);
        assert_eq!(max.validate(), Ok(()));
        let with = |f: fn(&mut IndicatorPeriods)| {
            let mut p = min.clone();
            f(&mut p);
            p
        };
        for (cfg, indicator, message) in [
            (
                with(|p| p.sma = vec![0]),
                "sma",
                "sma period must be at least 1, got 0",
            ),
            (
                with(|p| p.ema = vec![5, 0]),
                "ema",
                "ema period must be at least 1, got 0",
            ),
            (
                with(|p| p.rsi = vec![0]),
                "rsi",
                "rsi period must be at least 1, got 0",
            ),
            (
                with(|p| p.volatility = vec![2]),
                "volatility",
                "volatility period must be at least 3, got 2",
            ),
            (
                with(|p| p.sma = vec![20, MAX_PERIOD + 1]),
                "sma",
                "sma period must be at most 10000, got 10001",
            ),
            (
                with(|p| p.rsi = vec![]),
                "rsi",
                "rsi needs at least one period, got an empty list",
            ),
            (
                with(|p| p.sma = vec![20, 50, 20]),
                "sma",
                "sma period 20 is listed twice",
            ),
            (
                with(|p| p.ema = (1..=9).collect()),
                "ema",
                "ema takes at most 8 periods, got 9",
            ),
        ] {
            let err = cfg.validate().expect_err("refused");
            assert_eq!(err.indicator(), indicator);
            assert_eq!(err.to_string(), message);
            assert_eq!(IndicatorSet::new(&cfg).err(), Some(err));
        }
    }

    #[test]
    fn several_periods_each_match_their_single_indicator() {
        let cfg = IndicatorPeriods {
            sma: vec![3, 5, 8],
            ema: vec![4, 2],
            rsi: vec![3],
            volatility: vec![5, 3],
        };
        let mut set = IndicatorSet::new(&cfg).expect("valid");
        let mut smas: Vec<Sma> = cfg
            .sma
            .iter()
            .map(|&n| Sma::new(n).expect("valid"))
            .collect();
        let mut emas: Vec<Ema> = cfg
            .ema
            .iter()
            .map(|&n| Ema::new(n).expect("valid"))
            .collect();
        let mut rsi = Rsi::new(3).expect("valid");
        let mut vols: Vec<Volatility> = cfg
            .volatility
            .iter()
            .map(|&n| Volatility::new(n).expect("valid"))
            .collect();
        for &p in &series_200()[..40] {
            assert!(set.on_bar_close(p));
            smas.iter_mut().for_each(|i| i.update(p));
            emas.iter_mut().for_each(|i| i.update(p));
            rsi.update(p);
            vols.iter_mut().for_each(|i| i.update(p));
            let want: Vec<Option<f64>> = smas
                .iter()
                .map(Sma::value)
                .chain(emas.iter().map(Ema::value))
                .chain([rsi.value()])
                .chain(vols.iter().map(Volatility::value))
                .collect();
            assert_eq!(set.periodic(), want);
            assert_eq!(set.periodic().len(), cfg.len());
        }
    }

    #[test]
    fn compensated_sum_survives_cancellation() {
        // 1e16 + 1 - 1e16 is 0 in plain f64 (1 is below half an ulp of 1e16); compensated it is 1.
        let mut s = CompensatedSum::default();
        for x in [1e16, 1.0, -1e16] {
            s.add(x);
        }
        assert_eq!(s.value(), 1.0);
    }

    #[test]
    fn set_warms_up_and_matches_single_indicators() {
        let cfg = IndicatorPeriods::default();
        let mut set = IndicatorSet::new(&cfg).expect("default config is valid");
        assert_eq!(
            set.snapshot(),
            IndicatorValues {
                periodic: vec![None; 4],
                ..IndicatorValues::default()
            }
        );
        let (mut sma, mut ema, mut rsi, mut vol, mut vwap) = (
            Sma::new(cfg.sma[0]).expect("valid"),
            Ema::new(cfg.ema[0]).expect("valid"),
            Rsi::new(cfg.rsi[0]).expect("valid"),
            Volatility::new(cfg.volatility[0]).expect("valid"),
            Vwap::new(),
        );
        for (i, &p) in series_200().iter().enumerate() {
            let size = (i % 7) as f64 * 10.0;
            assert!(set.on_tick(p, size));
            assert!(set.on_bar_close(p));
            sma.update(p);
            ema.update(p);
            rsi.update(p);
            vol.update(p);
            vwap.update(p, size);
            let snap = set.snapshot();
            let [s, e, r, v] = snap.periodic[..] else {
                panic!("four values: {:?}", snap.periodic)
            };
            assert_eq!(s, sma.value());
            assert_eq!(e, ema.value());
            assert_eq!(r, rsi.value());
            assert_eq!(v, vol.value());
            assert_eq!(snap.vwap, vwap.value());
            // Warm-up boundaries of the default periods (i is 0-based).
            assert_eq!(s.is_some(), i + 1 >= 20);
            assert_eq!(e.is_some(), i + 1 >= 20);
            assert_eq!(r.is_some(), i + 1 >= 15);
            assert_eq!(v.is_some(), i + 1 >= 20);
            assert_eq!(snap.vwap.is_some(), i >= 1); // the first tick has size 0
        }
        set.reset_session();
        let snap = set.snapshot();
        assert_eq!(snap.vwap, None);
        assert!(
            snap.periodic.iter().all(Option::is_some),
            "bar history survives a session reset"
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    fn leaf_updates_assert_valid_input_in_debug_builds() {
        use std::panic::catch_unwind;
        assert!(catch_unwind(|| Sma::new(3).map(|mut i| i.update(f64::NAN))).is_err());
        assert!(catch_unwind(|| Ema::new(3).map(|mut i| i.update(0.0))).is_err());
        assert!(catch_unwind(|| Rsi::new(3).map(|mut i| i.update(-1.0))).is_err());
        assert!(catch_unwind(|| Volatility::new(3).map(|mut i| i.update(f64::INFINITY))).is_err());
        assert!(catch_unwind(|| Vwap::new().update(1.0, -1.0)).is_err());
    }

    #[test]
    fn set_rejects_invalid_input_without_touching_state() {
        let mut set = IndicatorSet::new(&one_each(1, 1, 1, 3)).expect("valid");
        assert!(set.on_tick(10.0, 2.0));
        assert!(set.on_bar_close(10.0));
        let before = set.snapshot();
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            assert!(!set.on_bar_close(bad));
            assert!(!set.on_tick(bad, 1.0));
        }
        assert!(!set.on_tick(10.0, f64::NAN));
        assert!(!set.on_tick(10.0, -1.0));
        assert_eq!(set.snapshot(), before);
    }
}
