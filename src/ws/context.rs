//! What the WebSocket endpoint and its sessions use, built once by the server and split by
//! concern, so each part takes only what it needs: the endpoint admits through the [`Gate`],
//! the op handlers authenticate with [`WsAuth`] and serve the [`Channels`], and the session's
//! loop adds the socket settings, the metrics and the shutdown signal.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::WsConfig;
use super::limits::ConnectionsPerAddress;
use crate::client::ClientAddr;
use crate::model::Symbols;
use crate::rooms::Hub;
use crate::telemetry::metrics::Metrics;

/// The endpoint's and the sessions' state.
#[derive(Debug)]
pub struct WsContext {
    pub config: WsConfig,
    pub metrics: Arc<Metrics>,
    /// Cancelled when sockets must close (1001).
    pub shutdown: CancellationToken,
    /// The node's drain: upgrades refused, a `notice` to every socket, then 1001 after
    /// `server.drain_grace_ms`.
    pub drain: Arc<crate::drain::Drain>,
    pub gate: Gate,
    pub auth: WsAuth,
    pub channels: Channels,
}

/// Who may open a socket, and the sessions it opened: only the endpoint uses it.
#[derive(Debug)]
pub struct Gate {
    /// Every session, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Caps concurrent connections (`ws.max_connections`).
    pub conn_limit: Arc<Semaphore>,
    /// Open connections per client address (`ws.max_connections_per_ip`).
    pub(crate) per_address: Arc<ConnectionsPerAddress>,
    /// Upgrades per client address (`ws.upgrades_per_second`, `ws.upgrade_burst`).
    pub(crate) upgrades: crate::client::KeyedLimiter<ClientAddr>,
}

impl Gate {
    /// The gate `config` asks for, tracking its sessions in `sessions`.
    pub fn new(config: &WsConfig, sessions: TaskTracker) -> Gate {
        Gate {
            sessions,
            conn_limit: Arc::new(Semaphore::new(config.max_connections)),
            per_address: Default::default(),
            upgrades: crate::client::KeyedLimiter::new(crate::client::quota(
                config.upgrades_per_second,
                config.upgrade_burst,
            )),
        }
    }
}

/// Who a connection is: its token, checked at connect or by an `auth` op (`[auth]`).
#[derive(Debug)]
pub struct WsAuth {
    /// Verifies connection tokens; `None` when no key is configured.
    pub verifier: Option<Arc<crate::auth::Verifier>>,
    /// Connections without a token may subscribe (`auth.anonymous`).
    pub anonymous: bool,
    /// Without anonymous access, seconds a connection has to authenticate (`auth.auth_timeout_s`).
    pub auth_timeout_s: u64,
    /// Authenticated connections per user (the token's `limits.connections`).
    pub users: crate::auth::UserConnections,
}

impl WsAuth {
    /// Verifies a connection token against `[auth]`'s key, counting it in `metrics`.
    pub(crate) fn verify(
        &self,
        token: &str,
        metrics: &Metrics,
    ) -> Result<crate::auth::Principal, crate::auth::AuthError> {
        match &self.verifier {
            Some(v) => {
                metrics.tokens_verified.fetch_add(1, Ordering::Relaxed);
                v.verify(token)
            }
            None => Err(crate::auth::AuthError::Disabled),
        }
    }
}

/// Where a session's channels come from: the rings (the hub), the symbols, older history, the
/// users' portfolios, and the sizes a subscribe may ask for.
#[derive(Debug)]
pub struct Channels {
    pub hub: Arc<Hub>,
    pub symbols: Arc<Symbols>,
    /// This server run's identity (start time in µs: exact in a JavaScript number): `seq`s
    /// restart with every run, so a resume point is only meaningful with the epoch it was seen
    /// under.
    pub epoch: i64,
    /// Largest snapshot a subscribe may ask for (`ring.capacity`).
    pub ring_capacity: usize,
    /// Levels per side of the published book view (`book.depth`).
    pub book_depth: usize,
    /// The bar intervals this server streams (`pipeline.bar_intervals`): `bars.<interval>`
    /// channels of other intervals are refused.
    pub bar_intervals: crate::model::BarIntervals,
    /// History older than the rings (an edge node's stream); `None` on a single node.
    pub history: Option<Arc<dyn History>>,
    /// This run's stored ticks, for replays from a time older than the rings (`from_ts`).
    pub stored_ticks: Option<Arc<dyn super::StoredTicks>>,
    /// The users' private `portfolio` channels.
    pub portfolios: Arc<crate::portfolio::LivePortfolios>,
}

/// Events older than the rings hold, from a store of the whole sequence (the cluster's
/// stream), so a resume whose gap left the ring can still be replayed exactly.
pub trait History: Send + Sync + std::fmt::Debug {
    /// The encoded events of `ch` with `seq` in `(from, until]`, oldest first, or `None` when
    /// they are not all held any more, or are more than `max_bytes` (the connection's snapshot
    /// budget: reading stops there) or too many for one resume.
    fn range(
        &self,
        ch: crate::model::ChannelId,
        from: u64,
        until: u64,
        max_bytes: usize,
    ) -> futures_util::future::BoxFuture<'_, Option<Vec<crate::model::Wire>>>;

    /// Most gaps one subscribe may read (`cluster.resume_max_reads`); the others get `reset`.
    fn max_reads(&self) -> usize;
}
