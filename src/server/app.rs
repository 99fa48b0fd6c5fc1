//! The HTTP surface's state: the [`AppState`] every REST handler and the WebSocket endpoint
//! draw their part from, and the front door's limits.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Core;
use crate::api::admin::AdminState;
use crate::api::health::HealthState;
use crate::api::ingest::IngestState;
use crate::api::market::MarketState;
use crate::api::portfolio::PortfolioState;
use crate::api::predictions::{self, PredictionState};
use crate::api::serve::HttpLimits;
use crate::api::{AppState, RestGuard};
use crate::client::{TrustedProxies, VerifiedKeys};
use crate::config::Config;
use crate::config_section::ms;
use crate::drain::Drain;
use crate::ingest::IngestHandle;
use crate::pipeline::LatestIndicators;
use crate::portfolio::LivePortfolios;
use crate::ws::{Channels, Gate, History, WsAuth, WsContext};

/// What the app state is built from besides the stages every role shares.
pub(super) struct AppParts {
    pub(super) verifier: Option<Arc<crate::auth::Verifier>>,
    pub(super) portfolios: Arc<LivePortfolios>,
    pub(super) indicators: Arc<LatestIndicators>,
    pub(super) ingest: IngestHandle,
    pub(super) epoch: i64,
    pub(super) history: Option<Arc<dyn History>>,
    /// Cancelled when sockets must close and HTTP must stop.
    pub(super) stop: CancellationToken,
    /// Every WebSocket session, so shutdown can wait for them.
    pub(super) sessions: TaskTracker,
    /// The node's drain (SIGTERM, `POST /admin/drain`).
    pub(super) drain: Arc<Drain>,
}

/// The state of every HTTP handler and of the WebSocket endpoint.
pub(super) fn app_state(config: &Config, core: &Core, parts: AppParts) -> AppState {
    let verified = Arc::new(VerifiedKeys::default());
    // Validated with the rest of the config before start.
    let trusted = TrustedProxies::parse(&config.server.trusted_proxies).unwrap_or_default();
    let api_config = Arc::new(config.api.clone());
    AppState {
        market: MarketState {
            symbols: core.symbols.clone(),
            hub: core.hub.clone(),
            store: core.store.clone(),
            indicators: parts.indicators,
            api: api_config.clone(),
            periods: config.pipeline.periods(),
            book_depth: config.book.depth,
        },
        portfolio: PortfolioState {
            store: core.store.clone(),
            symbols: core.symbols.clone(),
            hub: core.hub.clone(),
            max_body_bytes: config.api.max_body_bytes,
            verified: verified.clone(),
            live: parts.portfolios.clone(),
            max_future_skew_ms: config.feeds.max_future_skew_ms,
        },
        predictions: PredictionState {
            symbols: core.symbols.clone(),
            hub: core.hub.clone(),
            api: api_config,
            cache: Arc::new(predictions::Cache::default()),
        },
        ingest: IngestState {
            config: Arc::new(config.feeds.http.clone()),
            ingest: parts.ingest.live(config.feeds.max_future_skew_ms),
            verified: verified.clone(),
            cluster: core.status.clone(),
            book_source: "http".into(),
            recorder: core.recorder.clone(),
        },
        health: HealthState {
            store: core.store.clone(),
            recorder: core.recorder.clone(),
            ingest: parts.ingest,
            metrics: core.metrics.clone(),
            shutdown: parts.stop.clone(),
            cluster: core.status.clone(),
            drain: parts.drain.clone(),
            memory_budget_bytes: config.server.memory_budget_bytes,
        },
        admin: AdminState {
            token: config.server.admin_token.as_str().into(),
            drain: parts.drain.clone(),
        },
        ws: Arc::new(WsContext {
            config: config.ws.clone(),
            metrics: core.metrics.clone(),
            shutdown: parts.stop,
            drain: parts.drain,
            gate: Gate::new(&config.ws, parts.sessions),
            auth: WsAuth {
                verifier: parts.verifier,
                anonymous: config.auth.anonymous,
                auth_timeout_s: config.auth.auth_timeout_s,
                users: Default::default(),
            },
            channels: Channels {
                hub: core.hub.clone(),
                symbols: core.symbols.clone(),
                epoch: parts.epoch,
                ring_capacity: config.ring.capacity,
                book_depth: config.book.depth,
                bar_intervals: config.pipeline.intervals(),
                history: parts.history,
                stored_ticks: Some(super::stored_ticks::StoreTicks::shared(
                    &core.store,
                    &core.symbols,
                    parts.epoch,
                )),
                portfolios: parts.portfolios,
            },
        }),
        guard: Arc::new(RestGuard::new(
            &config.api,
            trusted,
            verified,
            core.metrics.clone(),
        )),
        max_body_bytes: config.api.max_body_bytes,
    }
}

/// The HTTP front door's limits (`[server]`, and `ws.socket_send_buffer_bytes`).
pub(super) fn http_limits(config: &Config) -> HttpLimits {
    HttpLimits {
        max_connections: config.server.max_http_connections,
        max_connections_per_ip: config.server.max_http_connections_per_ip,
        trusted: TrustedProxies::parse(&config.server.trusted_proxies).unwrap_or_default(),
        header_read_timeout: ms(config.server.header_read_timeout_ms),
        request_body_timeout: ms(config.server.request_body_timeout_ms),
        response_write_timeout: ms(config.server.response_write_timeout_ms),
        socket_send_buffer: config.ws.socket_send_buffer_bytes,
    }
}
