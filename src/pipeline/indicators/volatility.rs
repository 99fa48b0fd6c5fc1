//! Rolling volatility, Volatility(n): sample standard deviation of log returns over the last n
//! prices (bar closes).
//!
//! Convention: the spec reads "sample standard deviation of log returns over the last 20 prices",
//! taken literally: the last n prices x_1..x_n give n - 1 log returns r_i = ln(x_i / x_{i-1}),
//! i = 2..n, and
//!
//! ```text
//! mean = (r_2 + ... + r_n) / (n - 1)
//! volatility = sqrt( sum_i (r_i - mean)^2 / (n - 2) )      (sample std, divisor (n - 1) - 1)
//! ```
//!
//! It is per bar (not annualised, not in percent). `value()` is `None` until n prices have been
//! seen. n must be at least 3, the least that gives two returns; Volatility(2) would hold one
//! return, whose sample standard deviation does not exist, so it is refused at construction.
//! Constant prices give exactly 0.
//!
//! # Numerics
//! Cost is O(1) per update, amortised, with no subtraction of evicted values. The obvious
//! sliding Welford update (evict r_old, admit r_new in one step) keeps the rounding error of every
//! evicted value: a few ulps of the *old* window's sum of squared deviations. When volatility
//! collapses (a 50% drop, then tiny moves) that error dominates the new, small value; the property
//! test below found exactly such a series, 4e-9 relative off a two-pass computation.
//!
//! So the window of the last n - 1 returns is kept as a two-stacks sliding-window aggregation
//! (Tangwongsan, Hirzel, Schneider, "General Incremental Sliding-Window Aggregation", VLDB 2015)
//! of (count, mean, M2) moments:
//! - new returns go on the back stack, whose running moments are updated by Welford's insertion
//!   (Welford 1962): `d = r - mean; mean += d / k; M2 += d * (r - mean)`;
//! - the oldest return is popped off the front stack, where every entry holds the moments of
//!   itself and every newer front entry; when the front is empty, the back is moved over,
//!   newest first, building those suffix moments with the same insertion (each return is moved
//!   once, so this costs at most one extra insertion per return: O(1) amortised);
//! - the window's moments are the pairwise merge (Chan, Golub, LeVeque 1979) of the front top and
//!   the back: `delta = mean_b - mean_a; mean = mean_a + delta * k_b / k;
//!   M2 = M2_a + M2_b + delta^2 * k_a * k_b / k`.
//!
//! Every term added to M2 is non-negative and only returns inside the window ever contribute, so
//! the result is as accurate as a from-scratch computation over the window (it matches the
//! two-pass formula within 1e-9 relative in the tests), a flat window gives exactly 0, and no
//! drift builds up however long the stream runs. M2 is still clamped at 0 before the square root.
//!
//! Input: finite, strictly positive values ([`super::valid_price`]); `update` `debug_assert!`s it
//! and the caller must reject anything else.

use super::{InvalidPeriod, check_period};

/// Smallest accepted period (prices in the window).
pub(crate) const MIN_PERIOD: usize = 3;

/// Count, mean and sum of squared deviations (M2) of a run of returns.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Moments {
    /// Number of returns, as f64 for the formulas.
    count: f64,
    /// Their mean.
    mean: f64,
    /// Sum of squared deviations from `mean`.
    m2: f64,
}

// === impl Moments ===

impl Moments {
    /// Welford insertion of one value.
    fn push(self, x: f64) -> Self {
        let count = self.count + 1.0;
        let d = x - self.mean;
        let mean = self.mean + d / count;
        Self {
            count,
            mean,
            m2: self.m2 + d * (x - mean),
        }
    }

    /// Chan-Golub-LeVeque pairwise merge of two disjoint runs.
    fn merge(a: Self, b: Self) -> Self {
        if a.count == 0.0 {
            return b;
        }
        if b.count == 0.0 {
            return a;
        }
        let count = a.count + b.count;
        let delta = b.mean - a.mean;
        Self {
            count,
            mean: a.mean + delta * (b.count / count),
            m2: a.m2 + b.m2 + delta * delta * (a.count * b.count / count),
        }
    }
}

/// Incremental rolling volatility over n prices.
#[derive(Clone, Debug)]
pub struct Volatility {
    /// n, prices in the window.
    period: usize,
    /// The previous price, to form the next return.
    prev: Option<f64>,
    /// Older part of the window; the last entry is the oldest return, holding the moments of
    /// every front entry (itself and all newer ones).
    front: Vec<Moments>,
    /// Newer part of the window, oldest first.
    back: Vec<f64>,
    /// Moments of `back`.
    back_moments: Moments,
}

// === impl Volatility ===

impl Volatility {
    /// Volatility over `period` prices; `period` must be at least [`MIN_PERIOD`].
    pub fn new(period: usize) -> Result<Self, InvalidPeriod> {
        check_period("volatility", period, MIN_PERIOD)?;
        Ok(Self {
            period,
            prev: None,
            front: Vec::with_capacity(period - 1),
            back: Vec::with_capacity(period - 1),
            back_moments: Moments::default(),
        })
    }

    /// Adds one close. Expects a finite positive value.
    pub(crate) fn update(&mut self, x: f64) {
        debug_assert!(super::valid_price(x), "volatility: invalid input {x}");
        if let Some(prev) = self.prev.replace(x) {
            // ln(x / prev) rather than ln x - ln prev: exact 0 for equal prices, and no
            // cancellation between two nearly equal logarithms.
            self.push_return((x / prev).ln());
        }
    }

    /// Sample standard deviation of the last n - 1 log returns, or `None` before n prices.
    pub(crate) fn value(&self) -> Option<f64> {
        let k = self.period - 1;
        if self.front.len() + self.back.len() < k {
            return None;
        }
        let front = self.front.last().copied().unwrap_or_default();
        let m = Moments::merge(front, self.back_moments);
        Some((m.m2.max(0.0) / (k - 1) as f64).sqrt())
    }

    fn push_return(&mut self, r: f64) {
        if self.front.len() + self.back.len() == self.period - 1 {
            if self.front.is_empty() {
                self.flip();
            }
            self.front.pop();
        }
        self.back.push(r);
        self.back_moments = self.back_moments.push(r);
    }

    /// Moves the back stack onto the (empty) front stack, newest first, building suffix moments.
    fn flip(&mut self) {
        let mut acc = Moments::default();
        for &r in self.back.iter().rev() {
            acc = acc.push(r);
            self.front.push(acc);
        }
        self.back.clear();
        self.back_moments = Moments::default();
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, Reference};
    use super::super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    const REFERENCE: Reference = reference;

    /// From-scratch reference: the textbook two-pass sample standard deviation (mean first, then
    /// the sum of squared deviations over k - 1; e.g. Hull, "Options, Futures, and Other
    /// Derivatives", estimating volatility from historical data) of the log returns between the
    /// last n prices.
    fn reference(prices: &[f64], n: usize) -> Option<f64> {
        if prices.len() < n {
            return None;
        }
        let window = &prices[prices.len() - n..];
        let returns: Vec<f64> = window.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let k = returns.len() as f64;
        let mean = returns.iter().sum::<f64>() / k;
        let ss: f64 = returns.iter().map(|r| (r - mean).powi(2)).sum();
        Some((ss / (k - 1.0)).sqrt())
    }

    fn run(prices: &[f64], n: usize) -> Vec<Option<f64>> {
        conformance::run::<Volatility>(prices, n)
    }

    #[test]
    fn hand_worked_vol3() {
        // n = 3 prices -> 2 returns, divisor 1. Prices 100, 110, 99:
        //   r1 = ln(110/100) = ln 1.1, r2 = ln(99/110) = ln 0.9
        //   mean = (ln 1.1 + ln 0.9) / 2 = ln(0.99) / 2
        //   ss = (r1 - mean)^2 + (r2 - mean)^2 = 2 * ((r1 - r2) / 2)^2 = (r1 - r2)^2 / 2
        //   std = |r1 - r2| / sqrt 2 = ln(1.1 / 0.9) / sqrt 2 = 0.200670695462151 / 1.414213562373095
        //       = 0.141894793...
        let got = run(&[100.0, 110.0, 99.0], 3);
        assert_eq!(got[..2], [None, None]);
        assert_close(got[2], Some((1.1f64 / 0.9).ln() / 2f64.sqrt()), 1e-12);
    }

    #[test]
    fn hand_worked_vol4_doubling() {
        // n = 4 prices -> 3 returns, divisor 2. Prices 1, 2, 4, 2: returns ln2, ln2, -ln2.
        //   mean = ln2 / 3; deviations 2ln2/3, 2ln2/3, -4ln2/3;
        //   ss = (4 + 4 + 16) / 9 * ln2^2 = 24/9 ln2^2; var = ss / 2 = 4/3 ln2^2;
        //   std = 2 ln2 / sqrt 3 = 0.800377...
        let got = run(&[1.0, 2.0, 4.0, 2.0], 4);
        assert_close(got[3], Some(2.0 * 2f64.ln() / 3f64.sqrt()), 1e-12);
    }

    #[test]
    fn constant_prices_are_exactly_zero() {
        conformance::constant_prices::<Volatility>(50, 20, 19, 0.0);
    }

    #[test]
    fn flat_after_volatile_is_exactly_zero() {
        // A wild window followed by a halt: once the window is all flat returns it must read
        // exactly 0, whatever error the sliding update carried from the wild part.
        let mut prices: Vec<f64> = (0..57)
            .map(|i| if i % 2 == 0 { 100.0 } else { 173.3 })
            .collect();
        prices.extend([55.5; 40]);
        let got = run(&prices, 20);
        let halt = 57; // index of the first flat price after the last move
        // Prices halt..halt+19 are flat: 19 zero returns from index halt + 19 on.
        assert!(got[halt + 19..].iter().all(|v| *v == Some(0.0)));
        assert!(got[halt + 18].is_some_and(|v| v > 0.0));
    }

    #[test]
    fn collapse_after_a_jump() {
        // Found by the property test against a sliding add/remove Welford update: a halving,
        // then a 6e-5 move among flat prices. The old window's M2 (~0.4 from ln 0.5) is 1e8 times
        // the new one, so carried rounding error showed up at 4e-9 relative.
        let mut prices = vec![0.01; 44];
        prices.extend([0.005, 0.005]);
        prices.extend([0.005000299799587375; 4]);
        for (i, got) in run(&prices, 6).into_iter().enumerate() {
            assert_close(got, reference(&prices[..=i], 6), REL_TOL);
        }
    }

    #[test]
    fn series_200_matches_reference() {
        conformance::series_200_matches::<Volatility>(&[3, 4, 20, 50], REFERENCE);
    }

    #[test]
    fn no_drift_over_a_million_updates() {
        conformance::no_drift_over_a_million_updates::<Volatility>(
            20,
            1e-5,
            REFERENCE,
            REL_TOL,
            Some(99_991),
        );
    }

    #[test]
    fn period_limits() {
        conformance::period_limits::<Volatility>();
    }

    proptest! {
        #[test]
        fn incremental_equals_from_scratch(prices in price_path(120), n in 3usize..25) {
            conformance::incremental_equals_from_scratch::<Volatility>(&prices, n, REFERENCE)?;
        }
    }
}
