//! Wiring: builds every stage from a [`Config`], binds the listener, runs until told to stop,
//! and shuts down in data-flow order (feeds, ingest, write-behind flush, sockets, HTTP).

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
use crate::model::{Event, Symbols};
use crate::pipeline::{LatestIndicators, Pipeline};
use crate::rooms::{EventSink, Hub, HubConfig};
use crate::store::{Recorder, Store, StoreError};
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
    /// The database: history, users, trades.
    pub store: Arc<Store>,
    /// Write-behind persistence of ticks (its health feeds `/readyz`).
    pub recorder: Arc<Recorder>,
    /// REST state: rate limiters, prediction cache.
    pub api: crate::api::ApiState,
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
    #[error("database: {0}")]
    Store(#[from] StoreError),
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
        let store = Arc::new(Store::open(&config.database)?);
        // A database that is down at start-up delays persistence, not streaming: the writer
        // migrates before its first batch and retries until the database answers.
        match tokio::time::timeout(ms(config.database.timeout_ms), store.migrate()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "database not ready at start-up; persistence will retry")
            }
            Err(_) => tracing::warn!("database did not answer at start-up; persistence will retry"),
        }
        let recorder = Recorder::start(
            store.clone(),
            &config.database,
            symbols.clone(),
            metrics.clone(),
        );
        let sink: Arc<dyn EventSink> = Arc::new(Fanout(vec![hub.clone(), recorder.clone()]));
        let (ingest, ingest_handle) = Ingest::new(
            symbols.clone(),
            sink,
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
        let api = crate::api::ApiState::new(&config);
        let shared = Arc::new(Shared {
            conn_limit: Arc::new(Semaphore::new(config.ws.max_connections)),
            config,
            symbols,
            hub,
            ingest: ingest_handle.clone(),
            metrics: metrics.clone(),
            indicators,
            api,
            store: store.clone(),
            recorder,
            sessions: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            epoch: crate::model::now_ns() / 1_000,
        });

        tokio::spawn(crate::store::retention::run(
            store,
            shared.config.database.clone(),
            shared.shutdown.clone(),
        ));

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
            let serve = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop_http.cancelled_owned());
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

    /// Graceful stop: feeds end, the pipeline finishes its batch, ingest publishes what it
    /// holds, the write-behind queue is flushed to the database, every socket gets what was
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
        // Every ingested tick is in the recorder's queue now; nothing more can arrive.
        let left = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        self.shared.recorder.flush_and_stop(left).await;
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
        self.shared.store.close().await;
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

/// Publishes every batch to several sinks in order (the hub first: streaming comes before
/// persistence).
struct Fanout(Vec<Arc<dyn EventSink>>);

impl EventSink for Fanout {
    fn publish(&self, events: &[Event]) {
        for sink in &self.0 {
            sink.publish(events);
        }
    }
}
