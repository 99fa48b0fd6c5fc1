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
    /// leader publishes the books that stopped changing whole at this interval too. 0 (the
    /// default): [`CLUSTER_CHECKPOINT_MS`] in a cluster, none on a single node, whose clients
    /// have no use for them (they only cost a reset per book every interval).
    pub checkpoint_ms: u64,
}

/// The checkpoint interval of a cluster whose `book.checkpoint_ms` is 0.
pub const CLUSTER_CHECKPOINT_MS: u64 = 10_000;

impl BookConfig {
    /// This config as a node runs it: `checkpoint_ms` resolved for a single node (`single`:
    /// 0 stays 0, no checkpoints) or a cluster node (0 becomes [`CLUSTER_CHECKPOINT_MS`]).
    pub fn for_node(self, single: bool) -> Self {
        let checkpoint_ms = match self.checkpoint_ms {
            0 if !single => CLUSTER_CHECKPOINT_MS,
            ms => ms,
        };
        Self {
            checkpoint_ms,
            ..self
        }
    }
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
            self.checkpoint_ms == 0 || (100..=3_600_000).contains(&self.checkpoint_ms),
            "book.checkpoint_ms",
            "must be 0 (cluster only) or between 100 and 3600000",
        )
    }
}
