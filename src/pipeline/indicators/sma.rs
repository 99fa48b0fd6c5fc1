//! Simple moving average, SMA(n), over bar closes.
//!
//! Convention: SMA(n) is the arithmetic mean of the last n closes. `value()` is `None` until n
//! values have been seen. SMA(1) is the last close.
//!
//! Cost: O(1) per update. A ring buffer holds the last n values; a Neumaier-compensated running
//! sum adds the new value and subtracts the evicted one, so rounding error does not grow with the
//! number of updates (see `CompensatedSum` in the parent module).
//!
//! Input: finite, strictly positive values ([`super::valid_price`]); `update` `debug_assert!`s it
//! and the caller must reject anything else.

use std::collections::VecDeque;

use super::{CompensatedSum, InvalidPeriod, check_period};

/// Smallest accepted period.
pub(crate) const MIN_PERIOD: usize = 1;

/// Incremental SMA(n).
#[derive(Clone, Debug)]
pub struct Sma {
    /// n, the window length.
    period: usize,
    /// The last `period` values, oldest first.
    window: VecDeque<f64>,
    /// Sum of `window`.
    sum: CompensatedSum,
}

// === impl Sma ===

impl Sma {
    /// SMA over the last `period` values; `period` must be at least [`MIN_PERIOD`].
    pub fn new(period: usize) -> Result<Self, InvalidPeriod> {
        check_period("sma", period, MIN_PERIOD)?;
        Ok(Self {
            period,
            window: VecDeque::with_capacity(period),
            sum: CompensatedSum::default(),
        })
    }

    /// Adds one close. Expects a finite positive value.
    pub(crate) fn update(&mut self, x: f64) {
        debug_assert!(super::valid_price(x), "sma: invalid input {x}");
        if self.window.len() == self.period
            && let Some(old) = self.window.pop_front()
        {
            self.sum.add(-old);
        }
        self.window.push_back(x);
        self.sum.add(x);
    }

    /// Mean of the last n values, or `None` before n values.
    pub(crate) fn value(&self) -> Option<f64> {
        (self.window.len() == self.period).then(|| self.sum.value() / self.period as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, Reference};
    use super::super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    const REFERENCE: Reference = reference;

    /// From-scratch reference: the textbook mean of the last n values, summed left to right.
    fn reference(prices: &[f64], n: usize) -> Option<f64> {
        (prices.len() >= n).then(|| prices[prices.len() - n..].iter().sum::<f64>() / n as f64)
    }

    fn run(prices: &[f64], n: usize) -> Vec<Option<f64>> {
        conformance::run::<Sma>(prices, n)
    }

    #[test]
    fn hand_worked_sma3() {
        // Closes 1, 2, 3, 4, 10 with n = 3:
        //   after 1, 2      -> None (fewer than 3 values)
        //   after 3         -> (1 + 2 + 3) / 3 = 2
        //   after 4         -> (2 + 3 + 4) / 3 = 3
        //   after 10        -> (3 + 4 + 10) / 3 = 17 / 3 = 5.666...
        let got = run(&[1.0, 2.0, 3.0, 4.0, 10.0], 3);
        assert_eq!(got[..4], [None, None, Some(2.0), Some(3.0)]);
        assert_close(got[4], Some(17.0 / 3.0), 1e-15);
    }

    #[test]
    fn period_one_is_last_value() {
        let prices = [5.0, 7.25, 3.5, 3.5, 100.125];
        for (got, &p) in run(&prices, 1).into_iter().zip(&prices) {
            assert_close(got, Some(p), 1e-15);
        }
    }

    #[test]
    fn period_two() {
        // (4 + 6) / 2 = 5, (6 + 1) / 2 = 3.5
        assert_eq!(run(&[4.0, 6.0, 1.0], 2), [None, Some(5.0), Some(3.5)]);
    }

    #[test]
    fn constant_prices() {
        conformance::constant_prices::<Sma>(50, 20, 19, 42.5);
    }

    #[test]
    fn series_200_matches_reference() {
        conformance::series_200_matches::<Sma>(&[1, 2, 3, 20, 50], REFERENCE);
    }

    #[test]
    fn no_drift_over_a_million_updates() {
        // The compensated sum must still agree with a fresh sum.
        conformance::no_drift_over_a_million_updates::<Sma>(20, 1e-6, REFERENCE, 1e-13, None);
    }

    #[test]
    fn rejects_zero_period() {
        conformance::period_limits::<Sma>();
    }

    proptest! {
        #[test]
        fn incremental_equals_from_scratch(prices in price_path(120), n in 1usize..25) {
            conformance::incremental_equals_from_scratch::<Sma>(&prices, n, REFERENCE)?;
        }
    }
}
