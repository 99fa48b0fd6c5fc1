//! The HTTP surface: the dashboard at `/`, `/ws`, the REST API under `/api/v1`, health and
//! metrics.

pub mod health;
pub mod ingest;
pub mod problem;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::server::Shared;

/// Largest request body accepted (ingest batches are the largest legitimate bodies).
pub const MAX_BODY_BYTES: usize = 4 << 20;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/assets/{*path}", get(web::asset))
        .route("/ws", get(crate::ws::upgrade))
        .route("/api/v1/ingest", post(ingest::ingest))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async {
            problem::Problem::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}
