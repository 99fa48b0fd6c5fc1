//! Rooms: who is subscribed to which channel, and fan-out of sequenced events to them.
//!
//! The [`Hub`] owns every channel's ring and subscriber list behind one lock, so that a
//! subscription's snapshot (or replay) and its registration happen atomically with respect to
//! publishing: a subscriber sees the snapshot with `seq = S` and then exactly the events after `S`.
//! Fan-out only pushes `Bytes` handles into per-connection [`Outbox`]es and never waits on a
//! socket; writers are woken once per published batch, after the lock is released. Snapshots
//! and replays are `Bytes` handles too, bounded per connection by the outbox's held budget, and
//! encoded by the writer outside every lock.
//!
//! `hub.rs` holds the hub's state and fan-out, `room.rs` a channel's subscribers (`conn.rs`: whom
//! they hold), `subscriptions.rs` subscribe, unsubscribe and
//! disconnect (`catch_up.rs`: what a subscribe sends before live events: snapshot, replay,
//! replay from a time), `read.rs` the read model REST and the pipeline query (latest tick, events since a
//! `seq`, new ticks since a cursor). All of them go through the hub's one lock.
//!
//! Events reach the hub through [`EventSink`], the one seam between ingest and rooms: a broker
//! (NATS, say) can sit behind it without sessions noticing.

mod backlog;
mod catch_up;
mod conn;
mod hub;
pub mod outbox;
mod read;
mod request;
mod room;
mod subscriptions;
mod views;

#[cfg(test)]
mod fixtures;

use crate::model::Event;

pub use backlog::Backlog;
pub use conn::ConnId;
pub use hub::{Hub, HubConfig};
pub use outbox::{
    BookSnapshot, HELD_ITEM_OVERHEAD, Item, Outbox, OutboxLimits, OutboxStats, ReplayDone, Snapshot,
};
pub use request::{Subscribe, Target};

/// Where sequenced events go after ingest. Implemented by [`Hub`]; a broker-backed
/// implementation forwards to other nodes, whose hubs receive the same events.
pub(crate) trait EventSink: Send + Sync {
    /// Publishes events in `seq` order per channel.
    fn publish(&self, events: &[Event]);
}

/// Publishes every batch to several sinks in order: the hub first (streaming comes before
/// persistence), then the recorder and, on an ingest node, the stream publisher.
pub(crate) struct Fanout(pub(crate) Vec<std::sync::Arc<dyn EventSink>>);

impl EventSink for Fanout {
    fn publish(&self, events: &[Event]) {
        for sink in &self.0 {
            sink.publish(events);
        }
    }
}
