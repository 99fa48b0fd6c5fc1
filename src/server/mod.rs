//! Wiring: builds every stage from a [`Config`], binds the listener, runs until told to stop,
//! and shuts down in data-flow order (feeds, pipeline, ingest, write-behind flush, sockets,
//! HTTP) under one deadline.
//!
//! Nothing imports this module but the binary and the tests: each stage gets the parts it uses
//! (an [`AppState`] of substates for HTTP, handles for the threads), never the whole server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::health::HealthState;
use crate::api::ingest::IngestState;
use crate::api::market::MarketState;
use crate::api::portfolio::PortfolioState;
use crate::api::predictions::{self, PredictionState};
use crate::api::serve::HttpLimits;
use crate::api::{AppState, RestGuard};
use crate::client::{TrustedProxies, VerifiedKeys};
use crate::cluster::{self, ClusterError, ClusterStatus, Nats, Role};
use crate::config::Config;
use crate::config_section::ms;
use crate::ingest::{Ingest, IngestHandle};
use crate::model::{Symbols, now_ns};
use crate::pipeline::{LatestIndicators, Pipeline};
use crate::portfolio::LivePortfolios;
use crate::rooms::{EventSink, Fanout, Hub, HubConfig};
use crate::store::{Recorder, Store, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::ws::WsContext;
use feeds::{FeedStart, Takeover, build_feeds, lead_feeds};
use role::Node;

mod feeds;
mod role;
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
        let portfolios = Arc::new(LivePortfolios::new(
            hub.clone(),
            store.clone(),
            symbols.clone(),
            config.portfolio,
            config.cluster.role != Role::All,
        ));
        // A database that is down at start-up delays persistence, not streaming: the writer
        // migrates before its first batch and retries until the database answers.
        // The migration runs as its own task and is not cancelled at the timeout: a migration
        // dropped half way can leave its connection holding the migration lock, and then every
        // later attempt (the writer's) waits on it.
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
        // The cluster role decides where events come from and go to (see `cluster`).
        let role = config.cluster.role;
        let status = Arc::new(ClusterStatus::new(role));
        let node = match role {
            Role::All => Node::Single,
            Role::Ingest => Node::Ingest(Arc::new(
                Nats::connect(&config.cluster, status.clone()).await?,
            )),
            Role::Edge => Node::Edge(Arc::new(
                Nats::connect(&config.cluster, status.clone()).await?,
            )),
        };
        // Names the sequence: the WebSocket `ack` reports it, and stored ticks carry it so that
        // (symbol, epoch, seq) identifies a tick although `seq` restarts with every run. A
        // single node's run is its own sequence; a cluster's is its stream's.
        let epoch = node.nats().map_or(now_ns() / 1_000, |n| n.epoch);
        let recorder = Recorder::start(
            store.clone(),
            &config.database,
            symbols.clone(),
            epoch,
            metrics.clone(),
        )
        .map_err(StoreError::from)?;
        // Ingest publishes to the stream as well; its task drains what ingest queues, while the
        // lease (its clock, shared with the lease task) is surely this node's.
        let lease_clock = cluster::LeaseClock::new();
        let publisher = match &node {
            Node::Ingest(n) => {
                let p = cluster::StreamPublisher::new(
                    n.prefix.clone(),
                    epoch,
                    config.cluster.publish_buffer_bytes,
                    symbols.clone(),
                    metrics.clone(),
                    lease_clock.clone(),
                );
                let stop = CancellationToken::new();
                let task = tokio::spawn(p.clone().run(n.js.clone(), stop.clone()));
                Some((p, stop, task))
            }
            Node::Single | Node::Edge(_) => None,
        };
        // An edge's hub is fed by the stream; nothing is sequenced or recorded here.
        let sink: Arc<dyn EventSink> = match (&node, &publisher) {
            (Node::Edge(_), _) => hub.clone(),
            (_, Some((p, ..))) => Arc::new(Fanout(vec![hub.clone(), recorder.clone(), p.clone()])),
            (_, None) => Arc::new(Fanout(vec![hub.clone(), recorder.clone()])),
        };
        let stream_publisher = publisher.as_ref().map(|(p, ..)| p.clone());
        let publisher = publisher.map(|(_, stop, task)| (stop, task));
        let (ingest, ingest_handle) = Ingest::new(
            symbols.clone(),
            sink,
            metrics.clone(),
            config.pipeline.periods(),
            config.book,
        );

        // An edge runs no feeds: its events come from the stream.
        let feeds = if node.is_edge() {
            Vec::new()
        } else {
            build_feeds(&config, &symbols)?
        };

        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;

        let ingest_thread = ingest.spawn().map_err(|source| ServerError::Spawn {
            what: "ingest thread",
            source,
        })?;

        let indicators = Arc::new(LatestIndicators::default());
        let app_indicators = indicators.clone();
        let pipeline = if config.pipeline.enabled && !node.is_edge() {
            let p = Pipeline::start(
                config.pipeline.clone(),
                hub.clone(),
                ingest_handle.clone(),
                indicators.clone(),
                metrics.clone(),
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
        // Ends with the sockets (same token); nothing to flush.
        let portfolio_task = tokio::spawn(portfolios.clone().run(stop.clone()));
        let sessions = TaskTracker::new();
        let verified = Arc::new(VerifiedKeys::default());
        // Validated with the rest of the config before start.
        let trusted = TrustedProxies::parse(&config.server.trusted_proxies).unwrap_or_default();
        let api_config = Arc::new(config.api.clone());
        let app = AppState {
            market: MarketState {
                symbols: symbols.clone(),
                hub: hub.clone(),
                store: store.clone(),
                indicators,
                api: api_config.clone(),
                periods: config.pipeline.periods(),
                book_depth: config.book.depth,
            },
            portfolio: PortfolioState {
                store: store.clone(),
                symbols: symbols.clone(),
                hub: hub.clone(),
                max_body_bytes: config.api.max_body_bytes,
                verified: verified.clone(),
                live: portfolios.clone(),
                max_future_skew_ms: config.feeds.max_future_skew_ms,
            },
            predictions: PredictionState {
                symbols: symbols.clone(),
                hub: hub.clone(),
                api: api_config,
                cache: Arc::new(predictions::Cache::default()),
            },
            ingest: IngestState {
                config: Arc::new(config.feeds.http.clone()),
                ingest: ingest_handle.live(config.feeds.max_future_skew_ms),
                verified: verified.clone(),
                cluster: status.clone(),
                book_source: "http".into(),
                recorder: recorder.clone(),
            },
            health: HealthState {
                store: store.clone(),
                recorder: recorder.clone(),
                ingest: ingest_handle.clone(),
                metrics: metrics.clone(),
                shutdown: stop.clone(),
                cluster: status.clone(),
            },
            ws: Arc::new(WsContext {
                config: config.ws.clone(),
                ring_capacity: config.ring.capacity,
                hub: hub.clone(),
                symbols: symbols.clone(),
                metrics: metrics.clone(),
                epoch,
                sessions: sessions.clone(),
                shutdown: stop.clone(),
                conn_limit: Arc::new(Semaphore::new(config.ws.max_connections)),
                per_address: Default::default(),
                upgrades: WsContext::upgrade_limiter(&config.ws),
                history: match &node {
                    Node::Edge(n) => Some(Arc::new(cluster::StreamHistory {
                        nats: n.clone(),
                        symbols: symbols.clone(),
                        max_events: config.cluster.resume_max_events,
                        max_reads: config.cluster.resume_max_reads,
                        fields: crate::protocol::IndicatorFields::new(&config.pipeline.periods()),
                    })),
                    Node::Single | Node::Ingest(_) => None,
                },
                stored_ticks: Some(stored_ticks::StoreTicks::shared(&store, &symbols, epoch)),
                auth: verifier,
                anonymous: config.auth.anonymous,
                auth_timeout_s: config.auth.auth_timeout_s,
                users: Default::default(),
                book_depth: config.book.depth,
                portfolios,
            }),
            guard: Arc::new(RestGuard::new(
                &config.api,
                trusted,
                verified,
                metrics.clone(),
            )),
            max_body_bytes: config.api.max_body_bytes,
        };

        // Edges read the shared database; ingest deletes old rows.
        let retention = (!node.is_edge()).then(|| {
            tokio::spawn(crate::store::retention::run(
                store.clone(),
                config.database.clone(),
                stop.clone(),
            ))
        });

        let feeds_stop = CancellationToken::new();
        let cluster_stop = CancellationToken::new();
        // Cancelled when this node must stop by itself: an ingest node that lost its lease.
        let mut fatal = CancellationToken::new();
        let start = FeedStart {
            ingest: ingest_handle.clone(),
            max_future_skew_ms: config.feeds.max_future_skew_ms,
            stop: feeds_stop.clone(),
            metrics: metrics.clone(),
            backlog: hub.backlog().clone(),
            store: recorder.store_backlog().clone(),
            live_waits_for_store: recorder.on_overload() == crate::store::OnOverload::Block,
        };
        let feeds = match &node {
            Node::Single => start.spawn(feeds),
            Node::Edge(_) => Vec::new(),
            Node::Ingest(n) => {
                // Unique to this process (containers share addresses and pids): the lease
                // takes an entry holding it for this node's own.
                let nonce = getrandom::u64().unwrap_or_else(|_| now_ns() as u64);
                let node = format!("{}:{}:{nonce:016x}", addr, std::process::id());
                let leadership = cluster::run_lease(
                    &n.js,
                    &config.cluster,
                    node.clone(),
                    lease_clock.clone(),
                    status.clone(),
                    metrics.clone(),
                    cluster_stop.clone(),
                )
                .await?;
                fatal = leadership.lost.clone();
                vec![(
                    "feeds (ingest leader)",
                    tokio::spawn(lead_feeds(
                        leadership,
                        Takeover {
                            nats: n.clone(),
                            node,
                            publisher: stream_publisher.clone(),
                            status: status.clone(),
                        },
                        symbols.clone(),
                        start,
                        feeds,
                        config.book.checkpoint_ms,
                    )),
                )]
            }
        };
        if let Node::Edge(n) = &node {
            tokio::spawn(cluster::run_edge(
                n.clone(),
                cluster::EdgeIntake {
                    hub: hub.clone(),
                    symbols: symbols.clone(),
                    indicators: app_indicators.clone(),
                    fields: crate::protocol::IndicatorFields::new(&config.pipeline.periods()),
                    status: status.clone(),
                    metrics: metrics.clone(),
                    warm: ms(config.cluster.warm_ms),
                    book_depth: config.book.depth,
                    books: Default::default(),
                },
                cluster_stop.clone(),
            ));
        }

        let http = tokio::spawn(crate::api::serve::serve(
            listener,
            crate::api::router(app.clone()),
            HttpLimits {
                max_connections: config.server.max_http_connections,
                max_connections_per_ip: config.server.max_http_connections_per_ip,
                trusted: TrustedProxies::parse(&config.server.trusted_proxies).unwrap_or_default(),
                header_read_timeout: ms(config.server.header_read_timeout_ms),
                request_body_timeout: ms(config.server.request_body_timeout_ms),
                response_write_timeout: ms(config.server.response_write_timeout_ms),
                socket_send_buffer: config.ws.socket_send_buffer_bytes,
            },
            metrics.clone(),
            stop.clone(),
        ));
        tracing::info!(%addr, "tickcast listening");
        Ok(Server {
            addr,
            app,
            symbols,
            hub,
            metrics,
            store,
            recorder,
            ingest: ingest_handle,
            shutdown_grace: ms(config.server.shutdown_grace_ms),
            feeds_stop,
            feeds,
            ingest_thread: Some(ingest_thread),
            pipeline,
            stop,
            sessions,
            retention,
            portfolio_task,
            http,
            publisher,
            cluster_stop,
            fatal,
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

    /// Graceful stop: feeds end, the pipeline finishes its batch, ingest publishes what it
    /// holds, the write-behind queue is flushed to the database, every socket gets what was
    /// queued for it and a 1001 close, then HTTP stops. The whole sequence shares one deadline,
    /// `server.shutdown_grace_ms` from now; a stage still running at the deadline is stopped by
    /// force (or, for a thread, left behind) and logged.
    pub async fn shutdown(mut self) {
        let started = Instant::now();
        let deadline = started + self.shutdown_grace;

        self.feeds_stop.cancel();
        for (name, mut feed) in self.feeds.drain(..) {
            if !finish_by(deadline, name, &mut feed).await {
                feed.abort();
            }
        }
        if let Some(p) = self.pipeline.take() {
            let mut stopping = tokio::task::spawn_blocking(move || p.stop());
            // A blocking thread cannot be aborted: past the deadline it is left to end with the
            // process.
            finish_by(deadline, "pipeline", &mut stopping).await;
        }
        // Everything queued before `Stop` is published; past the deadline, not even the stop
        // message is waited for.
        if tokio::time::timeout_at(deadline, self.ingest.stop())
            .await
            .is_err()
        {
            tracing::warn!(
                stage = "ingest",
                "shutdown deadline passed; ingest queue not drained"
            );
        }
        if let Some(thread) = self.ingest_thread.take() {
            let mut joined = tokio::task::spawn_blocking(move || thread.join());
            finish_by(deadline, "ingest", &mut joined).await;
        }
        // Every ingested tick is in the recorder's queue now; nothing more can arrive. The
        // recorder counts and logs whatever it could not write in time.
        self.recorder
            .flush_and_stop(deadline.saturating_duration_since(Instant::now()))
            .await;
        // The stream gets what ingest published before the lease is handed over, so a
        // successor continues after it.
        if let Some((stop, mut task)) = self.publisher.take() {
            stop.cancel();
            if !finish_by(deadline, "stream publisher", &mut task).await {
                task.abort();
            }
        }
        self.cluster_stop.cancel();

        self.stop.cancel();
        self.sessions.close();
        if tokio::time::timeout_at(deadline, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                stage = "sessions",
                open = self.sessions.len(),
                "shutdown deadline passed; dropping sockets"
            );
        }
        if !finish_by(deadline, "http", &mut self.http).await {
            self.http.abort();
        }
        if !finish_by(deadline, "portfolio", &mut self.portfolio_task).await {
            self.portfolio_task.abort();
        }
        // The retention task watches the same token, so it ends at its next await point.
        if let Some(mut retention) = self.retention.take()
            && !finish_by(deadline, "retention", &mut retention).await
        {
            retention.abort();
        }
        self.store.close().await;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "tickcast stopped"
        );
    }

    /// Runs until `signal` completes, then shuts down gracefully. Ends early, with
    /// [`ServerError::LeaseLost`], when this ingest node lost its lease: it must not publish
    /// beside the new leader (a supervisor restarts it as a standby).
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        let fatal = self.fatal.clone();
        let lost = tokio::select! {
            _ = signal => false,
            _ = fatal.cancelled() => true,
        };
        if lost {
            // Feeds first, at once: nothing more may be sequenced.
            self.feeds_stop.cancel();
        }
        self.shutdown().await;
        if lost {
            Err(ServerError::LeaseLost)
        } else {
            Ok(())
        }
    }
}

/// The hub's sizing, from the `[ring]` and `[portfolio]` sections.
pub(crate) fn hub_config(config: &Config) -> HubConfig {
    HubConfig {
        ring_capacity: config.ring.capacity,
        snapshot_depth: config.ring.snapshot_depth,
        portfolio_ring_capacity: config.portfolio.ring_capacity,
    }
}

/// Waits for `task` until `deadline`; false (and a warning naming `stage`) when it is still
/// running then.
async fn finish_by<T>(deadline: Instant, stage: &'static str, task: &mut JoinHandle<T>) -> bool {
    match tokio::time::timeout_at(deadline, task).await {
        Ok(_) => true,
        Err(_) => {
            tracing::warn!(stage, "shutdown deadline passed; stopping by force");
            false
        }
    }
}
