//! `[book]`: how much of each symbol's order book is kept and published.

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookConfig {
    /// Levels per side of the view `book:` channels publish (and a subscription's `depth` is
    /// at most).
    pub depth: usize,
    /// Levels per side kept of a source's book (the farthest from the touch are dropped past
    /// it): bounds a book's memory whatever a venue sends.
    pub max_levels: usize,
    /// A changing book is published whole (a `reset` event) at least this often, so that a
    /// node that joins the stream late (a cluster edge) can start its copy; a cluster's ingest
    /// leader publishes the books that stopped changing whole at this interval too.
    pub checkpoint_ms: u64,
}

impl BookConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=200).contains(&self.depth),
            "book.depth",
            "must be between 1 and 200",
        )?;
        check(
            (self.depth..=100_000).contains(&self.max_levels),
            "book.max_levels",
            "must be at least book.depth and at most 100000",
        )?;
        check(
            (100..=3_600_000).contains(&self.checkpoint_ms),
            "book.checkpoint_ms",
            "must be between 100 and 3600000",
        )
    }
}
