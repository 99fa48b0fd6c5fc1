//! Per-connection inbound limits: the op token bucket and the abuse detector behind close 1008.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Window over which rate-limited ops are counted as abuse.
pub(crate) const ABUSE_WINDOW: Duration = Duration::from_secs(10);

/// What the limiter decided about one inbound op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Refuse this op with `rate_limited`.
    Limited,
    /// Sustained abuse: close with 1008.
    Abuse,
}

#[derive(Debug)]
pub(crate) struct OpLimiter {
    bucket: DefaultDirectRateLimiter,
    threshold: u32,
    window_start: Instant,
    limited_in_window: u32,
}

impl OpLimiter {
    pub fn new(per_second: u32, burst: u32, abuse_threshold: u32) -> Self {
        let nz = |v: u32| NonZeroU32::new(v.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            bucket: RateLimiter::direct(Quota::per_second(nz(per_second)).allow_burst(nz(burst))),
            threshold: abuse_threshold,
            window_start: Instant::now(),
            limited_in_window: 0,
        }
    }

    pub(crate) fn check(&mut self) -> Verdict {
        if self.bucket.check().is_ok() {
            return Verdict::Allow;
        }
        let now = Instant::now();
        if now.duration_since(self.window_start) > ABUSE_WINDOW {
            self.window_start = now;
            self.limited_in_window = 0;
        }
        self.limited_in_window += 1;
        if self.limited_in_window >= self.threshold {
            Verdict::Abuse
        } else {
            Verdict::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_then_abuse() {
        let mut l = OpLimiter::new(1, 3, 2);
        let verdicts: Vec<Verdict> = (0..5).map(|_| l.check()).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Limited,
                Verdict::Abuse
            ]
        );
    }
}
