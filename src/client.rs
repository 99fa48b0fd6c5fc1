//! Who a caller is, for limits: the client's address (behind a trusted proxy, the address the
//! proxy reports), grouped the way addresses are handed out (IPv6 by /64), and API keys once they
//! have been verified.
//!
//! Unverified credentials never buy a bucket of their own: a request is limited by its address
//! until its key has authenticated once, so a fresh random token per request gets nothing.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock, QuantaInstant};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota};
use sha2::{Digest, Sha256};

/// Verified keys remembered at most; past it the set starts again (every key then pays from its
/// address once more until it authenticates). 10,000 × 32 B digests ≈ 0.5 MiB with the table.
pub const VERIFIED_KEYS_MAX: usize = 10_000;

/// Proxies whose `X-Forwarded-For` is believed: single addresses or CIDR blocks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `["10.0.0.0/8", "127.0.0.1", "::1"]`; the error names the bad entry. IPv4-mapped
    /// IPv6 entries (`::ffff:10.0.0.0/104`, as dual-stack logs print addresses) are the IPv4
    /// blocks they carry (`10.0.0.0/8`), because peers and hops are compared as IPv4 too.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| parse_block(e).map_err(|why| format!("{e:?} {why}")))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|&(net, bits)| in_block(ip, net, bits))
    }
}

/// Bits of an IPv6 prefix taken by the `::ffff:0:0/96` of IPv4-mapped addresses.
const MAPPED_PREFIX_BITS: u8 = 96;

fn parse_block(s: &str) -> Result<(IpAddr, u8), &'static str> {
    const NOT_AN_ADDRESS: &str = "is not an IP address or CIDR block";
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (
            a.trim().parse::<IpAddr>().map_err(|_| NOT_AN_ADDRESS)?,
            Some(b.trim().parse::<u8>().map_err(|_| NOT_AN_ADDRESS)?),
        ),
        None => (
            s.trim().parse::<IpAddr>().map_err(|_| NOT_AN_ADDRESS)?,
            None,
        ),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return Err("has a prefix longer than the address");
    }
    match canonical(addr) {
        // Mapped: the prefix counted in the IPv4 address's own bits.
        IpAddr::V4(v4) if addr.is_ipv6() => bits
            .checked_sub(MAPPED_PREFIX_BITS)
            .map(|v4_bits| (IpAddr::V4(v4), v4_bits))
            .ok_or("is an IPv4-mapped block shorter than /96 (it would cover more than IPv4)"),
        canonical => Ok((canonical, bits)),
    }
}

fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32u32.saturating_sub(bits.into()))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128u32.saturating_sub(bits.into()))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4 peers) is the
/// IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The address limits are keyed by: an IPv4 address whole, an IPv6 address by its /64 (what one
/// subscriber is usually given, so rotating the low bits buys no new bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(IpAddr);

impl ClientAddr {
    pub fn of(ip: IpAddr) -> ClientAddr {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                ClientAddr(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => ClientAddr(v4),
        }
    }

    /// The address of a request: its peer, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy (the rightmost untrusted
    /// hop: entries left of it were written by the client and prove nothing).
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> ClientAddr {
        if !trusted.contains(peer) {
            return ClientAddr::of(peer);
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if trusted.contains(ip) => continue,
                Ok(ip) => return ClientAddr::of(ip),
                // A malformed hop: nothing left of it can be trusted either.
                Err(_) => break,
            }
        }
        ClientAddr::of(peer)
    }

    /// The address the client-address layer attached to `req` (the peer's as a fallback).
    pub fn of_request(req: &Request) -> ClientAddr {
        match req.extensions().get::<ClientAddr>() {
            Some(addr) => *addr,
            None => ClientAddr::of(peer_ip(req)),
        }
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// The TCP peer of a request (`0.0.0.0` when the server attached none, as in router tests).
pub fn peer_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// A token bucket of `per_second` with `burst` from config values (validated to be at least 1;
/// a 0 would read as 1 rather than panic).
pub fn quota(per_second: u32, burst: u32) -> Quota {
    let nz = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(nz(per_second)).allow_burst(nz(burst))
}

/// A keyed limiter's table is first pruned of idle keys when it tracks more than this many.
pub const LIMITER_PRUNE_AT: usize = 10_000;

/// A token bucket per key (client address, verified key) whose table is pruned of idle keys
/// (their bucket full again, so forgetting them changes nothing) at an amortised O(1) cost per
/// check. A prune scans the whole table, so it runs only once the table holds more than
/// [`LIMITER_PRUNE_AT`] keys and more than twice what the last prune kept: the keys added in
/// between pay for the scan. Busy keys cannot be dropped, so the table holds at most
/// max([`LIMITER_PRUNE_AT`], twice the keys busy at the last prune) + 1.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    /// The table size past which the next check prunes (`usize::MAX` while one does).
    prune_past: AtomicUsize,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(quota: Quota) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::dashmap(quota),
            prune_past: AtomicUsize::new(LIMITER_PRUNE_AT),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is there.
    pub fn check(&self, key: &K) -> Result<(), NotUntil<QuantaInstant>> {
        self.prune_if_due();
        self.limiter.check_key(key)
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    fn prune_if_due(&self) {
        let past = self.prune_past.load(Ordering::Acquire);
        if self.limiter.len() <= past {
            return;
        }
        // One pruner at a time; concurrent checks go on without waiting for it.
        if self
            .prune_past
            .compare_exchange(past, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.limiter.retain_recent();
        let kept = self.limiter.len();
        self.prune_past.store(
            LIMITER_PRUNE_AT.max(kept.saturating_mul(2)),
            Ordering::Release,
        );
    }
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

/// `Retry-After` seconds for a limiter's refusal: the wait rounded up, at least 1.
pub fn retry_after_secs(not_until: &NotUntil<QuantaInstant>) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// SHA-256 of a credential: keys are never kept in memory in clear.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Credentials that have authenticated (API keys, the ingest token), by digest, bounded by
/// [`VERIFIED_KEYS_MAX`].
#[derive(Debug, Default)]
pub struct VerifiedKeys(Mutex<HashSet<[u8; 32]>>);

impl VerifiedKeys {
    pub fn insert(&self, digest: [u8; 32]) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= VERIFIED_KEYS_MAX && !set.contains(&digest) {
            set.clear();
        }
        set.insert(digest);
    }

    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().expect("header"));
        h
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            ClientAddr::of(ip("2001:db8:1:2:aaaa::1")),
            ClientAddr::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientAddr::of(ip("2001:db8:1:2::1")),
            ClientAddr::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientAddr::of(ip("::ffff:192.0.2.7")),
            ClientAddr::of(ip("192.0.2.7"))
        );
        assert_ne!(
            ClientAddr::of(ip("192.0.2.7")),
            ClientAddr::of(ip("192.0.2.8"))
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).expect("ok");
        let client = ClientAddr::of(ip("203.0.113.5"));
        // From an untrusted peer the header is ignored: anyone can write it.
        assert_eq!(
            ClientAddr::resolve(ip("198.51.100.1"), &xff("203.0.113.5"), &trusted),
            ClientAddr::of(ip("198.51.100.1"))
        );
        // From a trusted proxy, the rightmost untrusted hop; a spoofed left entry is ignored.
        assert_eq!(
            ClientAddr::resolve(
                ip("10.1.2.3"),
                &xff("1.2.3.4, 203.0.113.5, 10.9.9.9"),
                &trusted
            ),
            client
        );
        assert_eq!(
            ClientAddr::resolve(ip("::1"), &xff("203.0.113.5"), &trusted),
            client
        );
        // No header, or only proxies: the peer itself.
        assert_eq!(
            ClientAddr::resolve(ip("10.1.2.3"), &HeaderMap::new(), &trusted),
            ClientAddr::of(ip("10.1.2.3"))
        );
        assert_eq!(
            ClientAddr::resolve(ip("10.1.2.3"), &xff("garbage, 10.0.0.1"), &trusted),
            ClientAddr::of(ip("10.1.2.3"))
        );
    }

    #[test]
    fn trusted_proxy_entries_are_checked() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
        assert!(TrustedProxies::parse(&["0.0.0.0/0".into(), "fd00::/8".into()]).is_ok());
    }

    fn trusted(entries: &[&str]) -> TrustedProxies {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        TrustedProxies::parse(&entries).expect("valid entries")
    }

    #[test]
    fn mapped_proxy_entries_are_their_ipv4_blocks() {
        // A single mapped address is that IPv4 address, not every IPv4 peer.
        let one = trusted(&["::ffff:10.0.0.5"]);
        assert_eq!(one.0, vec![(ip("10.0.0.5"), 32)]);
        assert!(one.contains(ip("10.0.0.5")));
        assert!(one.contains(ip("::ffff:10.0.0.5")));
        assert!(!one.contains(ip("10.0.0.6")));
        assert!(!one.contains(ip("192.0.2.1")));
        // A mapped prefix counts the 96 bits of ::ffff:0:0/96: /104 is the IPv4 /8.
        let block = trusted(&["::ffff:10.0.0.0/104"]);
        assert_eq!(block.0, vec![(ip("10.0.0.0"), 8)]);
        assert!(block.contains(ip("10.200.1.2")));
        assert!(!block.contains(ip("11.0.0.1")));
        assert_eq!(trusted(&["::ffff:0:0/96"]).0, vec![(ip("0.0.0.0"), 0)]);
        // Shorter than /96 would reach past IPv4: refused, the message says why.
        let err = TrustedProxies::parse(&["::ffff:10.0.0.0/95".into()]).expect_err("refused");
        assert!(err.contains("shorter than /96"), "{err}");
        assert!(TrustedProxies::parse(&["::ffff:10.0.0.0/129".into()]).is_err());
        // Plain IPv6 blocks keep their IPv6 prefix.
        assert_eq!(trusted(&["fd00::/8"]).0, vec![(ip("fd00::"), 8)]);
    }

    #[test]
    fn mapped_peers_and_hops_resolve_as_ipv4() {
        let proxies = trusted(&["::ffff:10.0.0.0/104"]);
        // A mapped peer inside the block is trusted; its mapped hop is the client, as IPv4.
        assert_eq!(
            ClientAddr::resolve(
                ip("::ffff:10.1.1.1"),
                &xff("::ffff:203.0.113.5, ::ffff:10.9.9.9"),
                &proxies
            ),
            ClientAddr::of(ip("203.0.113.5"))
        );
        // A peer outside it is not, however it is written.
        assert_eq!(
            ClientAddr::resolve(ip("::ffff:192.0.2.1"), &xff("203.0.113.5"), &proxies),
            ClientAddr::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn a_bad_mapped_proxy_block_is_a_config_error_naming_the_key() {
        let mut server = crate::config::Config::defaults().expect("defaults").server;
        server.trusted_proxies = vec!["::ffff:10.0.0.0/64".into()];
        assert_eq!(
            crate::config_section::failed_key(server.validate()).as_deref(),
            Some("server.trusted_proxies")
        );
    }

    /// Checks `n` distinct keys once each.
    fn fill(limiter: &KeyedLimiter<u64>, n: u64) {
        for key in 0..n {
            let _ = limiter.check(&key);
        }
    }

    #[test]
    fn idle_keys_are_pruned_and_the_table_stays_bounded() {
        // A bucket that is full again one nanosecond after its token was taken: every key but
        // the one being checked is idle.
        let limiter = KeyedLimiter::new(quota(1_000_000_000, 1));
        fill(&limiter, 3 * LIMITER_PRUNE_AT as u64);
        assert!(limiter.len() <= LIMITER_PRUNE_AT + 1, "{}", limiter.len());
        assert!(limiter.prune_past.load(Ordering::Relaxed) < 2 * LIMITER_PRUNE_AT);
    }

    #[test]
    fn busy_keys_are_kept_and_scanned_only_when_the_table_doubles() {
        // One token an hour: no key becomes idle during the test, so no prune can drop any.
        let hourly = Quota::with_period(std::time::Duration::from_secs(3600)).expect("a period");
        let limiter = KeyedLimiter::new(hourly.allow_burst(NonZeroU32::MIN));
        fill(&limiter, LIMITER_PRUNE_AT as u64);
        assert_eq!(limiter.prune_past.load(Ordering::Relaxed), LIMITER_PRUNE_AT);
        // The check past 10,000 keys scans once and keeps them all (10,001 with its own)...
        fill(&limiter, LIMITER_PRUNE_AT as u64 + 2);
        assert_eq!(limiter.len(), LIMITER_PRUNE_AT + 2);
        let after_first = limiter.prune_past.load(Ordering::Relaxed);
        assert_eq!(after_first, 2 * (LIMITER_PRUNE_AT + 1));
        // ...and the next scan waits until the table has doubled, instead of one per check.
        fill(&limiter, after_first as u64);
        assert_eq!(limiter.prune_past.load(Ordering::Relaxed), after_first);
        fill(&limiter, after_first as u64 + 2);
        assert_eq!(
            limiter.prune_past.load(Ordering::Relaxed),
            2 * (after_first + 1)
        );
        assert_eq!(
            limiter.len(),
            after_first + 2,
            "busy keys are never dropped"
        );
        // Every key is still limited by its own bucket.
        assert!(limiter.check(&0).is_err());
    }

    #[test]
    fn verified_keys_are_bounded() {
        let keys = VerifiedKeys::default();
        for i in 0..VERIFIED_KEYS_MAX + 5 {
            keys.insert(key_digest(&i.to_string()));
        }
        let held = keys.0.lock().expect("lock").len();
        assert!(held <= VERIFIED_KEYS_MAX, "{held}");
        assert!(keys.contains(&key_digest(&(VERIFIED_KEYS_MAX + 4).to_string())));
    }
}
