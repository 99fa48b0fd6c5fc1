//! A subscribe request as the hub sees it (channel names already resolved): what the op
//! handlers build and both `subscriptions.rs` (registration) and `catch_up.rs` (what is sent
//! before live events) read. A leaf of its own, so neither of those two imports the other's
//! request type.

use std::collections::HashMap;
use std::time::Duration;

use crate::model::{ChannelId, Kind, Wire};

/// What a subscription covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Channel(ChannelId),
    /// Every symbol of a kind, now and later.
    Wildcard(Kind),
}

/// A subscribe request as the hub sees it; channel names were already resolved.
#[derive(Debug, Clone, Default)]
pub struct Subscribe {
    pub targets: Vec<Target>,
    /// Resume points: the last `seq` the client saw, per concrete channel.
    pub from: HashMap<ChannelId, u64>,
    pub throttle: Option<Duration>,
    /// Snapshot depth; `None` takes the configured default. Naming it also asks for a fresh
    /// snapshot of channels the connection already receives.
    pub snapshot: Option<usize>,
    /// The resume points belong to another server run: answer each with a reset snapshot.
    pub stale_from: bool,
    /// The `book:` channels of this subscribe are served from views (a narrower depth or a
    /// throttle), not as the ring's whole-view deltas: their resume points get a reset
    /// snapshot of the view (the ring cannot replay a narrower copy).
    pub book_from_view: bool,
    /// Missed events read from older history than the ring (an edge's stream, or for a
    /// `from_ts` replay the store), per channel: the events after the client's `from` up to
    /// the `seq` given, where the ring's replay takes over.
    pub prefetched: HashMap<ChannelId, (u64, Vec<Wire>)>,
    /// Replay from this time (ns since the epoch) every concrete channel not in `from`, then
    /// a `replay_done` per channel (`catch_up.rs`).
    pub from_ts: Option<i64>,
}
