//! The WebSocket endpoint `GET /ws`: handshake, connection cap, and hand-off to a session.

mod books;
mod config;
pub mod limits;
mod ops;
mod replay;
mod resume;
pub mod session;

pub use config::WsConfig;
use limits::ConnectionsPerAddress;
pub use replay::StoredTicks;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::ClientAddr;
use crate::model::{Encoding, Symbols};
use crate::protocol::Problem;
use crate::protocol::ProblemCode;
use crate::rooms::Hub;
use crate::telemetry::metrics::Metrics;

/// What the WebSocket endpoint and its sessions use, built once by the server.
#[derive(Debug)]
pub struct WsContext {
    pub config: WsConfig,
    /// Largest snapshot a subscribe may ask for (`ring.capacity`).
    pub ring_capacity: usize,
    pub hub: Arc<Hub>,
    pub symbols: Arc<Symbols>,
    pub metrics: Arc<Metrics>,
    /// This server run's identity (start time in µs: exact in a JavaScript number): `seq`s
    /// restart with every run, so a resume point is only meaningful with the epoch it was seen
    /// under.
    pub epoch: i64,
    /// Every session, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Cancelled when sockets must close (1001).
    pub shutdown: CancellationToken,
    /// Caps concurrent connections.
    pub conn_limit: Arc<Semaphore>,
    /// Open connections per client address (`ws.max_connections_per_ip`).
    pub(crate) per_address: Arc<ConnectionsPerAddress>,
    /// Upgrades per client address (`ws.upgrades_per_second`, `ws.upgrade_burst`).
    pub(crate) upgrades: crate::client::KeyedLimiter<ClientAddr>,
    /// History older than the rings (an edge node's stream); `None` on a single node.
    pub history: Option<Arc<dyn History>>,
    /// This run's stored ticks, for replays from a time older than the rings (`from_ts`).
    pub stored_ticks: Option<Arc<dyn StoredTicks>>,
    /// Verifies connection tokens (`[auth]`); `None` when no key is configured.
    pub auth: Option<Arc<crate::auth::Verifier>>,
    /// Connections without a token may subscribe (`auth.anonymous`).
    pub anonymous: bool,
    /// Without anonymous access, seconds a connection has to authenticate (`auth.auth_timeout_s`).
    pub auth_timeout_s: u64,
    /// Authenticated connections per user (the token's `limits.connections`).
    pub users: crate::auth::UserConnections,
    /// Levels per side of the published book view (`book.depth`).
    pub book_depth: usize,
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

impl WsContext {
    /// Verifies a connection token against `[auth]`'s key.
    pub(crate) fn verify(
        &self,
        token: &str,
    ) -> Result<crate::auth::Principal, crate::auth::AuthError> {
        match &self.auth {
            Some(v) => {
                self.metrics.tokens_verified.fetch_add(1, Ordering::Relaxed);
                v.verify(token)
            }
            None => Err(crate::auth::AuthError::Disabled),
        }
    }

    /// The per-address upgrade limiter `config` asks for.
    pub(crate) fn upgrade_limiter(config: &WsConfig) -> crate::client::KeyedLimiter<ClientAddr> {
        crate::client::KeyedLimiter::new(crate::client::quota(
            config.upgrades_per_second,
            config.upgrade_burst,
        ))
    }
}

/// The endpoint's state: one shared [`WsContext`].
pub(crate) type WsState = Arc<WsContext>;

/// `?v=` of the contract version (only 1 exists) and `?encoding=` of the server's frames.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct WsQuery {
    v: Option<String>,
    encoding: Option<String>,
    /// A connection token (JWT), as an `auth` op would carry it.
    token: Option<String>,
}

/// The frame encoding a `?encoding=` value names (`json` when it is left out).
fn encoding_of(q: &WsQuery) -> Result<Encoding, Problem> {
    match q.encoding.as_deref() {
        None | Some("json") => Ok(Encoding::Json),
        Some("msgpack") => Ok(Encoding::Msgpack),
        Some(other) => Err(Problem::new(
            ProblemCode::UnsupportedEncoding,
            format!("encoding {other:?} is not supported; use json or msgpack"),
        )),
    }
}

/// Buffer and size limits of one socket.
pub(crate) fn socket_config(cfg: &WsConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(0)
        .max_message_size(Some(cfg.max_frame_bytes))
        .max_frame_size(Some(cfg.max_frame_bytes))
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Upgrades to a WebSocket and spawns the session.
pub(crate) async fn upgrade(
    State(ctx): State<WsState>,
    Query(q): Query<WsQuery>,
    mut req: Request,
) -> Response {
    if let Some(v) = q.v.as_deref()
        && v != "1"
    {
        return Problem::new(
            ProblemCode::UnsupportedVersion,
            format!("protocol version {v:?} is not supported; this server speaks v=1"),
        )
        .into_response();
    }
    let encoding = match encoding_of(&q) {
        Ok(e) => e,
        Err(problem) => return problem.into_response(),
    };
    if ctx.shutdown.is_cancelled() {
        return Problem::new(ProblemCode::ShuttingDown, "the server is shutting down")
            .into_response();
    }
    let addr = ClientAddr::of_request(&req);
    if let Err(not_until) = ctx.upgrades.check(&addr) {
        ctx.metrics
            .upgrades_rate_limited
            .fetch_add(1, Ordering::Relaxed);
        return Problem::new(
            ProblemCode::RateLimited,
            format!("too many WebSocket upgrades from {addr}; slow down"),
        )
        .retry_after(crate::client::retry_after_secs(&not_until))
        .into_response();
    }
    let Some(slot) = ConnectionsPerAddress::try_acquire(
        &ctx.per_address,
        addr,
        ctx.config.max_connections_per_ip,
    ) else {
        ctx.metrics
            .connections_rejected_per_address
            .fetch_add(1, Ordering::Relaxed);
        return Problem::new(
            ProblemCode::TooManyConnections,
            format!(
                "{addr} already holds ws.max_connections_per_ip ({}) connections",
                ctx.config.max_connections_per_ip
            ),
        )
        .into_response();
    };
    let Ok(permit) = ctx.conn_limit.clone().try_acquire_owned() else {
        ctx.metrics
            .connections_rejected
            .fetch_add(1, Ordering::Relaxed);
        return Problem::new(
            ProblemCode::TooManyConnections,
            "the server is at its connection limit",
        )
        .into_response();
    };
    // A token at connect is checked before the upgrade, so a bad one never gets a socket, and
    // only once the rate limit and the caps admitted the request: verifying (RS256 above all)
    // costs far more than refusing, so it must not be free to drive.
    let principal = match q.token.as_deref() {
        None => None,
        Some(token) => match ctx.verify(token) {
            Ok(p) => Some(p),
            Err(e) => {
                return Problem::new(ProblemCode::Unauthorized, e.to_string()).into_response();
            }
        },
    };
    let authenticated = match principal {
        None => None,
        Some(p) => match ctx.users.acquire(&p) {
            Ok(slot) => Some((p, slot)),
            Err(e) => {
                return Problem::new(ProblemCode::TooManyConnections, e.to_string())
                    .into_response();
            }
        },
    };
    let headers = req.headers();
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let upgrade_ok = header_has(headers, header::UPGRADE, "websocket")
        && header_has(headers, header::CONNECTION, "upgrade");
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let (Some(key), true, true) = (key, upgrade_ok, version_ok) else {
        return Problem::new(
            ProblemCode::WebsocketRequired,
            "this endpoint speaks WebSocket (version 13) only",
        )
        .into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let socket_cfg = socket_config(&ctx.config);
    let session_ctx = ctx.clone();
    ctx.sessions.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let socket =
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_cfg)).await;
                session::run(socket, session_ctx, encoding, authenticated).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
        drop(slot);
        drop(permit);
    });
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    res
}
