//! Per-connection inbound limits: the op token bucket and the abuse detector behind close 1008.

use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, RateLimiter};

use crate::client::ClientAddr;

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
        Self {
            bucket: RateLimiter::direct(crate::client::quota(per_second, burst)),
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

/// Open connections per client address, capped; a slot is held for the life of a connection and
/// given back when its [`AddressSlot`] drops. One entry per address with an open connection, so
/// the table is bounded by the connection cap it sits behind (`ws.max_connections` for
/// WebSockets, `server.max_http_connections` for the HTTP listener's share).
#[derive(Debug, Default)]
pub(crate) struct ConnectionsPerAddress {
    open: std::sync::Mutex<std::collections::HashMap<ClientAddr, usize>>,
}

/// One connection's hold on its address's count.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    table: std::sync::Arc<ConnectionsPerAddress>,
    addr: ClientAddr,
}

impl ConnectionsPerAddress {
    /// A slot for `addr`, or `None` when it already holds `cap` connections (`cap` 0: no cap).
    pub(crate) fn try_acquire(
        table: &std::sync::Arc<Self>,
        addr: ClientAddr,
        cap: usize,
    ) -> Option<AddressSlot> {
        let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(addr).or_insert(0);
        if cap > 0 && *n >= cap {
            if *n == 0 {
                open.remove(&addr);
            }
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: table.clone(),
            addr,
        })
    }

    #[cfg(test)]
    fn held(&self, addr: ClientAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&addr).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod address_tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn per_address_cap_holds_and_slots_are_given_back() {
        let table = Arc::new(ConnectionsPerAddress::default());
        let a = ClientAddr::of([192, 0, 2, 1].into());
        let b = ClientAddr::of([192, 0, 2, 2].into());
        let first = ConnectionsPerAddress::try_acquire(&table, a, 2).expect("1st");
        let _second = ConnectionsPerAddress::try_acquire(&table, a, 2).expect("2nd");
        assert!(ConnectionsPerAddress::try_acquire(&table, a, 2).is_none());
        assert!(ConnectionsPerAddress::try_acquire(&table, b, 2).is_some());
        drop(first);
        assert_eq!(table.held(a), 1);
        assert!(ConnectionsPerAddress::try_acquire(&table, a, 2).is_some());
        // No cap at all with 0.
        let many: Vec<_> = (0..5)
            .map(|_| ConnectionsPerAddress::try_acquire(&table, b, 0).expect("uncapped"))
            .collect();
        drop(many);
        assert_eq!(table.held(b), 0, "a dropped address leaves no entry behind");
    }
}
