//! The WebSocket endpoint `GET /ws`: handshake, connection cap, and hand-off to a session.

mod books;
mod config;
mod context;
pub mod limits;
mod ops;
mod replay;
mod resume;
pub mod session;

pub use config::WsConfig;
pub use context::{Channels, Gate, History, WsAuth, WsContext};
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

use crate::client::ClientAddr;
use crate::model::Encoding;
use crate::protocol::Problem;
use crate::protocol::ProblemCode;

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
    if ctx.drain.is_draining() {
        return Problem::new(
            ProblemCode::ShuttingDown,
            "this node is draining; connect to another one",
        )
        .into_response();
    }
    let addr = ClientAddr::of_request(&req);
    if let Err(not_until) = ctx.gate.upgrades.check(&addr) {
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
        &ctx.gate.per_address,
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
    let Ok(permit) = ctx.gate.conn_limit.clone().try_acquire_owned() else {
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
        Some(token) => match ctx.auth.verify(token, &ctx.metrics) {
            Ok(p) => Some(p),
            Err(e) => {
                return Problem::new(ProblemCode::Unauthorized, e.to_string()).into_response();
            }
        },
    };
    let authenticated = match principal {
        None => None,
        Some(p) => match ctx.auth.users.acquire(&p) {
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
    ctx.gate.sessions.spawn(async move {
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
