//! Feeds: adapters that turn a source of trades into validated [`RawTick`] batches for ingest.
//!
//! Every adapter implements [`Feed`]. A bad record is counted and logged, never fatal; a feed
//! stops when its shutdown token is cancelled, and reports "done" by returning.

pub mod config;
pub mod depth;
pub mod mapping;
pub mod replay;
pub mod synthetic;
pub mod upstream;
pub mod venues;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::ingest::IngestHandle;
use crate::model::RawTick;
use crate::rooms::Backlog;
use crate::telemetry::metrics::Metrics;

pub use config::{FeedsConfig, HttpIngestConfig};
pub use replay::ReplayFeed;
pub use synthetic::SyntheticFeed;
pub use upstream::UpstreamFeed;

/// Most ticks a feed sends to ingest in one batch: bounds the latency a burst adds to its first
/// tick and the memory one queued batch holds.
pub(crate) const BATCH_MAX: usize = 512;

/// What a running feed gets.
#[derive(Debug, Clone)]
pub(crate) struct FeedContext {
    pub ingest: IngestHandle,
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// Ticks the pipeline has not read yet: replay waits on it instead of outrunning the rings.
    pub backlog: Arc<Backlog>,
    /// Rows the store has not committed: replay waits on it instead of outrunning the database.
    pub store: Arc<Backlog>,
    /// `database.on_overload = "block"`: live feeds wait on the store too.
    pub live_waits_for_store: bool,
}

/// A feed failed in a way it cannot recover from.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {message}")]
    Format { path: String, message: String },
    #[error("feed configuration: {0}")]
    Config(String),
    #[error("ingest is shut down")]
    IngestClosed,
}

impl FeedError {}

impl From<crate::ingest::IngestClosed> for FeedError {
    fn from(_: crate::ingest::IngestClosed) -> Self {
        FeedError::IngestClosed
    }
}

/// One source of ticks.
pub(crate) trait Feed: Send + 'static {
    /// Short name for logs and metrics (`synthetic`, `replay`, `upstream`).
    fn name(&self) -> &'static str;

    /// True for feeds of trades happening now (synthetic, upstream): ingest refuses their ticks
    /// dated more than `feeds.max_future_skew_ms` ahead. Replayed history is not live.
    fn is_live(&self) -> bool {
        true
    }

    /// Runs until the source ends or `ctx.shutdown` is cancelled.
    fn run(self: Box<Self>, ctx: FeedContext) -> BoxFuture<'static, Result<(), FeedError>>;
}

/// Sends a batch of history to ingest no faster than the pipeline reads it and the store
/// commits it: each part waits until it fits beside the ticks the pipeline has not read and the
/// rows the store has not written, and until ingest has published it, so a replay at any speed
/// never makes a ring evict a tick before its bar is built, nor the write-behind queue overflow.
/// False on shutdown.
pub(crate) async fn send_paced(ctx: &FeedContext, batch: Vec<RawTick>) -> Result<bool, FeedError> {
    let part = ctx.backlog.max_batch().min(ctx.store.max_batch()).max(1);
    let mut batch = batch.into_iter().peekable();
    while batch.peek().is_some() {
        let chunk: Vec<RawTick> = batch.by_ref().take(part).collect();
        for brake in [&ctx.backlog, &ctx.store] {
            if !brake.wait_for_room(chunk.len(), &ctx.shutdown).await {
                return Ok(false);
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(false),
            r = ctx.ingest.send_published(chunk) => r?,
        }
    }
    Ok(true)
}

/// Sends a batch to ingest, waiting for room (backpressure) unless shutdown comes first; false
/// when it did. An empty batch is not sent.
pub(crate) async fn send_batch(ctx: &FeedContext, batch: Vec<RawTick>) -> Result<bool, FeedError> {
    if batch.is_empty() {
        return Ok(true);
    }
    if ctx.live_waits_for_store && !ctx.store.wait_for_room(batch.len(), &ctx.shutdown).await {
        return Ok(false);
    }
    tokio::select! {
        _ = ctx.shutdown.cancelled() => Ok(false),
        r = ctx.ingest.send(batch) => r.map(|()| true).map_err(FeedError::from),
    }
}
