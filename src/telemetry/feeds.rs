//! Per-feed status of the upstream feeds: counters labelled by feed name for `/metrics`, and
//! the health `/readyz` reports (a refused subscription degrades readiness, naming the feed).
//!
//! Each upstream feed registers one [`FeedStatus`] at start and updates it with relaxed atomic
//! adds; the registry is only locked to register and to read the list.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::now_ms;

/// One upstream feed's counters and health.
#[derive(Debug, Default)]
pub struct FeedStatus {
    pub name: String,
    /// Text and binary messages received.
    pub messages: AtomicU64,
    /// Trades accepted from the venue.
    pub trades: AtomicU64,
    /// Unusable messages or trades, refused subscriptions and connection errors.
    pub errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// Trades for symbols the feed is not configured for (dropped).
    pub unsubscribed: AtomicU64,
    /// Depth updates sent to ingest (`depth` set).
    pub book_updates: AtomicU64,
    /// Books that lost sync (a gap, a checksum mismatch, an unusable delta): resyncs.
    pub book_resyncs: AtomicU64,
    /// Depth messages older than the last one (Binance `lastUpdateId`), dropped.
    pub book_stale: AtomicU64,
    /// Wall-clock ms of the last accepted trade (0 = none yet).
    pub last_trade_ms: AtomicI64,
    /// The venue's last refusal on the current connection; cleared by a new connection.
    /// A std mutex: held only to copy a string, never across an await.
    refused: Mutex<Option<String>>,
}

/// One row per labelled metric: exported name, type, help, and the value it reads.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    fn(&FeedStatus) -> i64,
);

/// The per-feed metrics, declared once (label `feed`).
const ROWS: &[Row] = &[
    (
        "tickcast_upstream_messages_total",
        "counter",
        "messages received from the venue",
        |s| s.messages.load(Ordering::Relaxed) as i64,
    ),
    (
        "tickcast_upstream_trades_total",
        "counter",
        "trades accepted from the venue",
        |s| s.trades.load(Ordering::Relaxed) as i64,
    ),
    (
        "tickcast_upstream_errors_total",
        "counter",
        "bad messages, refused subscriptions and connection errors",
        |s| s.errors.load(Ordering::Relaxed) as i64,
    ),
    (
        "tickcast_upstream_feed_reconnects_total",
        "counter",
        "reconnect attempts",
        |s| s.reconnects.load(Ordering::Relaxed) as i64,
    ),
    (
        "tickcast_upstream_unsubscribed_total",
        "counter",
        "trades for symbols the feed is not configured for (dropped)",
        |s| s.unsubscribed.load(Ordering::Relaxed) as i64,
    ),
    (
        "tickcast_upstream_book_updates_total",
        "counter",
        "order book updates from the venue's depth stream sent to ingest",
        |s| s.book_updates.load(Ordering::Relaxed) as i64,
    ),
    (
        "tickcast_upstream_book_resyncs_total",
        "counter",
        "order books that lost sync (sequence gap, checksum mismatch, unusable delta): resynced",
        |s| s.book_resyncs.load(Ordering::Relaxed) as i64,
    ),
    (
        "tickcast_upstream_book_stale_total",
        "counter",
        "depth messages older than the last one for their symbol (dropped)",
        |s| s.book_stale.load(Ordering::Relaxed) as i64,
    ),
    (
        "tickcast_upstream_last_trade_age_seconds",
        "gauge",
        "seconds since the last accepted trade (-1 before the first)",
        |s| s.last_trade_age_ms().map_or(-1, |ms| ms / 1000),
    ),
];

// === impl FeedStatus ===

impl FeedStatus {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    pub(crate) fn trades_accepted(&self, n: u64) {
        self.trades.fetch_add(n, Ordering::Relaxed);
        self.last_trade_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub(crate) fn last_trade_age_ms(&self) -> Option<i64> {
        match self.last_trade_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some((now_ms() - at).max(0)),
        }
    }

    /// The venue refused a subscription on this connection.
    pub(crate) fn set_refused(&self, message: Option<String>) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = message;
    }

    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Every upstream feed's status, in registration order.
#[derive(Debug, Default)]
pub struct FeedRegistry {
    /// A std mutex: locked to push or clone the list, never across an await.
    feeds: Mutex<Vec<Arc<FeedStatus>>>,
}

// === impl FeedRegistry ===

impl FeedRegistry {
    pub(crate) fn register(&self, name: &str) -> Arc<FeedStatus> {
        let status = Arc::new(FeedStatus::new(name));
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(status.clone());
        status
    }

    pub fn list(&self) -> Vec<Arc<FeedStatus>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Prometheus text for every row and feed (nothing before the first feed registers).
    pub(crate) fn render(&self, out: &mut String) {
        let feeds = self.list();
        if feeds.is_empty() {
            return;
        }
        for (name, kind, help, read) in ROWS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for f in &feeds {
                let _ = writeln!(out, "{name}{{feed=\"{}\"}} {}", f.name, read(f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_renders_once_with_one_line_per_feed() {
        let r = FeedRegistry::default();
        let mut out = String::new();
        r.render(&mut out);
        assert!(out.is_empty());
        let a = r.register("binance");
        r.register("okx");
        a.messages.fetch_add(3, Ordering::Relaxed);
        a.trades_accepted(2);
        r.render(&mut out);
        for (name, kind, _, _) in ROWS {
            assert_eq!(
                out.matches(&format!("# TYPE {name} {kind}\n")).count(),
                1,
                "{out}"
            );
        }
        assert!(
            out.contains("tickcast_upstream_messages_total{feed=\"binance\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("tickcast_upstream_trades_total{feed=\"binance\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("tickcast_upstream_last_trade_age_seconds{feed=\"binance\"} 0\n"));
        assert!(out.contains("tickcast_upstream_last_trade_age_seconds{feed=\"okx\"} -1\n"));
        a.set_refused(Some("no such pair".into()));
        assert_eq!(a.refused().as_deref(), Some("no such pair"));
    }
}
