//! Draining a node for a rolling upgrade (SIGTERM or `POST /admin/drain`): from the moment it
//! begins, `/readyz` answers 503 `draining` and new WebSockets are refused, every open socket
//! gets a `notice` telling its client to reconnect elsewhere, and `server.drain_grace_ms` later
//! the sockets still open are closed with 1001. Clients resume on another node with `from` and
//! `epoch` (docs/PROTOCOL.md "Draining").

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The node's drain: not begun, or begun at an instant with a grace to run.
#[derive(Debug)]
pub struct Drain {
    grace: Duration,
    started: AtomicBool,
    /// Cancelled when the drain begins.
    begun: CancellationToken,
    /// When sockets must close: the beginning plus the grace.
    close_at: OnceLock<Instant>,
}

impl Drain {
    pub fn new(grace: Duration) -> Drain {
        Drain {
            grace,
            started: AtomicBool::new(false),
            begun: CancellationToken::new(),
            close_at: OnceLock::new(),
        }
    }

    /// Begins the drain; false when it had already begun (the first grace stands).
    pub fn begin(&self) -> bool {
        if self.started.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _ = self.close_at.set(Instant::now() + self.grace);
        self.begun.cancel();
        tracing::info!(grace_ms = self.grace.as_millis() as u64, "draining");
        true
    }

    pub fn is_draining(&self) -> bool {
        self.begun.is_cancelled()
    }

    /// Completes once the drain has begun.
    pub async fn begun(&self) {
        self.begun.cancelled().await
    }

    /// Completes when the sockets must close: the grace after the drain began.
    pub async fn closing(&self) {
        self.begun.cancelled().await;
        match self.close_at.get() {
            Some(at) => tokio::time::sleep_until(*at).await,
            None => std::future::pending().await,
        }
    }

    /// When the drain's grace ends, once it has begun.
    pub fn close_at(&self) -> Option<Instant> {
        self.close_at.get().copied()
    }

    /// SIGTERM: begins the drain (unless `POST /admin/drain` did) and waits until every session
    /// has ended or the grace has run out; the shutdown that follows closes what is left.
    pub async fn run_out(&self, sessions: &TaskTracker) {
        self.begin();
        // Lets `wait` complete once the sessions are gone; new ones are refused meanwhile.
        sessions.close();
        if let Some(at) = self.close_at() {
            let _ = tokio::time::timeout_at(at, sessions.wait()).await;
        }
    }

    /// The delay a client is told to wait before reconnecting: spread uniformly over the first
    /// half of the grace, so a node's clients do not all land on the others at once and each
    /// still has the second half to resume there before its socket here is closed.
    pub fn reconnect_after_ms(&self) -> u64 {
        let spread = (self.grace.as_millis() as u64 / 2).max(1);
        getrandom::u64().map_or(0, |r| r % spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn begins_once_and_closes_after_the_grace() {
        let drain = Drain::new(Duration::from_secs(10));
        assert!(!drain.is_draining());
        assert_eq!(drain.close_at(), None);
        let t0 = Instant::now();
        assert!(drain.begin());
        tokio::time::sleep(Duration::from_secs(3)).await;
        // A second request keeps the first deadline.
        assert!(!drain.begin());
        assert!(drain.is_draining());
        drain.begun().await;
        drain.closing().await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_closes_before_the_drain_begins() {
        let drain = Drain::new(Duration::from_millis(1));
        let waited = tokio::time::timeout(Duration::from_secs(60), drain.closing()).await;
        assert!(waited.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn run_out_ends_when_the_sessions_do_or_at_the_grace() {
        let drain = Drain::new(Duration::from_secs(30));
        let sessions = TaskTracker::new();
        sessions.spawn(tokio::time::sleep(Duration::from_secs(2)));
        let t0 = Instant::now();
        drain.run_out(&sessions).await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(2));

        let drain = Drain::new(Duration::from_secs(5));
        let sessions = TaskTracker::new();
        sessions.spawn(std::future::pending::<()>());
        let t0 = Instant::now();
        drain.run_out(&sessions).await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(5));
    }

    #[test]
    fn reconnect_delays_spread_over_the_first_half_of_the_grace() {
        let drain = Drain::new(Duration::from_millis(1000));
        let delays: Vec<u64> = (0..200).map(|_| drain.reconnect_after_ms()).collect();
        assert!(delays.iter().all(|d| *d < 500), "{delays:?}");
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "not spread: {distinct:?}");
        assert_eq!(Drain::new(Duration::ZERO).reconnect_after_ms(), 0);
    }
}
