//! Session volume-weighted average price, VWAP, over ticks (not bars).
//!
//! Convention: VWAP = sum(price * size) / sum(size) over every tick since the last [`Vwap::reset`]
//! (the session start; when sessions start is the caller's decision). `value()` is `None` until
//! the cumulative size is > 0, so zero-size ticks alone never produce a number.
//!
//! Cost: O(1) per update and O(1) memory. Both sums are Neumaier-compensated
//! (`CompensatedSum` in the parent module) because a session can hold millions of ticks.
//!
//! Input: finite, strictly positive prices ([`super::valid_price`]) and finite, non-negative sizes
//! ([`super::valid_size`]); `update` `debug_assert!`s both and the caller must reject anything
//! else.

use super::CompensatedSum;

/// Incremental session VWAP.
#[derive(Clone, Debug, Default)]
pub struct Vwap {
    /// Sum of price * size this session.
    notional: CompensatedSum,
    /// Sum of size this session.
    volume: CompensatedSum,
}

// === impl Vwap ===

impl Vwap {
    /// An empty session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one trade. Expects a finite positive price and a finite non-negative size.
    pub(crate) fn update(&mut self, price: f64, size: f64) {
        debug_assert!(super::valid_price(price), "vwap: invalid price {price}");
        debug_assert!(super::valid_size(size), "vwap: invalid size {size}");
        self.notional.add(price * size);
        self.volume.add(size);
    }

    /// Starts a new session: forgets every tick so far.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// The session VWAP, or `None` while the session's total size is 0.
    pub(crate) fn value(&self) -> Option<f64> {
        let volume = self.volume.value();
        (volume > 0.0).then(|| self.notional.value() / volume)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    /// From-scratch reference: the definition, sum(p * v) / sum(v), summed left to right.
    fn reference(ticks: &[(f64, f64)]) -> Option<f64> {
        let volume: f64 = ticks.iter().map(|t| t.1).sum();
        (volume > 0.0).then(|| ticks.iter().map(|t| t.0 * t.1).sum::<f64>() / volume)
    }

    fn run(ticks: &[(f64, f64)]) -> Vec<Option<f64>> {
        let mut vwap = Vwap::new();
        ticks
            .iter()
            .map(|&(p, s)| {
                vwap.update(p, s);
                vwap.value()
            })
            .collect()
    }

    #[test]
    fn hand_worked() {
        // (10 x 100), (11 x 300), (9 x 100):
        //   after 1: 1000 / 100 = 10
        //   after 2: (1000 + 3300) / 400 = 4300 / 400 = 10.75
        //   after 3: (4300 + 900) / 500 = 5200 / 500 = 10.4
        assert_eq!(
            run(&[(10.0, 100.0), (11.0, 300.0), (9.0, 100.0)]),
            [Some(10.0), Some(10.75), Some(10.4)]
        );
    }

    #[test]
    fn zero_size_ticks_do_not_warm_up() {
        // Sizes 0, 0 -> None; then (8 x 2) -> 16 / 2 = 8; a later zero-size tick changes nothing.
        assert_eq!(
            run(&[(10.0, 0.0), (12.0, 0.0), (8.0, 2.0), (100.0, 0.0)]),
            [None, None, Some(8.0), Some(8.0)]
        );
    }

    #[test]
    fn reset_starts_a_new_session() {
        let mut vwap = Vwap::new();
        vwap.update(10.0, 5.0);
        vwap.reset();
        assert_eq!(vwap.value(), None);
        vwap.update(20.0, 1.0);
        assert_eq!(vwap.value(), Some(20.0));
    }

    #[test]
    fn constant_price() {
        let ticks: Vec<_> = (1..100).map(|i| (42.5, f64::from(i))).collect();
        assert!(run(&ticks).iter().all(|v| *v == Some(42.5)));
    }

    #[test]
    fn series_200_matches_reference() {
        let ticks: Vec<(f64, f64)> = series_200()
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, ((i * 37) % 500) as f64 + 0.5))
            .collect();
        for (i, got) in run(&ticks).into_iter().enumerate() {
            assert_close(got, reference(&ticks[..=i]), REL_TOL);
        }
    }

    proptest! {
        #[test]
        fn incremental_equals_from_scratch(
            prices in price_path(200),
            sizes in prop::collection::vec(prop_oneof![1 => Just(0.0f64), 4 => 0.0f64..1e6], 201),
        ) {
            let ticks: Vec<(f64, f64)> = prices.into_iter().zip(sizes).collect();
            for (i, got) in run(&ticks).into_iter().enumerate() {
                let want = reference(&ticks[..=i]);
                prop_assert_eq!(got.is_some(), want.is_some());
                if let (Some(g), Some(w)) = (got, want) {
                    prop_assert!(close_rel(g, w, REL_TOL), "i={} got {} want {}", i, g, w);
                }
            }
        }
    }
}
