//! A feed's depth stream and its resync: the venue's decoder, the feed's symbols, the book
//! updates not yet sent, and the symbols being resubscribed after losing sync (see the module
//! docs of `upstream` for the rules).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{Signs, UpstreamError};
use crate::book::BookUpdate;
use crate::feed::depth::{Decoded, DepthError, DepthStream};
use crate::feed::mapping::{Mapping, SymbolMap};
use crate::telemetry::feeds::FeedStatus;

/// What one inbound message was to the depth stream.
#[derive(Debug)]
pub(super) enum Offered {
    /// Not a depth message: the trade mapping's.
    NotDepth,
    /// A depth message, used (its updates batched, or dropped as stale or while resyncing).
    Depth,
    /// A depth message whose book lost sync and cannot be resubscribed on this connection:
    /// the connection must end.
    Reconnect(UpstreamError),
}

/// A feed's depth stream (see the module docs).
#[derive(Debug)]
pub(super) struct DepthSync {
    decoder: Box<dyn DepthStream>,
    subscribe: Vec<String>,
    symbols: SymbolMap,
    /// Updates decoded and not yet sent (venue symbols already mapped to published ones).
    batch: Vec<BookUpdate>,
    /// Scratch for one message's updates, before mapping.
    decoded: Vec<BookUpdate>,
    /// The feed's name, as the source that owns its symbols' books at ingest.
    source: Arc<str>,
    /// Symbols (venue spelling) resubscribed after losing sync, since when: their updates are
    /// dropped until the venue's fresh snapshot; one that does not come within the idle
    /// timeout ends the connection (a full resync).
    resyncing: HashMap<String, Instant>,
    /// Resubscribe messages still to send on this connection.
    to_send: Vec<String>,
}

impl DepthSync {
    /// The depth stream of feed `source`, following its `symbols` with `decoder`.
    pub(super) fn new(decoder: Box<dyn DepthStream>, symbols: SymbolMap, source: &str) -> Self {
        Self {
            subscribe: decoder.subscribe_messages(),
            decoder,
            symbols,
            batch: Vec::new(),
            decoded: Vec::new(),
            source: Arc::from(source),
            resyncing: HashMap::new(),
            to_send: Vec::new(),
        }
    }

    /// Starts over on a new connection, forgetting every book's sequence state; returns the
    /// depth subscribe messages to send after the trade subscribe.
    pub(super) fn connected(&mut self) -> &[String] {
        self.decoder.reset();
        self.batch.clear();
        self.resyncing.clear();
        self.to_send.clear();
        &self.subscribe
    }

    /// The feed's name, which owns its symbols' books at ingest.
    pub(super) fn source(&self) -> &Arc<str> {
        &self.source
    }

    /// Offers one message: its updates for the feed's symbols are batched under their
    /// published names (`mapping` normalises the venue's spelling); a book that lost sync is
    /// resubscribed (its messages wait in [`DepthSync::resubscribes`]) or ends the connection.
    /// A depth message that is a sign of life counts in `signs.lives`.
    pub(super) fn offer(
        &mut self,
        bytes: &[u8],
        feed: &str,
        mapping: &Mapping,
        status: &FeedStatus,
        signs: &mut Signs,
    ) -> Result<Offered, DepthError> {
        self.decoded.clear();
        let decoded = self
            .decoder
            .decode(bytes, crate::model::now_ns(), &mut self.decoded)?;
        // What the message decoded to before any symbol lost sync in it is published either way.
        for mut u in self.decoded.drain(..) {
            if let Some(since) = self.resyncing.get(&u.symbol) {
                if !u.snapshot {
                    tracing::trace!(feed, symbol = %u.symbol, ?since, "update while resyncing dropped");
                    continue;
                }
                self.resyncing.remove(&u.symbol);
                tracing::info!(feed, symbol = %u.symbol, "order book resynced");
            }
            match self.symbols.published(&mapping.normalise(&u.symbol)) {
                Some(published) => {
                    u.symbol = published;
                    self.batch.push(u);
                }
                None => {
                    status.unsubscribed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(feed, symbol = %u.symbol, "book update dropped");
                }
            }
        }
        Ok(match decoded {
            Decoded::NotDepth => Offered::NotDepth,
            Decoded::Book { .. } => {
                signs.lives += 1;
                Offered::Depth
            }
            Decoded::Stale { symbol } => {
                signs.lives += 1;
                status.book_stale.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(feed, %symbol, "stale depth message dropped");
                Offered::Depth
            }
            Decoded::Lost { symbol, reason } => {
                self.lost_sync(symbol, reason, feed, mapping, status)
            }
        })
    }

    /// A symbol's book lost sync: resubscribed on this connection when the venue can, else the
    /// connection ends. Ignored for a symbol the feed does not follow or one already resyncing.
    fn lost_sync(
        &mut self,
        symbol: String,
        reason: String,
        feed: &str,
        mapping: &Mapping,
        status: &FeedStatus,
    ) -> Offered {
        if self
            .symbols
            .published(&mapping.normalise(&symbol))
            .is_none()
        {
            tracing::debug!(feed, %symbol, %reason, "unsubscribed book out of sync; ignored");
            return Offered::Depth;
        }
        if self.resyncing.contains_key(&symbol) {
            // Deltas still in flight before the fresh snapshot: expected, not news.
            tracing::trace!(feed, %symbol, %reason, "still resyncing");
            return Offered::Depth;
        }
        status.book_resyncs.fetch_add(1, Ordering::Relaxed);
        match self.decoder.resync_messages(&symbol) {
            Some(messages) => {
                tracing::warn!(feed, %symbol, %reason, "order book lost sync; resubscribing");
                self.to_send.extend(messages);
                self.resyncing.insert(symbol, Instant::now());
                Offered::Depth
            }
            None => {
                tracing::warn!(feed, %symbol, %reason, "order book lost sync; reconnecting");
                Offered::Reconnect(UpstreamError::BookResync { symbol, reason })
            }
        }
    }

    /// The resubscribe messages to send now.
    pub(super) fn resubscribes(&mut self) -> std::vec::Drain<'_, String> {
        self.to_send.drain(..)
    }

    /// A resync whose fresh snapshot did not come within `limit` of resubscribing: the venue
    /// never answered, so the connection must end (a full resync).
    pub(super) fn overdue(&self, limit: Duration) -> Option<UpstreamError> {
        let (symbol, _) = self
            .resyncing
            .iter()
            .find(|(_, since)| since.elapsed() >= limit)?;
        Some(UpstreamError::BookResync {
            symbol: symbol.clone(),
            reason: format!("no snapshot within {limit:?} of resubscribing"),
        })
    }

    /// The book updates batched so far, if any, to send to ingest.
    pub(super) fn take_batch(&mut self) -> Option<Vec<BookUpdate>> {
        (!self.batch.is_empty()).then(|| std::mem::take(&mut self.batch))
    }
}
