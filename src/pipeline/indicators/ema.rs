//! Exponential moving average, EMA(n), over bar closes, seeded with an SMA.
//!
//! Convention (as in TA-Lib's default `TA_EMA`):
//! - alpha = 2 / (n + 1);
//! - the value at the n-th input is the SMA of the first n inputs (the seed);
//! - after that, for each input x: ema = alpha * x + (1 - alpha) * ema;
//! - `value()` is `None` before n inputs.
//!
//! EMA(1) has alpha = 1 and is the last close.
//!
//! Cost: O(1) per update and O(1) memory (a running sum during warm-up, one number after).
//!
//! Input: finite, strictly positive values ([`super::valid_price`]); `update` `debug_assert!`s it
//! and the caller must reject anything else.

use super::{InvalidPeriod, check_period};

/// Smallest accepted period.
pub(crate) const MIN_PERIOD: usize = 1;

/// Incremental SMA-seeded EMA(n).
#[derive(Clone, Debug)]
pub struct Ema {
    /// n.
    period: usize,
    /// 2 / (n + 1).
    alpha: f64,
    /// Inputs seen during warm-up (stops counting at n).
    seen: usize,
    /// Sum of the first `seen` inputs, for the SMA seed.
    seed_sum: f64,
    /// The current EMA, once seeded.
    ema: Option<f64>,
}

// === impl Ema ===

impl Ema {
    /// EMA with period `period`; `period` must be at least [`MIN_PERIOD`].
    pub fn new(period: usize) -> Result<Self, InvalidPeriod> {
        check_period("ema", period, MIN_PERIOD)?;
        Ok(Self {
            period,
            alpha: 2.0 / (period as f64 + 1.0),
            seen: 0,
            seed_sum: 0.0,
            ema: None,
        })
    }

    /// Adds one close. Expects a finite positive value.
    pub(crate) fn update(&mut self, x: f64) {
        debug_assert!(super::valid_price(x), "ema: invalid input {x}");
        match self.ema {
            Some(ema) => self.ema = Some(self.alpha * x + (1.0 - self.alpha) * ema),
            None => {
                self.seed_sum += x;
                self.seen += 1;
                if self.seen == self.period {
                    self.ema = Some(self.seed_sum / self.period as f64);
                }
            }
        }
    }

    /// The EMA, or `None` before n inputs.
    pub(crate) fn value(&self) -> Option<f64> {
        self.ema
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, Reference};
    use super::super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    const REFERENCE: Reference = reference;

    /// From-scratch reference, batch form of the TA-Lib convention: seed with the SMA of
    /// `prices[..n]`, then run the recurrence ema_i = k * p_i + (1 - k) * ema_{i-1}, k = 2/(n+1),
    /// over the rest of the series.
    fn reference(prices: &[f64], n: usize) -> Option<f64> {
        if prices.len() < n {
            return None;
        }
        let k = 2.0 / (n as f64 + 1.0);
        let seed = prices[..n].iter().sum::<f64>() / n as f64;
        Some(
            prices[n..]
                .iter()
                .fold(seed, |ema, &p| k * p + (1.0 - k) * ema),
        )
    }

    fn run(prices: &[f64], n: usize) -> Vec<Option<f64>> {
        conformance::run::<Ema>(prices, n)
    }

    #[test]
    fn hand_worked_ema3() {
        // n = 3, alpha = 2 / 4 = 0.5. Closes 2, 4, 6, 8, 4:
        //   after 2, 4 -> None
        //   after 6    -> seed = (2 + 4 + 6) / 3 = 4
        //   after 8    -> 0.5 * 8 + 0.5 * 4 = 6
        //   after 4    -> 0.5 * 4 + 0.5 * 6 = 5
        assert_eq!(
            run(&[2.0, 4.0, 6.0, 8.0, 4.0], 3),
            [None, None, Some(4.0), Some(6.0), Some(5.0)]
        );
    }

    #[test]
    fn hand_worked_ema4_non_dyadic_alpha() {
        // n = 4, alpha = 2 / 5 = 0.4. Closes 10, 11, 12, 13, 20:
        //   after 13 -> seed = (10 + 11 + 12 + 13) / 4 = 11.5
        //   after 20 -> 0.4 * 20 + 0.6 * 11.5 = 8 + 6.9 = 14.9
        let got = run(&[10.0, 11.0, 12.0, 13.0, 20.0], 4);
        assert_eq!(got[..4], [None, None, None, Some(11.5)]);
        assert_close(got[4], Some(14.9), 1e-15);
    }

    #[test]
    fn period_one_is_last_value() {
        // alpha = 2 / 2 = 1: ema = 1 * x + 0 * ema = x.
        let prices = [5.0, 7.25, 3.5, 100.125];
        let want: Vec<_> = prices.iter().map(|&p| Some(p)).collect();
        assert_eq!(run(&prices, 1), want);
    }

    #[test]
    fn period_two() {
        // alpha = 2 / 3. Closes 3, 6, 9: seed (3 + 6) / 2 = 4.5; then 2/3 * 9 + 1/3 * 4.5 = 7.5.
        let got = run(&[3.0, 6.0, 9.0], 2);
        assert_eq!(got[..2], [None, Some(4.5)]);
        assert_close(got[2], Some(7.5), 1e-15);
    }

    #[test]
    fn constant_prices() {
        conformance::constant_prices::<Ema>(60, 20, 19, 42.5);
    }

    #[test]
    fn series_200_matches_reference() {
        conformance::series_200_matches::<Ema>(&[1, 2, 3, 20, 50], REFERENCE);
    }

    #[test]
    fn rejects_zero_period() {
        conformance::period_limits::<Ema>();
    }

    proptest! {
        #[test]
        fn incremental_equals_from_scratch(prices in price_path(120), n in 1usize..25) {
            conformance::incremental_equals_from_scratch::<Ema>(&prices, n, REFERENCE)?;
        }
    }
}
