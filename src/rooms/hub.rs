//! The hub: every channel's ring and subscriber list behind one lock, and fan-out.
//!
//! Publishing, subscribing (`subscriptions.rs`) and the read-side queries (`read.rs`) all take
//! the same lock, [`Hub::lock`]: that is what makes a subscription's snapshot and registration
//! atomic with respect to publishing. Fan-out only pushes `Wire` handles into per-connection
//! [`Outbox`]es and never waits on a socket; writers are woken once per published batch, after
//! the lock is released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::backlog::Backlog;
use super::conn::ConnId;
use super::outbox::SharedBatch;
use super::room::Room;
use super::views::RecentViews;
use super::{EventSink, Outbox};
use crate::model::{BarInterval, ChannelId, Event, Kind, SymbolId, Wire};
use crate::ring::Ring;
use crate::telemetry::metrics::Metrics;

/// Ring and room sizing.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    pub ring_capacity: usize,
    /// Ring capacity of the bar channels above 1 m (`bars.5m` ... `bars.1d`): one ring per
    /// channel per symbol, and their events are rare and large-grained, so small rings.
    pub long_bar_ring_capacity: usize,
    pub snapshot_depth: usize,
    /// Ring capacity of each user's `portfolio` channel (whole states, not deltas).
    pub portfolio_ring_capacity: usize,
}

#[derive(Debug)]
pub struct Hub {
    // One lock for all channels: publishing is a single writer (the ingest thread) and every
    // critical section is short and never awaits. Sharding by symbol is the next step if the
    // lock ever shows up in a profile.
    state: Mutex<State>,
    pub(super) config: HubConfig,
    pub(super) metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    /// Ticks in the rings the pipeline has not read (see `backlog`).
    pub(super) backlog: Arc<Backlog>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) channels: HashMap<ChannelId, Channel>,
    /// Concrete channels per kind, in creation order, for wildcard snapshots.
    pub(super) by_kind: [Vec<SymbolId>; Kind::COUNT],
    pub(super) wildcard: [Room; Kind::COUNT],
    pub(super) conns: HashMap<ConnId, ConnSubs>,
    /// Subscriptions held by all connections, kept as they change (never recounted by walking
    /// `conns`).
    pub(super) total_subscriptions: u64,
}

#[derive(Debug)]
pub(super) struct Channel {
    pub(super) ring: Ring<Event>,
    pub(super) subscribers: Room,
    /// A `book` channel's views after its newest events (the newest is what its snapshots
    /// hold).
    pub(super) book: RecentViews,
}

/// One connection's subscriptions. A concrete channel whose kind the connection also has as a
/// wildcard is "covered": remembered here, but not registered in the channel, so the connection
/// never receives an event twice.
#[derive(Debug)]
pub(super) struct ConnSubs {
    pub(super) outbox: Arc<Outbox>,
    pub(super) concrete: HashMap<ChannelId, Option<Duration>>,
    pub(super) wildcard: [Option<Option<Duration>>; Kind::COUNT],
}

impl ConnSubs {
    pub(super) fn count(&self) -> usize {
        self.concrete.len() + self.wildcard.iter().filter(|w| w.is_some()).count()
    }
}

// === impl Hub ===

impl Hub {
    pub fn new(config: HubConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            config,
            metrics,
            next_conn: AtomicU64::new(1),
            backlog: Arc::new(Backlog::new(config.ring_capacity)),
        }
    }

    /// What the pipeline has not read yet; replay waits on it.
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation under this lock leaves the state consistent before it can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EventSink for Hub {
    fn publish(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut wake: Vec<Arc<Outbox>> = Vec::new();
        let mut delivered = 0u64;
        let mut ticks = 0u64;
        let mut held = RingsHeld::default();
        {
            let mut st = self.lock();
            let st = &mut *st;
            // Events of this batch per kind, for wildcard subscribers (pushed below, one lock
            // per subscriber per batch instead of one per event).
            let mut by_kind: [Vec<(ChannelId, &Wire)>; Kind::COUNT] = Default::default();
            for event in events {
                let ch = event.channel;
                let channel = st
                    .channels
                    .entry(ch)
                    .or_insert_with(|| Channel::open(&mut st.by_kind, ch, &self.config));
                let last = channel.ring.last_seq();
                if event.seq <= last {
                    tracing::error!(channel = ?ch, seq = event.seq, last,
                        "out-of-order event dropped");
                    continue;
                }
                if last != 0 && event.seq != last + 1 {
                    // Events lost before they reached this node (an edge whose stream dropped
                    // some): subscribers see the jump, the ring restarts (no hidden hole).
                    tracing::warn!(channel = ?ch, seq = event.seq, last, "seq jump");
                }
                let before = RingsHeld::of(&channel.ring);
                if ch.kind == Kind::Book {
                    // The view goes to the channel, not the ring: a few per channel, not one
                    // per held event.
                    channel.book.push(event.book.as_ref());
                    channel.ring.push(Event {
                        book: None,
                        ..event.clone()
                    });
                } else {
                    channel.ring.push(event.clone());
                }
                held.changed(before, RingsHeld::of(&channel.ring));
                ticks += u64::from(ch.kind == Kind::Ticks);
                for sub in &channel.subscribers {
                    if sub.outbox.push_event(ch, &event.wire, sub.throttle, now) {
                        wake.push(sub.outbox.clone());
                    }
                }
                delivered += channel.subscribers.len() as u64;
                if !st.wildcard[ch.kind.index()].is_empty() {
                    by_kind[ch.kind.index()].push((ch, &event.wire));
                }
            }
            for (kind, batch) in by_kind.iter().enumerate() {
                if batch.is_empty() {
                    continue;
                }
                // One shared handle for every wildcard subscriber of this kind (framed once by
                // the first writer), instead of one handle per event per subscriber.
                let shared = Arc::new(SharedBatch::new(
                    batch.iter().map(|(ch, w)| (*ch, (*w).clone())).collect(),
                ));
                for sub in &st.wildcard[kind] {
                    if sub.outbox.push_batch(&shared, sub.throttle, now) {
                        wake.push(sub.outbox.clone());
                    }
                }
                delivered += (batch.len() * st.wildcard[kind].len()) as u64;
            }
            // Under the lock, so the pipeline's read sees the count and the rings agree.
            self.backlog.published(ticks);
        }
        held.apply(&self.metrics);
        for outbox in &wake {
            outbox.wake();
        }
        self.metrics
            .events_published
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.metrics
            .events_fanned_out
            .fetch_add(delivered, Ordering::Relaxed);
    }
}

/// How the rings' held memory and events changed: summed over a batch under the lock, added to
/// the `tickcast_ring_bytes` and `tickcast_ring_events` gauges once.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RingsHeld {
    bytes: i64,
    events: i64,
}

impl RingsHeld {
    pub(super) fn of(ring: &Ring<Event>) -> Self {
        Self {
            bytes: ring.bytes() as i64,
            events: ring.len() as i64,
        }
    }

    pub(super) fn changed(&mut self, before: Self, after: Self) {
        self.bytes += after.bytes - before.bytes;
        self.events += after.events - before.events;
    }

    /// A ring dropped whole (a retired channel).
    pub(super) fn dropped(&mut self, ring: &Ring<Event>) {
        self.changed(Self::of(ring), Self::default());
    }

    pub(super) fn apply(self, metrics: &Metrics) {
        add(&metrics.ring_bytes, self.bytes);
        add(&metrics.ring_events, self.events);
    }
}

fn add(gauge: &AtomicU64, delta: i64) {
    if delta >= 0 {
        gauge.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        gauge.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

// === impl Channel ===

impl Channel {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            ring: Ring::new(capacity),
            subscribers: Room::default(),
            book: RecentViews::default(),
        }
    }

    /// A new channel `ch`, sized for its kind; a market channel is also listed for wildcard
    /// snapshots (a user's portfolio never is).
    pub(super) fn open(
        by_kind: &mut [Vec<SymbolId>; Kind::COUNT],
        ch: ChannelId,
        config: &HubConfig,
    ) -> Self {
        if ch.kind == Kind::Portfolio {
            return Self::new(config.portfolio_ring_capacity);
        }
        by_kind[ch.kind.index()].push(ch.symbol);
        match ch.kind {
            Kind::Bars(iv) if iv > BarInterval::M1 => Self::new(config.long_bar_ring_capacity),
            _ => Self::new(config.ring_capacity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Target;
    use crate::rooms::fixtures::*;

    #[test]
    fn old_events_are_refused_and_jumps_restart_the_ring() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        h.publish(&[tick(a, 1), tick(a, 1)]);
        assert_eq!(h.last_seq(a), 1);
        h.publish(&[tick(a, 3), tick(a, 2)]);
        assert_eq!(h.last_seq(a), 3);
        let (events, missed) = h.events_since(a, 1);
        assert_eq!((events.len(), missed), (1, 1));
    }

    #[test]
    fn the_ring_gauges_follow_what_the_rings_hold() {
        let h = hub(); // rings of 4
        let gauges = |h: &Hub| {
            (
                h.metrics.ring_bytes.load(Ordering::Relaxed),
                h.metrics.ring_events.load(Ordering::Relaxed),
            )
        };
        let sum = |h: &Hub| {
            let st = h.lock();
            let bytes: usize = st.channels.values().map(|c| c.ring.bytes()).sum();
            let events: usize = st.channels.values().map(|c| c.ring.len()).sum();
            (bytes as u64, events as u64)
        };
        assert_eq!(gauges(&h), (0, 0));
        let (a, b) = (ch(Kind::Ticks, 0), ch(Kind::Ticks, 1));
        h.publish(&[tick(a, 1), tick(b, 1), tick(a, 2)]);
        assert_eq!(gauges(&h).1, 3);
        assert_eq!(gauges(&h), sum(&h));
        let one = gauges(&h).0;
        assert!(one > 0);
        // Full rings plateau: more events evict as many.
        h.publish(&(3..=10).map(|s| tick(a, s)).collect::<Vec<_>>());
        let full = gauges(&h);
        assert_eq!(full.1, 4 + 1);
        assert_eq!(full, sum(&h));
        h.publish(&(11..=30).map(|s| tick(a, s)).collect::<Vec<_>>());
        assert_eq!(gauges(&h), sum(&h));
        assert_eq!(gauges(&h).1, full.1);
        // A retired channel gives its ring back.
        let p = ChannelId::portfolio(7);
        h.publish(&[tick(p, 1), tick(p, 2)]);
        assert_eq!(gauges(&h).1, full.1 + 2);
        assert!(h.retire(p));
        assert_eq!(gauges(&h), sum(&h));
        assert_eq!(gauges(&h).1, full.1);
    }

    #[test]
    fn fan_out_reaches_concrete_and_wildcard_subscribers_once_each() {
        let h = hub();
        let (a, b) = (ch(Kind::Ticks, 0), ch(Kind::Ticks, 1));
        let (c1, o1) = (h.next_conn_id(), outbox());
        let (c2, o2) = (h.next_conn_id(), outbox());
        h.subscribe(c1, &o1, &sub(vec![Target::Channel(a)]));
        h.subscribe(c2, &o2, &sub(vec![Target::Wildcard(Kind::Ticks)]));
        drain(&o1);
        drain(&o2);
        h.publish(&[tick(a, 1), tick(b, 1), tick(a, 2)]);
        assert_eq!(drain(&o1), vec!["0#1", "0#2"]);
        assert_eq!(drain(&o2), vec!["0#1", "1#1", "0#2"]);
        assert_eq!(h.metrics.events_published.load(Ordering::Relaxed), 3);
        // Two copies to the concrete subscriber, three to the wildcard one.
        assert_eq!(h.metrics.events_fanned_out.load(Ordering::Relaxed), 5);
    }
}
