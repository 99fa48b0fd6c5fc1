//! Feeds: adapters that turn a source of trades into validated [`RawTick`] batches for ingest.
//!
//! Every adapter implements [`Feed`]. A bad record is counted and logged, never fatal; a feed
//! stops when its shutdown token is cancelled, and reports "done" by returning.

pub mod config;
pub mod mapping;
pub mod replay;
pub mod synthetic;
pub mod upstream;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::ingest::IngestHandle;
use crate::model::RawTick;
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

/// Sends a batch to ingest, waiting for room (backpressure) unless shutdown comes first; false
/// when it did. An empty batch is not sent.
pub(crate) async fn send_batch(ctx: &FeedContext, batch: Vec<RawTick>) -> Result<bool, FeedError> {
    if batch.is_empty() {
        return Ok(true);
    }
    tokio::select! {
        _ = ctx.shutdown.cancelled() => Ok(false),
        r = ctx.ingest.send(batch) => r.map(|()| true).map_err(FeedError::from),
    }
}
