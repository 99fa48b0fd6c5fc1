//! Reconnect delays for the upstream feed.

use std::time::Duration;

/// Capped exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff
/// And Jitter", 2015): the n-th delay is uniform in `[0, min(max, initial · 2^n)]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    attempt: u32,
    /// xorshift64* state; never zero.
    rng: u64,
}

// === impl Backoff ===

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial_ms: (initial.as_millis() as u64).max(1),
            max_ms: (max.as_millis() as u64).max(1),
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// Seeded from the clock: two processes restarting together do not retry in lockstep.
    pub(crate) fn from_clock(initial: Duration, max: Duration) -> Self {
        let seed = crate::model::now_ns() as u64 ^ (u64::from(std::process::id()) << 32);
        Self::new(initial, max, seed)
    }

    /// The upper bound of the next delay.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u64.checked_shl(self.attempt.min(63)).unwrap_or(u64::MAX);
        Duration::from_millis(self.initial_ms.saturating_mul(factor).min(self.max_ms))
    }

    /// The next delay; each call doubles the ceiling until it reaches the maximum.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling().as_millis() as u64;
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(self.next_u64() % (ceiling + 1))
    }

    /// Back to the initial ceiling (after a connection that worked).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceiling_doubles_to_the_cap_and_delays_stay_under_it() {
        for seed in [1, 42, u64::MAX, 0xDEAD_BEEF] {
            let mut b = Backoff::new(
                Duration::from_millis(250),
                Duration::from_millis(30_000),
                seed,
            );
            let ceilings: Vec<u64> = (0..10)
                .map(|_| {
                    let c = b.ceiling();
                    let d = b.next_delay();
                    assert!(d <= c, "seed {seed}: {d:?} > {c:?}");
                    c.as_millis() as u64
                })
                .collect();
            assert_eq!(
                ceilings,
                [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
            );
            // Far past the cap, no overflow.
            for _ in 0..100 {
                assert!(b.next_delay() <= Duration::from_millis(30_000));
            }
            b.reset();
            assert_eq!(b.ceiling(), Duration::from_millis(250));
        }
    }

    #[test]
    fn backoff_jitter_spreads_over_the_whole_range() {
        let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_millis(1000), 7);
        let delays: Vec<u64> = (0..1000)
            .map(|_| b.next_delay().as_millis() as u64)
            .collect();
        let low = delays.iter().filter(|d| **d < 250).count();
        let high = delays.iter().filter(|d| **d > 750).count();
        assert!(low > 150 && high > 150, "low {low}, high {high}");
    }
}
