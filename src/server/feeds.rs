//! The feeds a node runs: built from `[feeds]`, started as tasks with what they need
//! (`FeedStart`), and, on an ingest node of a cluster, started only once the node holds the
//! lease and has fenced the stream (`lead_feeds`).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ServerError;
use crate::cluster::{self, ClusterStatus, Nats};
use crate::config::Config;
use crate::feed::{Feed, FeedContext, ReplayFeed, SyntheticFeed, UpstreamFeed};
use crate::ingest::IngestHandle;
use crate::model::Symbols;
use crate::telemetry::metrics::Metrics;

/// What a feed task needs to start.
pub(super) struct FeedStart {
    pub(super) ingest: IngestHandle,
    pub(super) max_future_skew_ms: u64,
    pub(super) stop: CancellationToken,
    pub(super) metrics: Arc<Metrics>,
    pub(super) backlog: Arc<crate::rooms::Backlog>,
    pub(super) store: Arc<crate::rooms::Backlog>,
    pub(super) live_waits_for_store: bool,
}

impl FeedStart {
    /// Starts each feed as a task.
    pub(super) fn spawn(&self, feeds: Vec<Box<dyn Feed>>) -> Vec<(&'static str, JoinHandle<()>)> {
        feeds
            .into_iter()
            .map(|feed| {
                let name = feed.name();
                let ingest = if feed.is_live() {
                    self.ingest.live(self.max_future_skew_ms)
                } else {
                    self.ingest.clone()
                };
                let ctx = FeedContext {
                    ingest,
                    shutdown: self.stop.clone(),
                    metrics: self.metrics.clone(),
                    backlog: self.backlog.clone(),
                    store: self.store.clone(),
                    live_waits_for_store: self.live_waits_for_store,
                };
                let task = tokio::spawn(async move {
                    match feed.run(ctx).await {
                        Ok(()) => tracing::info!(feed = name, "feed finished"),
                        Err(error) => tracing::error!(feed = name, %error, "feed stopped"),
                    }
                });
                (name, task)
            })
            .collect()
    }
}

/// What an ingest node needs to take the stream over once it holds the lease.
pub(super) struct Takeover {
    pub(super) nats: Arc<Nats>,
    /// This process's unique name (the lease's value).
    pub(super) node: String,
    pub(super) publisher: Option<Arc<cluster::StreamPublisher>>,
    /// Reports the node leader (and opens HTTP ingest) once it is seeded: a tick sequenced
    /// before would reuse a `seq`.
    pub(super) status: Arc<ClusterStatus>,
}

/// An ingest node's feeds: nothing until this node holds the lease; then it fences the stream
/// (`cluster::takeover`), every channel continues from the stream's last `seq`, the feeds start
/// (they reconnect, or replay and generate from their start, deterministically) and so do the
/// book checkpoints. Ends when the feeds do.
pub(super) async fn lead_feeds(
    mut leadership: cluster::Leadership,
    takeover: Takeover,
    symbols: Arc<Symbols>,
    start: FeedStart,
    feeds: Vec<Box<dyn Feed>>,
    book_checkpoint_ms: u64,
) {
    tokio::select! {
        _ = start.stop.cancelled() => return,
        r = leadership.acquired.wait_for(|held| *held) => if r.is_err() { return },
    }
    let seeds = loop {
        match takeover.nats.take_over(&symbols, &takeover.node).await {
            Ok(t) => {
                if let Some(p) = &takeover.publisher {
                    p.arm(t.fence);
                }
                break t.seeds;
            }
            Err(error) => {
                tracing::warn!(%error, "takeover: cannot fence the stream; retrying");
                tokio::select! {
                    _ = start.stop.cancelled() => return,
                    _ = leadership.lost.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    };
    tracing::info!(
        channels = seeds.len(),
        "takeover: continuing the stream's sequences"
    );
    if start.ingest.seed(seeds).await.is_err() || leadership.lost.is_cancelled() {
        return;
    }
    takeover.status.set_active(true);
    tokio::spawn(crate::ingest::run_book_checkpoints(
        start.ingest.clone(),
        book_checkpoint_ms,
        start.stop.clone(),
    ));
    for (name, task) in start.spawn(feeds) {
        if let Err(error) = task.await {
            tracing::error!(feed = name, %error, "feed task failed");
        }
    }
}

/// Builds the enabled feeds. Symbols the synthetic feed will produce are interned up front, so
/// clients can subscribe before the first tick of each.
pub(super) fn build_feeds(
    config: &Config,
    symbols: &Symbols,
) -> Result<Vec<Box<dyn Feed>>, ServerError> {
    let mut feeds: Vec<Box<dyn Feed>> = Vec::new();
    if config.feeds.synthetic.enabled {
        for name in crate::feed::synthetic::symbol_names(&config.feeds.synthetic) {
            let _ = symbols.intern(&name);
        }
        feeds.push(Box::new(SyntheticFeed::new(&config.feeds.synthetic)));
    }
    if config.feeds.replay.enabled {
        let feed = ReplayFeed::new(&config.feeds.replay).map_err(|source| ServerError::Feed {
            feed: "replay",
            source,
        })?;
        feeds.push(Box::new(feed));
    }
    for upstream in config.feeds.enabled_upstreams() {
        let feed = UpstreamFeed::new(upstream).map_err(|source| ServerError::Feed {
            feed: "upstream",
            source,
        })?;
        feeds.push(Box::new(feed));
    }
    Ok(feeds)
}
