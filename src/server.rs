//! Wiring: builds every stage from a [`Config`], binds the listener, runs until told to stop,
//! and shuts down in data-flow order (feeds, ingest, sockets, HTTP).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ms};
use crate::feed::{Feed, FeedContext, ReplayFeed, SyntheticFeed, UpstreamFeed};
use crate::ingest::{Ingest, IngestHandle};
use crate::model::Symbols;
use crate::pipeline::{LatestIndicators, Pipeline};
use crate::rooms::{Hub, HubConfig};
use crate::telemetry::metrics::Metrics;

/// State shared by every request handler and session.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub symbols: Arc<Symbols>,
    pub hub: Arc<Hub>,
    pub ingest: IngestHandle,
    pub metrics: Arc<Metrics>,
    /// Latest indicator values per symbol, written once per pipeline batch.
    pub indicators: Arc<LatestIndicators>,
    /// Every WebSocket session, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Cancelled when sockets must close (1001) and HTTP must stop.
    pub shutdown: CancellationToken,
    /// Caps concurrent WebSocket connections.
    pub conn_limit: Arc<Semaphore>,
    /// This server run's identity (start time in µs: exact in a JavaScript number): `seq`s
    /// restart with every run, so a resume point is only meaningful with the epoch it was seen
    /// under.
    pub epoch: i64,
}

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
    #[error("feed {feed}: {source}")]
    Feed {
        feed: &'static str,
        source: crate::feed::FeedError,
    },
}

/// A started server.
pub struct Server {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    feeds_stop: CancellationToken,
    feeds: Vec<JoinHandle<()>>,
    ingest_thread: Option<std::thread::JoinHandle<()>>,
    pipeline: Option<Pipeline>,
    http: JoinHandle<()>,
}

impl Server {
    /// Builds every stage and starts listening on `config.server.listen` (port 0 picks one).
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        let metrics = Arc::new(Metrics::default());
        let symbols = Arc::new(Symbols::new(config.ring.max_symbols));
        let hub = Arc::new(Hub::new(
            HubConfig {
                ring_capacity: config.ring.capacity,
                snapshot_depth: config.ring.snapshot_depth,
            },
            metrics.clone(),
        ));
        let (ingest, ingest_handle) = Ingest::new(
            symbols.clone(),
            hub.clone(),
            metrics.clone(),
            config.pipeline.periods(),
        );

        let mut feeds: Vec<Box<dyn Feed>> = Vec::new();
        if config.feeds.synthetic.enabled {
            // Known up front, so clients can subscribe before the first tick of each symbol.
            for name in crate::feed::synthetic::symbol_names(&config.feeds.synthetic) {
                let _ = symbols.intern(&name);
            }
            feeds.push(Box::new(SyntheticFeed::new(&config.feeds.synthetic)));
        }
        if config.feeds.replay.enabled {
            let feed =
                ReplayFeed::new(&config.feeds.replay).map_err(|source| ServerError::Feed {
                    feed: "replay",
                    source,
                })?;
            feeds.push(Box::new(feed));
        }
        if config.feeds.upstream.enabled {
            let feed =
                UpstreamFeed::new(&config.feeds.upstream).map_err(|source| ServerError::Feed {
                    feed: "upstream",
                    source,
                })?;
            feeds.push(Box::new(feed));
        }

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
        let pipeline = if config.pipeline.enabled {
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

        let shared = Arc::new(Shared {
            conn_limit: Arc::new(Semaphore::new(config.ws.max_connections)),
            config,
            symbols,
            hub,
            ingest: ingest_handle.clone(),
            metrics: metrics.clone(),
            indicators,
            sessions: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            epoch: crate::model::now_ns() / 1_000,
        });

        let feeds_stop = CancellationToken::new();
        let feeds = feeds
            .into_iter()
            .map(|feed| {
                let name = feed.name();
                let ctx = FeedContext {
                    ingest: ingest_handle.clone(),
                    shutdown: feeds_stop.clone(),
                    metrics: metrics.clone(),
                };
                tokio::spawn(async move {
                    match feed.run(ctx).await {
                        Ok(()) => tracing::info!(feed = name, "feed finished"),
                        Err(error) => tracing::error!(feed = name, %error, "feed stopped"),
                    }
                })
            })
            .collect();

        let router = crate::api::router(shared.clone());
        let stop_http = shared.shutdown.clone();
        let send_buffer = shared.config.ws.socket_send_buffer_bytes;
        let listener = listener.tap_io(move |tcp| {
            // Small frames must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
            // A bounded kernel send buffer bounds what a stalled peer can pin in kernel memory,
            // and makes a stall visible to the writer (and so to the 1013 logic) sooner.
            if send_buffer > 0 {
                let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer);
            }
        });
        let http = tokio::spawn(async move {
            let serve =
                axum::serve(listener, router).with_graceful_shutdown(stop_http.cancelled_owned());
            if let Err(error) = serve.await {
                tracing::error!(%error, "http server failed");
            }
        });
        tracing::info!(%addr, "tickcast listening");
        Ok(Server {
            addr,
            shared,
            feeds_stop,
            feeds,
            ingest_thread: Some(ingest_thread),
            pipeline,
            http,
        })
    }

    /// Graceful stop: feeds end, the pipeline finishes its batch, ingest publishes what it holds, every socket gets what was
    /// queued for it and a 1001 close, then HTTP stops. Bounded by `server.shutdown_grace_ms`.
    pub async fn shutdown(mut self) {
        let grace = ms(self.shared.config.server.shutdown_grace_ms);
        let started = std::time::Instant::now();
        self.feeds_stop.cancel();
        for feed in self.feeds.drain(..) {
            let _ = tokio::time::timeout(grace, feed).await;
        }
        if let Some(p) = self.pipeline.take() {
            let _ =
                tokio::time::timeout(grace, tokio::task::spawn_blocking(move || p.stop())).await;
        }
        self.shared.ingest.stop().await;
        if let Some(thread) = self.ingest_thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            let _ = tokio::time::timeout(grace, joined).await;
        }
        self.shared.shutdown.cancel();
        self.shared.sessions.close();
        let left = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        if tokio::time::timeout(left, self.shared.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.shared.sessions.len(),
                "shutdown grace elapsed; dropping sockets"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.http).await;
        self.http.abort();
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "tickcast stopped"
        );
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}
