//! The HTTP surface: the dashboard at `/`, `/ws`, the REST API under `/api/v1`, health and
//! metrics.
//!
//! Every request is first attributed to a client address (`identify`: the peer, or behind a
//! proxy in `server.trusted_proxies` the address it reports; IPv6 by /64). Every route but `/ws`
//! then passes a keyed rate limit (429 problem with `Retry-After`): by verified API key, or by
//! client address for anything not yet verified, so unverified tokens buy no bucket of their
//! own. `/ws` has its own per-address upgrade rate and connection cap (`ws::upgrade`). REST routes
//! also record their latency (`tickcast_http_request_seconds`) and have a body size limit
//! (`api.max_body_bytes`; 413 problem). Every error is a [`Problem`](crate::protocol::Problem).
//! `/openapi.json` is generated from the handlers' annotations.

pub mod admin;
pub mod auth;
pub mod book;
mod config;
mod deadlines;
pub mod health;
pub mod indicators;
pub mod ingest;
pub mod market;
pub mod openapi;
pub mod params;
pub mod portfolio;
pub mod predictions;
pub(crate) mod serve;
pub mod ticker;
pub mod web;

pub use config::ApiConfig;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::client::{
    ClientAddr, KeyedLimiter, TrustedProxies, VerifiedKeys, key_digest, peer_ip, quota,
    retry_after_secs,
};
use crate::protocol::{Problem, ProblemCode};
use crate::telemetry::metrics::Metrics;
use crate::ws::WsState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// Largest request body accepted (ingest batches are the largest legitimate bodies).
pub(crate) const MAX_BODY_BYTES: usize = 4 << 20;

/// Who a request is, for rate limiting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RateKey {
    /// SHA-256 of a credential that has authenticated before (keys are not kept in clear).
    Key([u8; 32]),
    /// Everything else, by client address.
    Addr(ClientAddr),
}

/// What the HTTP layers use: who to believe about client addresses, which credentials are
/// verified, the keyed rate limiter and the latency histogram.
pub struct RestGuard {
    limiter: KeyedLimiter<RateKey>,
    trusted: TrustedProxies,
    verified: Arc<VerifiedKeys>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for RestGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestGuard")
            .field("limited_keys", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl RestGuard {
    pub fn new(
        config: &ApiConfig,
        trusted: TrustedProxies,
        verified: Arc<VerifiedKeys>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            limiter: KeyedLimiter::new(quota(config.requests_per_second, config.burst)),
            trusted,
            verified,
            metrics,
        }
    }
}

/// Everything the HTTP surface needs, built once by the server. Each handler extracts only its
/// own part (`State<MarketState>`, `State<WsState>`, ...) through [`FromRef`], so no handler can
/// reach state it does not use.
#[derive(Debug, Clone)]
pub struct AppState {
    pub market: market::MarketState,
    pub portfolio: portfolio::PortfolioState,
    pub predictions: predictions::PredictionState,
    pub ingest: ingest::IngestState,
    pub health: health::HealthState,
    pub admin: admin::AdminState,
    pub ws: WsState,
    pub guard: Arc<RestGuard>,
    /// Largest REST request body (`api.max_body_bytes`).
    pub max_body_bytes: usize,
}

/// `FromRef` for each substate: a handler asking for `State<T>` gets `app.field.clone()`.
macro_rules! substate {
    ($($field:ident: $ty:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $ty {
            fn from_ref(app: &AppState) -> Self {
                app.$field.clone()
            }
        }
    )*};
}

substate! {
    market: market::MarketState,
    portfolio: portfolio::PortfolioState,
    predictions: predictions::PredictionState,
    ingest: ingest::IngestState,
    health: health::HealthState,
    admin: admin::AdminState,
    ws: WsState,
    guard: Arc<RestGuard>,
}

pub fn router(app: AppState) -> Router {
    let rest = Router::new()
        .route("/api/v1/symbols", get(market::symbols))
        .route("/api/v1/ticker", get(ticker::tickers))
        .route("/api/v1/ticker/{symbol}", get(ticker::ticker))
        .route("/api/v1/portfolio", get(portfolio::portfolio))
        .route("/api/v1/portfolio/trades", post(portfolio::record_trade))
        .route("/api/v1/auth/token", post(auth::token))
        // Routes registered so far take no query parameters (refused, not ignored); the
        // others refuse unknown ones through their typed query structs.
        .route_layer(middleware::from_fn(params::no_params))
        .route("/api/v1/ticks/{symbol}", get(market::ticks))
        .route("/api/v1/bars/{symbol}", get(market::bars))
        .route("/api/v1/indicators/{symbol}", get(indicators::indicators))
        .route("/api/v1/book/{symbol}", get(book::book))
        .route(
            "/api/v1/predictions/{symbol}",
            get(predictions::predictions),
        )
        .layer(DefaultBodyLimit::max(app.max_body_bytes))
        .layer(middleware::from_fn_with_state(app.guard.clone(), latency));
    // The dashboard keeps ignoring a browser's query string.
    let dashboard = Router::new()
        .route("/", get(web::index))
        .route("/assets/{*path}", get(web::asset))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let limited = Router::new()
        .route("/api/v1/ingest", post(ingest::ingest))
        .route("/api/v1/ingest/book", post(ingest::ingest_book))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/admin/drain", post(admin::drain))
        .route("/openapi.json", get(openapi::serve))
        .route_layer(middleware::from_fn(params::no_params))
        .merge(dashboard)
        .merge(rest)
        .fallback(|| async { Problem::new(ProblemCode::NotFound, "no such route") })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            app.guard.clone(),
            rate_limit,
        ));
    Router::new()
        // Upgrades have their own per-address rate and connection cap (`ws::upgrade`).
        .route("/ws", get(crate::ws::upgrade))
        .method_not_allowed_fallback(method_not_allowed)
        .merge(limited)
        .layer(middleware::from_fn_with_state(app.guard.clone(), identify))
        .with_state(app)
}

/// A route asked with a method it does not have: a problem body (axum adds the `Allow` header).
async fn method_not_allowed(method: axum::http::Method) -> Problem {
    Problem::new(
        ProblemCode::MethodNotAllowed,
        format!("{method} is not allowed here; the Allow header lists what is"),
    )
}

/// Attributes the request to a [`ClientAddr`] (an extension the later layers and `/ws` read).
async fn identify(State(guard): State<Arc<RestGuard>>, mut req: Request, next: Next) -> Response {
    let addr = ClientAddr::resolve(peer_ip(&req), req.headers(), &guard.trusted);
    req.extensions_mut().insert(addr);
    next.run(req).await
}

/// Records every REST request's latency and status class.
async fn latency(State(guard): State<Arc<RestGuard>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let res = next.run(req).await;
    guard
        .metrics
        .http_request_seconds
        .observe(started.elapsed());
    guard.metrics.http_responses.count(res.status().as_u16());
    res
}

/// Token bucket per verified credential, or per client address for everything else: over it,
/// 429 with `Retry-After`.
async fn rate_limit(State(guard): State<Arc<RestGuard>>, req: Request, next: Next) -> Response {
    let verified = ingest::bearer(req.headers())
        .map(key_digest)
        .filter(|d| guard.verified.contains(d));
    let key = match verified {
        Some(digest) => RateKey::Key(digest),
        None => RateKey::Addr(ClientAddr::of_request(&req)),
    };
    if let Err(not_until) = guard.limiter.check(&key) {
        let secs = retry_after_secs(&not_until);
        guard
            .metrics
            .http_rate_limited
            .fetch_add(1, Ordering::Relaxed);
        return Problem::new(ProblemCode::RateLimited, "too many requests; slow down")
            .retry_after(secs)
            .into_response();
    }
    next.run(req).await
}
