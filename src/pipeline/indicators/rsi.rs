//! Relative strength index, RSI(n), with Wilder's smoothing, over bar closes.
//!
//! Convention (J. Welles Wilder, "New Concepts in Technical Trading Systems", 1978):
//! - changes d_i = x_i - x_{i-1}; gain_i = max(d_i, 0), loss_i = max(-d_i, 0);
//! - the first average gain / loss is the simple mean of the first n gains / losses, so it needs
//!   n + 1 prices;
//! - after that, for each new change: avg = (avg * (n - 1) + current) / n, for gains and losses;
//! - RSI = 100 - 100 / (1 + avg_gain / avg_loss);
//! - if avg_loss == 0 the RSI is 100; if avg_gain and avg_loss are both 0 (flat prices over the
//!   whole smoothing history) the RSI is 50, "no direction", rather than a division 0 / 0;
//! - `value()` is `None` before n + 1 prices.
//!
//! RSI(1) reduces to 100 after a rise, 0 after a fall and 50 after a flat step.
//!
//! Cost: O(1) per update and O(1) memory (Wilder smoothing needs no window).
//!
//! Input: finite, strictly positive values ([`super::valid_price`]); `update` `debug_assert!`s it
//! and the caller must reject anything else.

use super::{InvalidPeriod, check_period};

/// Smallest accepted period.
pub(crate) const MIN_PERIOD: usize = 1;

/// Incremental Wilder RSI(n).
#[derive(Clone, Debug)]
pub struct Rsi {
    /// n.
    period: usize,
    /// The previous price, to form the next change.
    prev: Option<f64>,
    /// Changes seen during warm-up (stops counting at n).
    changes: usize,
    /// Sum of the gains seen during warm-up.
    gain_sum: f64,
    /// Sum of the losses seen during warm-up.
    loss_sum: f64,
    /// (average gain, average loss), once n changes have been seen.
    avg: Option<(f64, f64)>,
}

// === impl Rsi ===

impl Rsi {
    /// RSI with period `period`; `period` must be at least [`MIN_PERIOD`].
    pub fn new(period: usize) -> Result<Self, InvalidPeriod> {
        check_period("rsi", period, MIN_PERIOD)?;
        Ok(Self {
            period,
            prev: None,
            changes: 0,
            gain_sum: 0.0,
            loss_sum: 0.0,
            avg: None,
        })
    }

    /// Adds one close. Expects a finite positive value.
    pub(crate) fn update(&mut self, x: f64) {
        debug_assert!(super::valid_price(x), "rsi: invalid input {x}");
        let Some(prev) = self.prev.replace(x) else {
            return;
        };
        let d = x - prev;
        let (gain, loss) = (d.max(0.0), (-d).max(0.0));
        let n = self.period as f64;
        match self.avg {
            Some((g, l)) => {
                self.avg = Some(((g * (n - 1.0) + gain) / n, (l * (n - 1.0) + loss) / n))
            }
            None => {
                self.gain_sum += gain;
                self.loss_sum += loss;
                self.changes += 1;
                if self.changes == self.period {
                    self.avg = Some((self.gain_sum / n, self.loss_sum / n));
                }
            }
        }
    }

    /// The RSI in `[0, 100]`, or `None` before n + 1 prices.
    pub(crate) fn value(&self) -> Option<f64> {
        self.avg.map(|(gain, loss)| rsi_from_averages(gain, loss))
    }
}

/// RSI from Wilder averages, with the zero-loss rules of the module doc.
fn rsi_from_averages(gain: f64, loss: f64) -> f64 {
    if loss == 0.0 {
        if gain == 0.0 { 50.0 } else { 100.0 }
    } else {
        100.0 - 100.0 / (1.0 + gain / loss)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, Reference};
    use super::super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    const REFERENCE: Reference = reference;

    /// From-scratch reference, written in batch form from Wilder (1978): list every change of the
    /// series, average the first n gains and losses, then apply Wilder's smoothing
    /// avg_t = ((n - 1) * avg_{t-1} + x_t) / n to the remaining changes, then RS and RSI.
    fn reference(prices: &[f64], n: usize) -> Option<f64> {
        if prices.len() < n + 1 {
            return None;
        }
        let changes: Vec<f64> = prices.windows(2).map(|w| w[1] - w[0]).collect();
        let gains: Vec<f64> = changes
            .iter()
            .map(|&d| if d > 0.0 { d } else { 0.0 })
            .collect();
        let losses: Vec<f64> = changes
            .iter()
            .map(|&d| if d < 0.0 { -d } else { 0.0 })
            .collect();
        let nf = n as f64;
        let mut avg_gain = gains[..n].iter().sum::<f64>() / nf;
        let mut avg_loss = losses[..n].iter().sum::<f64>() / nf;
        for t in n..changes.len() {
            avg_gain = ((nf - 1.0) * avg_gain + gains[t]) / nf;
            avg_loss = ((nf - 1.0) * avg_loss + losses[t]) / nf;
        }
        Some(match (avg_gain == 0.0, avg_loss == 0.0) {
            (true, true) => 50.0,
            (_, true) => 100.0,
            _ => {
                let rs = avg_gain / avg_loss;
                100.0 - 100.0 / (1.0 + rs)
            }
        })
    }

    fn run(prices: &[f64], n: usize) -> Vec<Option<f64>> {
        conformance::run::<Rsi>(prices, n)
    }

    #[test]
    fn hand_worked_rsi3() {
        // n = 3. Closes 10, 11, 10.5, 12, 11, 11 -> changes +1, -0.5, +1.5, -1, 0.
        // After 4 prices (n + 1): avg_gain = (1 + 0 + 1.5) / 3 = 5/6, avg_loss = (0 + 0.5 + 0) / 3
        //   = 1/6, RS = 5, RSI = 100 - 100 / 6 = 83.333...
        // Change -1: avg_gain = (5/6 * 2 + 0) / 3 = 5/9, avg_loss = (1/6 * 2 + 1) / 3 = 4/9,
        //   RS = 1.25, RSI = 100 - 100 / 2.25 = 55.555...
        // Change 0: avg_gain = 10/27, avg_loss = 8/27, RS = 1.25 again, RSI = 55.555...
        let got = run(&[10.0, 11.0, 10.5, 12.0, 11.0, 11.0], 3);
        assert_eq!(got[..3], [None, None, None]);
        assert_close(got[3], Some(100.0 - 100.0 / 6.0), 1e-12);
        assert_close(got[4], Some(100.0 - 100.0 / 2.25), 1e-12);
        assert_close(got[5], Some(100.0 - 100.0 / 2.25), 1e-12);
    }

    #[test]
    fn published_example_rsi14() {
        // The worked 14-period example popularised by StockCharts ("RSI" ChartSchool article),
        // whose spreadsheet uses exactly this convention; published values are rounded to 2 dp.
        let closes = [
            44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433,
            46.0826, 45.8931, 46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116,
            46.2222, 45.6439, 46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288,
            44.1783, 44.2181, 44.5672, 43.4205, 42.6628, 43.1314,
        ];
        let published = [
            70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42,
            39.99, 41.46, 41.87, 45.46, 37.30, 33.08, 37.77,
        ];
        let got = run(&closes, 14);
        assert!(got[..14].iter().all(Option::is_none));
        for (g, want) in got[14..].iter().zip(published) {
            let g = g.expect("warmed up");
            assert!((g - want).abs() < 0.006, "got {g:.4}, published {want}");
        }
    }

    #[test]
    fn constant_prices_are_50() {
        // Every change is 0, so avg_gain = avg_loss = 0: the both-zero rule gives 50.
        conformance::constant_prices::<Rsi>(30, 14, 14, 50.0);
    }

    #[test]
    fn only_rises_are_100_only_falls_are_0() {
        let up: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(run(&up, 14)[14..], [Some(100.0); 6]);
        let down: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        // avg_gain = 0, avg_loss > 0: RSI = 100 - 100 / (1 + 0) = 0.
        assert_eq!(run(&down, 14)[14..], [Some(0.0); 6]);
    }

    #[test]
    fn flat_after_rise_stays_100() {
        // avg_loss stays exactly 0 while avg_gain decays towards 0 but never reaches it: 100.
        let mut prices = vec![1.0, 2.0, 3.0];
        prices.extend([3.0; 10]);
        assert!(run(&prices, 2)[2..].iter().all(|v| *v == Some(100.0)));
    }

    #[test]
    fn period_one() {
        // n = 1: avg = current, so up -> 100, down -> 0, flat -> 50.
        assert_eq!(
            run(&[5.0, 6.0, 4.0, 4.0], 1),
            [None, Some(100.0), Some(0.0), Some(50.0)]
        );
    }

    #[test]
    fn period_two() {
        // n = 2. Closes 10, 12, 11, 14: changes +2, -1, +3.
        //   after 11: avg_gain = (2 + 0) / 2 = 1, avg_loss = (0 + 1) / 2 = 0.5, RS = 2, RSI = 66.66...
        //   after 14: avg_gain = (1 + 3) / 2 = 2, avg_loss = (0.5 + 0) / 2 = 0.25, RS = 8,
        //   RSI = 100 - 100 / 9 = 88.88...
        let got = run(&[10.0, 12.0, 11.0, 14.0], 2);
        assert_eq!(got[..2], [None, None]);
        assert_close(got[2], Some(100.0 - 100.0 / 3.0), 1e-12);
        assert_close(got[3], Some(100.0 - 100.0 / 9.0), 1e-12);
    }

    #[test]
    fn series_200_matches_reference() {
        conformance::series_200_matches::<Rsi>(&[1, 2, 3, 14, 50], REFERENCE);
    }

    #[test]
    fn rejects_zero_period() {
        conformance::period_limits::<Rsi>();
    }

    proptest! {
        #[test]
        fn incremental_equals_from_scratch(prices in price_path(120), n in 1usize..25) {
            conformance::incremental_equals_from_scratch::<Rsi>(&prices, n, REFERENCE)?;
            for g in run(&prices, n).into_iter().flatten() {
                prop_assert!((0.0..=100.0).contains(&g), "rsi out of range: {}", g);
            }
        }
    }
}
