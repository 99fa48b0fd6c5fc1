//! The conformance tests every bar-close indicator (SMA, EMA, RSI, volatility) passes, written
//! once: each indicator's test module names its from-scratch reference and calls these, and
//! keeps only the hand-worked cases of its own convention.

use std::collections::VecDeque;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::test_support::{REL_TOL, assert_close, close_rel, series_200};
use super::{Ema, InvalidPeriod, Rsi, Sma, Volatility};

/// An indicator's from-scratch value over a whole series, with period n (`None` during warm-up).
pub(crate) type Reference = fn(&[f64], usize) -> Option<f64>;

/// An indicator fed with bar closes, as the tests see it.
pub(crate) trait CloseIndicator: Sized {
    /// Smallest period it accepts.
    const MIN_PERIOD: usize;
    fn with_period(n: usize) -> Result<Self, InvalidPeriod>;
    fn push(&mut self, close: f64);
    fn current(&self) -> Option<f64>;
}

macro_rules! close_indicator {
    ($($ty:ident: $module:ident),* $(,)?) => {$(
        impl CloseIndicator for $ty {
            const MIN_PERIOD: usize = super::$module::MIN_PERIOD;
            fn with_period(n: usize) -> Result<Self, InvalidPeriod> {
                $ty::new(n)
            }
            fn push(&mut self, close: f64) {
                self.update(close)
            }
            fn current(&self) -> Option<f64> {
                self.value()
            }
        }
    )*};
}

close_indicator!(Sma: sma, Ema: ema, Rsi: rsi, Volatility: volatility);

/// The indicator's value after each of `prices`, with period n.
pub(crate) fn run<I: CloseIndicator>(prices: &[f64], n: usize) -> Vec<Option<f64>> {
    let mut indicator = I::with_period(n).expect("valid period");
    prices
        .iter()
        .map(|&p| {
            indicator.push(p);
            indicator.current()
        })
        .collect()
}

/// Over [`series_200`], every value for each of `periods` agrees with `reference` on the prefix
/// it has seen.
#[track_caller]
pub(crate) fn series_200_matches<I: CloseIndicator>(periods: &[usize], reference: Reference) {
    let prices = series_200();
    for &n in periods {
        for (i, got) in run::<I>(&prices, n).into_iter().enumerate() {
            assert_close(got, reference(&prices[..=i], n), REL_TOL);
        }
    }
}

/// `len` equal prices with period n: `None` for the first `warmup` values, then exactly `want`.
#[track_caller]
pub(crate) fn constant_prices<I: CloseIndicator>(len: usize, n: usize, warmup: usize, want: f64) {
    let got = run::<I>(&vec![42.5; len], n);
    assert!(got[..warmup].iter().all(Option::is_none), "{got:?}");
    assert!(got[warmup..].iter().all(|v| *v == Some(want)), "{got:?}");
}

/// The property: the incremental value after each price equals the from-scratch `reference` of
/// the prices so far, warm-up included.
pub(crate) fn incremental_equals_from_scratch<I: CloseIndicator>(
    prices: &[f64],
    n: usize,
    reference: Reference,
) -> Result<(), TestCaseError> {
    for (i, got) in run::<I>(prices, n).into_iter().enumerate() {
        let want = reference(&prices[..=i], n);
        prop_assert_eq!(got.is_some(), want.is_some());
        if let (Some(g), Some(w)) = (got, want) {
            prop_assert!(close_rel(g, w, REL_TOL), "i={} got {} want {}", i, g, w);
        }
    }
    Ok(())
}

/// Periods below the indicator's minimum are refused, the minimum is accepted.
#[track_caller]
pub(crate) fn period_limits<I: CloseIndicator>() {
    for n in 0..I::MIN_PERIOD {
        assert!(I::with_period(n).is_err(), "period {n}");
    }
    assert!(I::with_period(I::MIN_PERIOD).is_ok());
}

/// A million-step deterministic walk (each step a relative move of at most `step`) with period
/// n: the running value still agrees with `reference` over the last n prices within `tol`, at
/// every `check_every`-th step (when set) and at the end. Catches drift in running sums.
#[track_caller]
pub(crate) fn no_drift_over_a_million_updates<I: CloseIndicator>(
    n: usize,
    step: f64,
    reference: Reference,
    tol: f64,
    check_every: Option<u64>,
) {
    let mut indicator = I::with_period(n).expect("valid period");
    let mut p = 100.0f64;
    let mut tail = VecDeque::new();
    let check = |indicator: &I, tail: &VecDeque<f64>| {
        let t: Vec<f64> = tail.iter().copied().collect();
        assert_close(indicator.current(), reference(&t, n), tol);
    };
    for i in 0..1_000_000u64 {
        p *= 1.0 + (((i * 2_654_435_761) % 2001) as f64 - 1000.0) * step;
        indicator.push(p);
        tail.push_back(p);
        if tail.len() > n {
            tail.pop_front();
        }
        // At arbitrary points too, not only at the end.
        if check_every.is_some_and(|every| i % every == 0 && i > n as u64) {
            check(&indicator, &tail);
        }
    }
    check(&indicator, &tail);
}
