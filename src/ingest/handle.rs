//! The senders' side of ingest: [`IngestHandle`], cloned into every feed and the pipeline, with
//! the per-feed checks that happen before a batch is queued (the symbol-table bound, and on live
//! feeds the future-skew bound).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{Derived, Msg, TickError};
use crate::book::BookUpdate;
use crate::model::{ChannelId, RawTick, SymbolLimit, Symbols};
use crate::telemetry::metrics::Metrics;

/// The ingest queue is closed: the server is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ingest is shut down")]
pub struct IngestClosed;

/// Why a non-waiting submit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TrySubmitError {
    #[error("ingest queue is full")]
    Full,
    #[error(transparent)]
    Closed(#[from] IngestClosed),
}

/// A cloneable sender into ingest; dropping every handle lets ingest finish.
#[derive(Debug, Clone)]
pub struct IngestHandle {
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) symbols: Arc<Symbols>,
    /// Set on the handles of live feeds ([`IngestHandle::live`]); replay has none.
    pub(super) max_future_skew_ns: Option<i64>,
}

impl IngestHandle {
    /// A handle for a live feed (synthetic, upstream, HTTP ingest): ingest refuses its ticks
    /// dated more than `max_future_skew_ms` ahead of the server clock (counted and logged as
    /// `FutureTicksRejected`). Replayed history is not live and keeps the plain handle.
    pub(crate) fn live(&self, max_future_skew_ms: u64) -> IngestHandle {
        IngestHandle {
            max_future_skew_ns: Some(super::skew_ns(max_future_skew_ms)),
            ..self.clone()
        }
    }

    /// The future-skew check of this handle at `now_ns`, for callers that report per record
    /// before queueing (HTTP ingest; a refusal is counted in `ticks_future`, the caller counts
    /// it as rejected); a handle that is not live accepts any time.
    pub(crate) fn check_future(&self, t: &RawTick, now_ns: i64) -> Result<(), TickError> {
        let checked = self.check_future_ts(t.exchange_ts, now_ns);
        if checked.is_err() {
            self.metrics.ticks_future.fetch_add(1, Ordering::Relaxed);
        }
        checked
    }

    fn ticks(&self, ticks: Vec<RawTick>) -> Msg {
        self.ticks_acked(ticks, None)
    }

    fn ticks_acked(
        &self,
        ticks: Vec<RawTick>,
        published: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Msg {
        Msg::Ticks {
            ticks,
            max_future_skew_ns: self.max_future_skew_ns,
            published,
        }
    }

    /// Queues a message, waiting while the queue is full, and counts it in the queue depth
    /// (ingest counts it out when it takes it).
    async fn queue(&self, msg: Msg) -> Result<(), IngestClosed> {
        self.tx.send(msg).await.map_err(|_| IngestClosed)?;
        self.metrics
            .ingest_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Queues validated ticks, waiting while the queue is full.
    pub(crate) async fn send(&self, ticks: Vec<RawTick>) -> Result<(), IngestClosed> {
        if ticks.is_empty() {
            return Ok(());
        }
        self.queue(self.ticks(ticks)).await
    }

    /// Queues validated ticks and waits until ingest has published them, so the caller can
    /// pace itself by what downstream has read (replay and the pipeline backlog).
    pub(crate) async fn send_published(&self, ticks: Vec<RawTick>) -> Result<(), IngestClosed> {
        if ticks.is_empty() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(self.ticks_acked(ticks, Some(tx))).await?;
        rx.await.map_err(|_| IngestClosed)
    }

    /// Queues validated ticks if there is room now.
    pub(crate) fn try_send(&self, ticks: Vec<RawTick>) -> Result<(), TrySubmitError> {
        self.try_queue(self.ticks(ticks))
    }

    /// Queues validated depth updates if there is room now.
    pub(crate) fn try_send_books(
        &self,
        source: &Arc<str>,
        updates: Vec<BookUpdate>,
    ) -> Result<(), TrySubmitError> {
        self.try_queue(Msg::Books {
            source: source.clone(),
            updates,
        })
    }

    fn try_queue(&self, msg: Msg) -> Result<(), TrySubmitError> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TrySubmitError::Full,
            mpsc::error::TrySendError::Closed(_) => TrySubmitError::Closed(IngestClosed),
        })?;
        self.metrics
            .ingest_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Queues depth updates, waiting while the queue is full. `source` names the feed: a
    /// symbol's book is the first source's that sends one.
    pub(crate) async fn send_books(
        &self,
        source: &Arc<str>,
        updates: Vec<BookUpdate>,
    ) -> Result<(), IngestClosed> {
        if updates.is_empty() {
            return Ok(());
        }
        self.queue(Msg::Books {
            source: source.clone(),
            updates,
        })
        .await
    }

    /// Queues pipeline output from a blocking (non-async) thread.
    pub fn send_derived_blocking(&self, values: Vec<Derived>) -> Result<(), IngestClosed> {
        if values.is_empty() {
            return Ok(());
        }
        self.derived_blocking(values, None)
    }

    /// [`IngestHandle::send_derived_blocking`], returning a receiver told once these values
    /// are published (in the rings); dropped unanswered if ingest stops first.
    pub(crate) fn send_derived_published_blocking(
        &self,
        values: Vec<Derived>,
    ) -> Result<tokio::sync::oneshot::Receiver<()>, IngestClosed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.derived_blocking(values, Some(tx))?;
        Ok(rx)
    }

    fn derived_blocking(
        &self,
        values: Vec<Derived>,
        published: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), IngestClosed> {
        self.tx
            .blocking_send(Msg::Derived { values, published })
            .map_err(|_| IngestClosed)?;
        self.metrics
            .ingest_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes each channel continue after the given `seq` (never going back), and waits until
    /// ingest applied it: a cluster leader that takes over continues the stream.
    pub(crate) async fn seed(&self, seqs: Vec<(ChannelId, u64)>) -> Result<(), IngestClosed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(Msg::Seed(seqs, tx)).await?;
        rx.await.map_err(|_| IngestClosed)
    }

    /// Asks ingest to publish whole every book it has not published whole for
    /// `book.checkpoint_ms` (see [`run_book_checkpoints`](super::run_book_checkpoints)).
    pub(crate) async fn checkpoint_books(&self) -> Result<(), IngestClosed> {
        self.queue(Msg::CheckpointBooks).await
    }

    /// Asks ingest to publish what is queued and stop (graceful shutdown).
    pub(crate) async fn stop(&self) {
        let _ = self.tx.send(Msg::Stop).await;
    }

    /// Makes sure the tick's symbol has an id (the symbol table is bounded), so a caller can
    /// report the limit per record before queueing.
    pub(crate) fn reserve_symbol(&self, t: &RawTick) -> Result<(), TickError> {
        self.symbols.intern(&t.symbol)?;
        Ok(())
    }

    /// [`Self::reserve_symbol`] for a symbol name (a depth update's).
    pub(crate) fn reserve_symbol_name(&self, symbol: &str) -> Result<(), SymbolLimit> {
        self.symbols.intern(symbol).map(|_| ())
    }

    /// The future-skew check of this handle for a depth update's exchange time (as
    /// [`Self::check_future`] for a tick's).
    pub(crate) fn check_future_ts(&self, exchange_ts: i64, now_ns: i64) -> Result<(), TickError> {
        match self.max_future_skew_ns {
            None => Ok(()),
            Some(max) => super::check_future_ts(exchange_ts, now_ns, max),
        }
    }

    /// False once ingest has stopped taking batches.
    pub(crate) fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// The record was refused by a feed before reaching ingest.
    pub(crate) fn count_rejected(&self, n: u64) {
        self.metrics.ticks_rejected.fetch_add(n, Ordering::Relaxed);
    }
}
