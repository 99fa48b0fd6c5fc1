//! Order books at ingest: each symbol's [`Book`], owned by the first source that sends one,
//! turned into the `book` events ingest sequences (a delta from the view last published, or the
//! whole view as a `reset`), and the checkpoints that publish quiet books whole.
//!
//! Ingest's thread calls it and gives each event its `seq`; nothing here sequences.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::handle::IngestHandle;
use crate::book::{Book, BookConfig, BookError, BookUpdate, BookView, PublishedView};
use crate::model::{Bbo, ChannelId, Event, Kind, Payload, SymbolId, SymbolLimit, Symbols};
use crate::protocol;
use crate::telemetry::metrics::Metrics;

/// Why a depth update was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookUpdateError {
    #[error(transparent)]
    Book(#[from] BookError),
    #[error("the book of {symbol} comes from {owner}; another source's updates are dropped")]
    Owned { symbol: String, owner: String },
    #[error(transparent)]
    SymbolLimit(#[from] SymbolLimit),
}

/// A cluster leader's book checkpoints: every `checkpoint_ms`, ingest publishes whole the books
/// that were not (a changing book is published whole at its next update by itself), so an edge
/// that joins late has every book, quiet ones too, within that time. Runs until `stop`.
pub(crate) async fn run_book_checkpoints(
    ingest: IngestHandle,
    checkpoint_ms: u64,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut timer = tokio::time::interval(std::time::Duration::from_millis(checkpoint_ms.max(1)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        if ingest.checkpoint_books().await.is_err() {
            return;
        }
    }
}

/// One symbol's book at ingest.
struct SymbolBook {
    /// The source that owns it: the first to send one.
    owner: Arc<str>,
    book: Book,
    /// The view last published from it (the next delta is the difference from it).
    published: Arc<PublishedView>,
    /// The touch of the view last published, for `bbo` events on its changes.
    bbo: Bbo,
    /// When it was last published whole.
    whole_at: i64,
}

impl SymbolBook {
    /// True when it is `checkpoint_ms` or more since it was published whole at `ts`.
    fn checkpoint_due(&self, ts: i64, checkpoint_ms: u64) -> bool {
        if checkpoint_ms == 0 {
            return false; // a single node's default: no checkpoints
        }
        let every = i64::try_from(checkpoint_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        ts.saturating_sub(self.whole_at) >= every
    }
}

/// A book view to publish, not yet sequenced: `delta` (the levels that changed since the last
/// one), or with none the whole `view` as a `reset`.
pub(super) struct PendingBook {
    pub(super) symbol: SymbolId,
    view: BookView,
    delta: Option<BookView>,
}

/// Every symbol's book, as ingest keeps it.
pub(super) struct Books {
    books: HashMap<SymbolId, SymbolBook>,
    config: BookConfig,
    metrics: Arc<Metrics>,
}

impl Books {
    pub(super) fn new(config: BookConfig, metrics: Arc<Metrics>) -> Self {
        Books {
            books: HashMap::new(),
            config,
            metrics,
        }
    }

    /// Applies a depth update from `source` to its symbol's book; what changed in the view to
    /// publish, or `None` when the view did not change or the update was refused (counted and
    /// logged here).
    pub(super) fn update(
        &mut self,
        source: &Arc<str>,
        u: &BookUpdate,
        symbols: &Symbols,
        ts: i64,
    ) -> Option<PendingBook> {
        match self.apply(source, u, symbols, ts) {
            Ok(pending) => pending,
            Err(error) => {
                self.metrics
                    .book_updates_rejected
                    .fetch_add(1, Ordering::Relaxed);
                if matches!(error, BookUpdateError::Owned { .. }) {
                    // A configuration choice, at the source's rate: not a warning.
                    tracing::debug!(symbol = %u.symbol, %source, %error, "book update dropped");
                } else {
                    tracing::warn!(symbol = %u.symbol, %source, %error, "book update rejected at ingest");
                }
                None
            }
        }
    }

    /// [`Books::update`]'s work: the whole view (`reset`) for a snapshot, the book's first
    /// update or a due checkpoint, else the delta; `None` when the view did not change (a level
    /// deeper than `book.depth`).
    fn apply(
        &mut self,
        source: &Arc<str>,
        u: &BookUpdate,
        symbols: &Symbols,
        ts: i64,
    ) -> Result<Option<PendingBook>, BookUpdateError> {
        u.validate()?;
        let symbol = symbols.intern(&u.symbol)?;
        let cfg = self.config;
        let first = !self.books.contains_key(&symbol);
        let entry = self.books.entry(symbol).or_insert_with(|| SymbolBook {
            owner: source.clone(),
            book: Book::default(),
            published: Default::default(),
            bbo: Bbo::default(),
            whole_at: ts,
        });
        if entry.owner != *source {
            // Two sources' levels in one book would be neither's book: the first one keeps it.
            return Err(BookUpdateError::Owned {
                symbol: u.symbol.clone(),
                owner: entry.owner.to_string(),
            });
        }
        let dropped = entry.book.apply(u, cfg.max_levels);
        if dropped > 0 {
            self.metrics
                .book_levels_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let view = entry.book.view(cfg.depth);
        let delta = if first || u.snapshot || entry.checkpoint_due(ts, cfg.checkpoint_ms) {
            None
        } else {
            let delta = entry.published.view.diff(&view);
            if delta.is_empty() {
                return Ok(None);
            }
            Some(delta)
        };
        Ok(Some(PendingBook {
            symbol,
            view,
            delta,
        }))
    }

    /// Every book not published whole for `book.checkpoint_ms`, to publish whole (a changing
    /// book is, at its next update; this reaches the ones that stopped changing).
    pub(super) fn checkpoints_due(&self, ts: i64) -> Vec<PendingBook> {
        let every = self.config.checkpoint_ms;
        self.books
            .iter()
            .filter(|(_, b)| b.checkpoint_due(ts, every))
            .map(|(symbol, b)| PendingBook {
                symbol: *symbol,
                view: (*b.published.view).clone(),
                delta: None,
            })
            .collect()
    }

    /// The best bid and offer of `symbol`'s published view when they changed since this was
    /// last asked (a `bbo` event to publish); `None` when the touch is as it was.
    pub(super) fn touch_changed(&mut self, symbol: SymbolId) -> Option<Bbo> {
        let entry = self.books.get_mut(&symbol)?;
        let view = &entry.published.view;
        let bbo = Bbo {
            bid: view.bids.first().copied(),
            ask: view.asks.first().copied(),
        };
        if bbo == entry.bbo {
            return None;
        }
        entry.bbo = bbo;
        Some(bbo)
    }

    /// The event publishing `pending` as its symbol's book, sequenced by ingest as `seq` of the
    /// channel `name`; remembered as the view the next delta is taken from.
    pub(super) fn publish(
        &mut self,
        pending: PendingBook,
        seq: u64,
        name: Arc<str>,
        ts: i64,
    ) -> Event {
        let PendingBook {
            symbol,
            view,
            delta,
        } = pending;
        let checksum = view.checksum();
        self.metrics.book_updates.fetch_add(1, Ordering::Relaxed);
        let wire = protocol::BookMessage {
            ch: &name,
            seq,
            ts,
            reset: delta.is_none(),
            levels: delta.as_ref().unwrap_or(&view),
            checksum,
        }
        .wire();
        // One view, shared by the hub (snapshots, repairs) and the next diff.
        let view = Arc::new(PublishedView::new(name, seq, ts, view, checksum));
        if let Some(entry) = self.books.get_mut(&symbol) {
            entry.published = view.clone();
            if delta.is_none() {
                entry.whole_at = ts;
            }
        }
        Event {
            channel: ChannelId {
                kind: Kind::Book,
                symbol,
            },
            seq,
            ts,
            payload: Payload::Book,
            wire,
            book: Some(view),
        }
    }
}
