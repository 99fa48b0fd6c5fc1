//! Order books: one per symbol, built at ingest from the feeds' depth updates. What clients see
//! is a symbol's *view*, the top `book.depth` levels per side, published as deltas (the levels
//! that changed, size 0 for a level that left the view) each with a checksum of the view's top
//! levels, so a client can prove its copy (docs/PROTOCOL.md "Order books").
//!
//! Prices key the levels by their bit pattern: for positive finite floats the bits order as the
//! numbers do, so a `BTreeMap<u64, f64>` walks a side in price order without a float wrapper.

mod config;
mod published;

use std::collections::BTreeMap;
use std::fmt::Write;

pub use config::BookConfig;
pub use published::PublishedView;

/// One price level: (price, size). Size 0 in a delta removes the level.
pub type Level = (f64, f64);

/// How many levels per side the checksum covers (as Kraken's and OKX's books do).
pub const CHECKSUM_LEVELS: usize = 10;

/// A depth update as a feed reports it, before ingest gives it a symbol id and a `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct BookUpdate {
    pub symbol: String,
    /// A whole book (a venue's snapshot, or the first after a resync): replaces every level.
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// Exchange time, nanoseconds since the Unix epoch.
    pub exchange_ts: i64,
}

/// Why a depth update was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookError {
    #[error("invalid symbol {0:?}: must match [A-Z0-9._-]{{1,32}}")]
    Symbol(String),
    #[error("level price must be a finite number > 0, got {0}")]
    Price(f64),
    #[error("level size must be a finite number >= 0, got {0}")]
    Size(f64),
    #[error("exchange time must be > 0 ns since the epoch, got {0}")]
    Time(i64),
}

impl BookUpdate {
    /// Checks the update against the contract's rules.
    pub fn validate(&self) -> Result<(), BookError> {
        if !crate::model::is_valid_symbol(&self.symbol) {
            return Err(BookError::Symbol(self.symbol.clone()));
        }
        if self.exchange_ts <= 0 {
            return Err(BookError::Time(self.exchange_ts));
        }
        for &(price, size) in self.bids.iter().chain(&self.asks) {
            if !(price.is_finite() && price > 0.0) {
                return Err(BookError::Price(price));
            }
            if !(size.is_finite() && size >= 0.0) {
                return Err(BookError::Size(size));
            }
        }
        Ok(())
    }
}

/// One symbol's whole book: every level its source reported, up to `max_levels` per side.
#[derive(Debug, Clone, Default)]
pub struct Book {
    bids: BTreeMap<u64, f64>,
    asks: BTreeMap<u64, f64>,
}

impl Book {
    /// Applies an update (a snapshot replaces everything); keeps at most `max_levels` per side,
    /// dropping the levels farthest from the touch. Returns how many levels were dropped.
    pub fn apply(&mut self, u: &BookUpdate, max_levels: usize) -> usize {
        if u.snapshot {
            self.bids.clear();
            self.asks.clear();
        }
        for &(price, size) in &u.bids {
            set(&mut self.bids, price, size);
        }
        for &(price, size) in &u.asks {
            set(&mut self.asks, price, size);
        }
        let mut dropped = 0;
        while self.bids.len() > max_levels {
            self.bids.pop_first(); // the lowest bid
            dropped += 1;
        }
        while self.asks.len() > max_levels {
            self.asks.pop_last(); // the highest ask
            dropped += 1;
        }
        dropped
    }

    /// The top `depth` levels per side.
    pub fn view(&self, depth: usize) -> BookView {
        BookView {
            bids: self
                .bids
                .iter()
                .rev()
                .take(depth)
                .map(|(&p, &s)| (f64::from_bits(p), s))
                .collect(),
            asks: self
                .asks
                .iter()
                .take(depth)
                .map(|(&p, &s)| (f64::from_bits(p), s))
                .collect(),
        }
    }

    /// Levels held, both sides.
    pub fn len(&self) -> usize {
        self.bids.len() + self.asks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn set(side: &mut BTreeMap<u64, f64>, price: f64, size: f64) {
    if size == 0.0 {
        side.remove(&price.to_bits());
    } else {
        side.insert(price.to_bits(), size);
    }
}

/// The top levels of a book: bids from the highest price down, asks from the lowest up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BookView {
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

impl BookView {
    /// The top `depth` levels per side of this view.
    pub fn top(&self, depth: usize) -> BookView {
        BookView {
            bids: self.bids.iter().take(depth).copied().collect(),
            asks: self.asks.iter().take(depth).copied().collect(),
        }
    }

    /// What turns `self` into `next`: the levels of `next` that are new or changed, and size 0
    /// for each level of `self` that `next` no longer has; per side, in `next`'s order then the
    /// removals.
    pub fn diff(&self, next: &BookView) -> BookView {
        BookView {
            bids: diff_side(&self.bids, &next.bids),
            asks: diff_side(&self.asks, &next.asks),
        }
    }

    /// Applies a delta (a client's copy does this), then keeps the top `depth` per side.
    pub fn apply(&mut self, delta: &BookView, depth: usize) {
        apply_side(&mut self.bids, &delta.bids, |a, b| b.total_cmp(&a), depth);
        apply_side(&mut self.asks, &delta.asks, |a, b| a.total_cmp(&b), depth);
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// CRC-32 (IEEE, as zlib's) of the top [`CHECKSUM_LEVELS`] levels: for i in 0..10, the i-th
    /// bid then the i-th ask, each present one as `price:size`, all joined by `:`. Numbers are
    /// written as their shortest round-trip decimal in plain notation (`187.25`, `100`,
    /// `0.0005`), which is JavaScript's `String(x)` for values from 1e-6 to 1e21.
    pub fn checksum(&self) -> u32 {
        let mut s = String::with_capacity(CHECKSUM_LEVELS * 40);
        for i in 0..CHECKSUM_LEVELS {
            for level in [self.bids.get(i), self.asks.get(i)].into_iter().flatten() {
                if !s.is_empty() {
                    s.push(':');
                }
                let _ = write!(s, "{}:{}", level.0, level.1);
            }
        }
        CRC32.checksum(s.as_bytes())
    }

    /// Best bid and best ask, when both sides have a level.
    pub fn touch(&self) -> Option<(Level, Level)> {
        Some((*self.bids.first()?, *self.asks.first()?))
    }

    /// Mid, spread and imbalance at the touch (all `None` while a side is empty).
    pub fn top_of_book(&self) -> TopOfBook {
        match self.touch() {
            Some(((bid, bid_size), (ask, ask_size))) => TopOfBook {
                mid: Some((bid + ask) / 2.0),
                spread: Some(ask - bid),
                imbalance: Some((bid_size - ask_size) / (bid_size + ask_size)),
            },
            None => TopOfBook::default(),
        }
    }
}

/// The book's derived view: what `GET /api/v1/book` and the `indicators` event show of it.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, utoipa::ToSchema)]
pub struct TopOfBook {
    /// (best bid + best ask) / 2.
    pub mid: Option<f64>,
    /// best ask − best bid.
    pub spread: Option<f64>,
    /// (bid size − ask size) / (bid size + ask size) at the touch, in [−1, 1].
    pub imbalance: Option<f64>,
}

static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

fn diff_side(old: &[Level], new: &[Level]) -> Vec<Level> {
    let mut out: Vec<Level> = new.iter().filter(|l| !old.contains(l)).copied().collect();
    out.extend(
        old.iter()
            .filter(|(p, _)| !new.iter().any(|(q, _)| q == p))
            .map(|&(p, _)| (p, 0.0)),
    );
    out
}

fn apply_side(
    side: &mut Vec<Level>,
    delta: &[Level],
    order: impl Fn(f64, f64) -> std::cmp::Ordering,
    depth: usize,
) {
    for &(price, size) in delta {
        side.retain(|(p, _)| *p != price);
        if size != 0.0 {
            side.push((price, size));
        }
    }
    side.sort_by(|a, b| order(a.0, b.0));
    side.truncate(depth);
}

#[cfg(test)]
mod tests;
