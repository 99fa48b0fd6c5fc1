//! Liveness, readiness and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::server::Shared;

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when ingest runs and the server is not shutting down.
pub async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let shutting_down = shared.shutdown.is_cancelled();
    let status = if shutting_down {
        "shutting_down"
    } else {
        "ready"
    };
    let code = if shutting_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(json!({"status": status}))).into_response()
}

pub async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut res = shared.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
