//! Wiring: builds every stage from a [`Config`], binds the listener, runs until told to stop,
//! and shuts down in data-flow order (feeds, pipeline, ingest, write-behind flush, sockets,
//! HTTP) under one deadline.
//!
//! Nothing imports this module but the binary and the tests: each stage gets the parts it uses
//! (an [`AppState`] of substates for HTTP, handles for the threads), never the whole server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::AppState;
use crate::cluster::{ClusterError, ClusterStatus};
use crate::config::Config;
use crate::config_section::ms;
use crate::drain::Drain;
use crate::ingest::{Ingest, IngestHandle};
use crate::model::Symbols;
use crate::pipeline::{LatestIndicators, Pipeline};
use crate::portfolio::LivePortfolios;
use crate::rooms::{Hub, HubConfig};
use crate::store::{Recorder, Store, StoreError};
use crate::telemetry::metrics::Metrics;
use app::{AppParts, app_state, http_limits};
use feeds::FeedStart;
use role::Node;

mod app;
mod feeds;
mod role;
mod stop;
mod stored_ticks;

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("this node lost the ingest lease to another node and stopped")]
    LeaseLost,
    #[error("feed {feed}: {source}")]
    Feed {
        feed: &'static str,
        source: crate::feed::FeedError,
    },
    #[error("{0}")]
    Config(#[from] crate::config_section::ConfigError),
}

/// A started server: the HTTP state, and a handle on every task and thread it started, so
/// shutdown can stop and join each of them.
pub struct Server {
    pub addr: SocketAddr,
    app: AppState,
    symbols: Arc<Symbols>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    recorder: Arc<Recorder>,
    ingest: IngestHandle,
    shutdown_grace: Duration,
    feeds_stop: CancellationToken,
    feeds: Vec<(&'static str, JoinHandle<()>)>,
    ingest_thread: Option<std::thread::JoinHandle<()>>,
    pipeline: Option<Pipeline>,
    /// Cancelled when sockets must close (1001), HTTP must stop and retention must end.
    stop: CancellationToken,
    sessions: TaskTracker,
    retention: Option<JoinHandle<()>>,
    /// Publishes users' `portfolio` channels; watches `stop`.
    portfolio_task: JoinHandle<()>,
    http: JoinHandle<()>,
    /// Ingest nodes: the stream publisher, stopped after ingest drained into it.
    publisher: Option<(CancellationToken, JoinHandle<()>)>,
    /// Cluster nodes: the lease task and the edge's stream intake (`cluster_stop`).
    cluster_stop: CancellationToken,
    /// Cancelled when this node must stop by itself (it lost the ingest lease).
    fatal: CancellationToken,
    /// SIGTERM drains the sockets before the shutdown (as `POST /admin/drain` does).
    drain: Arc<Drain>,
}

/// The stages every role shares, built before the role's own parts and handed to them.
struct Core {
    metrics: Arc<Metrics>,
    symbols: Arc<Symbols>,
    hub: Arc<Hub>,
    store: Arc<Store>,
    recorder: Arc<Recorder>,
    status: Arc<ClusterStatus>,
}

impl Server {
    /// Builds every stage and starts listening on `config.server.listen` (port 0 picks one).
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        // The key is read first: a server that cannot verify tokens must not start.
        let verifier = crate::auth::Verifier::from_config(&config.auth)?;
        let metrics = Arc::new(Metrics::default());
        let symbols = Arc::new(Symbols::new(config.ring.max_symbols));
        let hub = Arc::new(Hub::new(hub_config(&config), metrics.clone()));
        let store = Arc::new(Store::open(&config.database)?);
        migrate_at_start(&store, &config).await;
        // The cluster role decides where events come from and go to (see `role`).
        let status = Arc::new(ClusterStatus::new(config.cluster.role));
        let node = Node::connect(&config, &status).await?;
        let epoch = node.epoch();
        let recorder = Recorder::start(
            store.clone(),
            &config.database,
            symbols.clone(),
            epoch,
            crate::protocol::IndicatorFields::new(&config.pipeline.periods()),
            metrics.clone(),
        )
        .map_err(StoreError::from)?;
        let core = Core {
            metrics,
            symbols,
            hub,
            store,
            recorder,
            status,
        };
        let portfolios = Arc::new(LivePortfolios::new(
            core.hub.clone(),
            core.store.clone(),
            core.symbols.clone(),
            config.portfolio,
            config.cluster.role != crate::cluster::Role::All,
        ));

        let cluster = node.cluster_parts(&config, &core, epoch);
        let (ingest, ingest_handle) = Ingest::new(
            core.symbols.clone(),
            node.event_sink(&core, &cluster),
            core.metrics.clone(),
            config.pipeline.periods(),
            config
                .book
                .for_node(config.cluster.role == crate::cluster::Role::All),
        );
        let feeds = node.build_feeds(&config, &core)?;
        let (listener, addr) = bind(config.server.listen).await?;
        let ingest_thread = ingest.spawn().map_err(|source| ServerError::Spawn {
            what: "ingest thread",
            source,
        })?;
        let indicators = Arc::new(LatestIndicators::default());
        let pipeline = if node.runs_pipeline(&config) {
            let p = Pipeline::start(
                config.pipeline.clone(),
                core.hub.clone(),
                ingest_handle.clone(),
                indicators.clone(),
                core.metrics.clone(),
                crate::api::predictions::settings(&config.api),
            )
            .map_err(|source| ServerError::Spawn {
                what: "pipeline",
                source,
            })?;
            Some(p)
        } else {
            None
        };

        let stop = CancellationToken::new();
        let drain = Arc::new(Drain::new(ms(config.server.drain_grace_ms)));
        // Ends with the sockets (same token); nothing to flush.
        let portfolio_task = tokio::spawn(portfolios.clone().run(stop.clone()));
        let sessions = TaskTracker::new();
        let app = app_state(
            &config,
            &core,
            AppParts {
                verifier,
                portfolios,
                indicators: indicators.clone(),
                ingest: ingest_handle.clone(),
                epoch,
                history: node.history(&config, &core),
                stop: stop.clone(),
                sessions: sessions.clone(),
                drain: drain.clone(),
            },
        );
        let retention = node.start_retention(&config, &core, &stop);

        let feeds_stop = CancellationToken::new();
        let start = FeedStart {
            ingest: ingest_handle.clone(),
            max_future_skew_ms: config.feeds.max_future_skew_ms,
            stop: feeds_stop.clone(),
            metrics: core.metrics.clone(),
            backlog: core.hub.backlog().clone(),
            store: core.recorder.store_backlog().clone(),
            live_waits_for_store: core.recorder.on_overload() == crate::store::OnOverload::Block,
        };
        let feeds = node
            .start_feeds(&config, &core, start, feeds, addr, &cluster)
            .await?;
        node.start_edge_intake(&config, &core, &indicators, &cluster);

        let http = tokio::spawn(crate::api::serve::serve(
            listener,
            crate::api::router(app.clone()),
            http_limits(&config),
            core.metrics.clone(),
            stop.clone(),
        ));
        tracing::info!(%addr, "tickcast listening");
        Ok(Server {
            addr,
            app,
            symbols: core.symbols,
            hub: core.hub,
            metrics: core.metrics,
            store: core.store,
            recorder: core.recorder,
            ingest: ingest_handle,
            shutdown_grace: ms(config.server.shutdown_grace_ms),
            feeds_stop,
            feeds: feeds.tasks,
            ingest_thread: Some(ingest_thread),
            pipeline,
            stop,
            sessions,
            retention,
            portfolio_task,
            http,
            publisher: cluster.publishing.map(|p| (p.stop, p.task)),
            cluster_stop: cluster.stop,
            fatal: feeds.fatal,
            drain,
        })
    }

    /// The HTTP router over this server's state (tests drive it without a socket).
    pub fn router(&self) -> Router {
        crate::api::router(self.app.clone())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn symbols(&self) -> &Arc<Symbols> {
        &self.symbols
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The state every HTTP handler draws its part from.
    pub fn app(&self) -> &AppState {
        &self.app
    }

    /// Closes every socket and stops HTTP at once, without the orderly drain of
    /// [`Server::shutdown`] (a server dropped by a test).
    pub fn abort(&self) {
        self.feeds_stop.cancel();
        self.stop.cancel();
    }
}

/// Migrates the database before anything is written. A database that is down at start-up
/// delays persistence, not streaming: the writer migrates before its first batch and retries
/// until the database answers. The migration runs as its own task and is not cancelled at the
/// timeout: a migration dropped half way can leave its connection holding the migration lock,
/// and then every later attempt (the writer's) waits on it.
async fn migrate_at_start(store: &Arc<Store>, config: &Config) {
    let migration = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    match tokio::time::timeout(ms(config.database.timeout_ms), migration).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Err(error)) => tracing::warn!(%error, "database migration task failed"),
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "database not ready at start-up; persistence will retry")
        }
        Err(_) => tracing::warn!("database did not answer at start-up; persistence will retry"),
    }
}

/// Binds `addr` (port 0 picks one) and returns the listener with the address it got.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((listener, local))
}

/// The hub's sizing, from the `[ring]` and `[portfolio]` sections.
pub(crate) fn hub_config(config: &Config) -> HubConfig {
    HubConfig {
        ring_capacity: config.ring.capacity,
        long_bar_ring_capacity: config.ring.long_bar_capacity.min(config.ring.capacity),
        snapshot_depth: config.ring.snapshot_depth,
        portfolio_ring_capacity: config.portfolio.ring_capacity,
    }
}
