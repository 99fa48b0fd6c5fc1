//! `POST /admin/drain`: an operator (or a deploy script) drains this node before an upgrade,
//! as SIGTERM does, without stopping the process. Behind `server.admin_token`; without one the
//! route does not exist (404).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ingest::{bearer, same};
use crate::drain::Drain;
use crate::protocol::{Problem, ProblemCode};

/// What the admin routes use.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// `server.admin_token`; empty: the admin routes are off.
    pub token: Arc<str>,
    pub drain: Arc<Drain>,
}

/// 202 with the drain's state; a second request changes nothing (`"already": true`).
pub(crate) async fn drain(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if admin.token.is_empty() {
        return Problem::new(ProblemCode::NotFound, "no such route").into_response();
    }
    match bearer(&headers) {
        Some(t) if same(t.as_bytes(), admin.token.as_bytes()) => {}
        Some(_) => {
            return Problem::new(ProblemCode::Unauthorized, "invalid admin token").into_response();
        }
        None => {
            return Problem::new(
                ProblemCode::Unauthorized,
                "missing `Authorization: Bearer <admin token>`",
            )
            .into_response();
        }
    }
    let begun = admin.drain.begin();
    if begun {
        tracing::warn!("drain requested over HTTP");
    }
    let close_in_ms = admin.drain.close_at().map_or(0, |at| {
        at.saturating_duration_since(tokio::time::Instant::now())
            .as_millis() as u64
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "draining", "already": !begun, "close_in_ms": close_in_ms})),
    )
        .into_response()
}
