//! Rooms: who is subscribed to which channel, and fan-out of sequenced events to them.
//!
//! The [`Hub`] owns every channel's ring and subscriber list behind one lock, so that a
//! subscription's snapshot (or replay) and its registration happen atomically with respect to
//! publishing: a subscriber sees the snapshot with `seq = S` and then exactly the events after `S`.
//! Fan-out only pushes `Bytes` handles into per-connection [`Outbox`]es and never waits on a
//! socket; writers are woken once per published batch, after the lock is released.
//!
//! Events reach the hub through [`EventSink`], the one seam between ingest and rooms: a broker
//! (NATS, say) can sit behind it without sessions noticing.

pub mod outbox;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::model::{ChannelId, Event, Kind, SymbolId, Tick};
use crate::ring::Ring;
use crate::telemetry::metrics::Metrics;

pub use outbox::{Item, Outbox, OutboxLimits, OutboxStats};

/// Where sequenced events go after ingest. Implemented by [`Hub`]; a broker-backed
/// implementation forwards to other nodes, whose hubs receive the same events.
pub trait EventSink: Send + Sync {
    /// Publishes events in `seq` order per channel.
    fn publish(&self, events: &[Event]);
}

/// A connection's identity inside the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

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
    /// Snapshot depth; `None` takes the configured default.
    pub snapshot: Option<usize>,
    /// The resume points belong to another server run: answer each with a reset snapshot.
    pub stale_from: bool,
}

/// What a subscriber is sent instead of replayed events when it joins a channel.
#[derive(Debug)]
pub struct SnapshotView<'a> {
    pub channel: ChannelId,
    /// `seq` of the newest event the snapshot holds (0 for a channel without events).
    pub seq: u64,
    /// Held events, oldest first.
    pub events: Vec<&'a Event>,
    /// True when the client asked to resume from a point the ring no longer holds.
    pub reset: bool,
}

/// Encodes a snapshot message; supplied by the wire layer so rooms know no JSON.
pub type SnapshotEncoder<'a> = &'a dyn Fn(&SnapshotView<'_>) -> Bytes;

/// Ring and room sizing.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    pub ring_capacity: usize,
    pub snapshot_depth: usize,
}

#[derive(Debug)]
pub struct Hub {
    // One lock for all channels: publishing is a single writer (the ingest thread) and every
    // critical section is short and never awaits. Sharding by symbol is the next step if the
    // lock ever shows up in a profile.
    state: Mutex<State>,
    config: HubConfig,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    channels: HashMap<ChannelId, Channel>,
    /// Concrete channels per kind, in creation order, for wildcard snapshots.
    by_kind: [Vec<SymbolId>; Kind::COUNT],
    wildcard: [Vec<Subscriber>; Kind::COUNT],
    conns: HashMap<ConnId, ConnSubs>,
}

#[derive(Debug)]
struct Channel {
    ring: Ring<Event>,
    subscribers: Vec<Subscriber>,
}

#[derive(Debug, Clone)]
struct Subscriber {
    conn: ConnId,
    outbox: Arc<Outbox>,
    throttle: Option<Duration>,
}

/// One connection's subscriptions. A concrete channel whose kind the connection also has as a
/// wildcard is "covered": remembered here, but not registered in the channel, so the connection
/// never receives an event twice.
#[derive(Debug)]
struct ConnSubs {
    outbox: Arc<Outbox>,
    concrete: HashMap<ChannelId, Option<Duration>>,
    wildcard: [Option<Option<Duration>>; Kind::COUNT],
}

impl ConnSubs {
    fn count(&self) -> usize {
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
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// How many subscriptions (concrete or wildcard) the connection would hold after adding
    /// `targets`; the hub is the one record of what a connection holds.
    pub fn count_after(&self, conn: ConnId, targets: &[Target]) -> usize {
        let st = self.lock();
        let Some(subs) = st.conns.get(&conn) else {
            return targets.len();
        };
        let new = targets
            .iter()
            .filter(|t| match **t {
                Target::Channel(ch) => !subs.concrete.contains_key(&ch),
                Target::Wildcard(k) => subs.wildcard[k.index()].is_none(),
            })
            .count();
        subs.count() + new
    }

    /// Subscribes `conn`: for each target, queues a snapshot (or the replay of missed events)
    /// into `outbox` and registers it for live events, atomically with respect to publishing.
    pub fn subscribe(
        &self,
        conn: ConnId,
        outbox: &Arc<Outbox>,
        req: &Subscribe,
        encode: SnapshotEncoder<'_>,
    ) {
        let depth = req.snapshot.unwrap_or(self.config.snapshot_depth);
        let mut st = self.lock();
        let st = &mut *st;
        let subs = st.conns.entry(conn).or_insert_with(|| ConnSubs {
            outbox: outbox.clone(),
            concrete: HashMap::new(),
            wildcard: [None; Kind::COUNT],
        });
        for target in &req.targets {
            match *target {
                Target::Channel(ch) => {
                    let covered = subs.wildcard[ch.kind.index()].is_some();
                    subs.concrete.insert(ch, req.throttle);
                    // A known symbol with no event on this kind yet gets an empty snapshot and
                    // its channel now, so the first event is delivered.
                    let channel = st.channels.entry(ch).or_insert_with(|| {
                        st.by_kind[ch.kind.index()].push(ch.symbol);
                        Channel::new(self.config.ring_capacity)
                    });
                    Self::join(channel, ch, conn, outbox, req, depth, covered, encode);
                }
                Target::Wildcard(kind) => {
                    subs.wildcard[kind.index()] = Some(req.throttle);
                    for &symbol in &st.by_kind[kind.index()] {
                        let ch = ChannelId { kind, symbol };
                        if let Some(channel) = st.channels.get_mut(&ch) {
                            // Covered concrete subscriptions leave the channel: the wildcard
                            // delivers their events from now on.
                            channel.subscribers.retain(|s| s.conn != conn);
                            Self::join(channel, ch, conn, outbox, req, depth, true, encode);
                        }
                    }
                    let room = &mut st.wildcard[kind.index()];
                    room.retain(|s| s.conn != conn);
                    room.push(Subscriber {
                        conn,
                        outbox: outbox.clone(),
                        throttle: req.throttle,
                    });
                }
            }
        }
        self.metrics
            .subscriptions
            .store(Self::total_subscriptions(st), Ordering::Relaxed);
    }

    /// Queues the snapshot or replay for one channel and, unless a wildcard covers it, registers
    /// the subscriber.
    #[allow(clippy::too_many_arguments)]
    fn join(
        channel: &mut Channel,
        ch: ChannelId,
        conn: ConnId,
        outbox: &Arc<Outbox>,
        req: &Subscribe,
        depth: usize,
        covered: bool,
        encode: SnapshotEncoder<'_>,
    ) {
        // A resume point is honoured only if it belongs to this server run and every event
        // after it is still held; otherwise the client gets a snapshot marked `reset`.
        let from = req.from.get(&ch).copied();
        let replay = from
            .filter(|_| !req.stale_from)
            .and_then(|f| channel.ring.replay(f).ok());
        match replay {
            Some(events) => {
                let now = Instant::now();
                for e in events {
                    outbox.push_event(ch, &e.bytes, None, now);
                }
                outbox.wake();
            }
            None => {
                let view = SnapshotView {
                    channel: ch,
                    seq: channel.ring.last_seq(),
                    events: channel.ring.snapshot(depth).collect(),
                    reset: from.is_some(),
                };
                outbox.push_control(encode(&view));
            }
        }
        if !covered {
            channel.subscribers.retain(|s| s.conn != conn);
            channel.subscribers.push(Subscriber {
                conn,
                outbox: outbox.clone(),
                throttle: req.throttle,
            });
        }
    }

    /// Removes subscriptions; returns the targets that were actually subscribed.
    pub fn unsubscribe(&self, conn: ConnId, targets: &[Target]) -> Vec<Target> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(subs) = st.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        let mut forgotten = HashSet::new();
        for target in targets {
            match *target {
                Target::Channel(ch) => {
                    if subs.concrete.remove(&ch).is_none() {
                        continue;
                    }
                    removed.push(*target);
                    forgotten.insert(ch);
                    if let Some(channel) = st.channels.get_mut(&ch) {
                        channel.subscribers.retain(|s| s.conn != conn);
                    }
                }
                Target::Wildcard(kind) => {
                    if subs.wildcard[kind.index()].take().is_none() {
                        continue;
                    }
                    removed.push(*target);
                    st.wildcard[kind.index()].retain(|s| s.conn != conn);
                    // Concrete subscriptions the wildcard covered take over, with no gap.
                    for (&ch, &throttle) in subs.concrete.iter().filter(|(c, _)| c.kind == kind) {
                        if let Some(channel) = st.channels.get_mut(&ch) {
                            channel.subscribers.push(Subscriber {
                                conn,
                                outbox: subs.outbox.clone(),
                                throttle,
                            });
                        }
                    }
                    for &symbol in &st.by_kind[kind.index()] {
                        let ch = ChannelId { kind, symbol };
                        if !subs.concrete.contains_key(&ch) {
                            forgotten.insert(ch);
                        }
                    }
                }
            }
        }
        subs.outbox.forget(&forgotten);
        if subs.count() == 0 {
            st.conns.remove(&conn);
        }
        self.metrics
            .subscriptions
            .store(Self::total_subscriptions(st), Ordering::Relaxed);
        removed
    }

    /// Drops every subscription of a closing connection.
    pub fn disconnect(&self, conn: ConnId) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(subs) = st.conns.remove(&conn) else {
            return;
        };
        for ch in subs.concrete.keys() {
            if let Some(channel) = st.channels.get_mut(ch) {
                channel.subscribers.retain(|s| s.conn != conn);
            }
        }
        for (k, w) in subs.wildcard.iter().enumerate() {
            if w.is_some() {
                st.wildcard[k].retain(|s| s.conn != conn);
            }
        }
        self.metrics
            .subscriptions
            .store(Self::total_subscriptions(st), Ordering::Relaxed);
    }

    /// The newest tick of a symbol, if any.
    pub fn latest_tick(&self, symbol: SymbolId) -> Option<Tick> {
        let st = self.lock();
        let ch = ChannelId {
            kind: Kind::Ticks,
            symbol,
        };
        st.channels
            .get(&ch)
            .and_then(|c| c.ring.latest())
            .and_then(|e| match e.payload {
                crate::model::Payload::Tick(t) => Some(t),
                _ => None,
            })
    }

    /// Copies the events of `ch` after `from` that are still held, and how many were lost.
    pub fn events_since(&self, ch: ChannelId, from: u64) -> (Vec<Event>, u64) {
        let st = self.lock();
        match st.channels.get(&ch) {
            Some(c) => {
                let (events, missed) = c.ring.since(from);
                (events.cloned().collect(), missed)
            }
            None => (Vec::new(), 0),
        }
    }

    /// New ticks of every symbol since the caller's cursors, under one lock acquisition; the
    /// cursors advance. Returns (symbol, ticks, ticks lost to ring eviction).
    pub fn take_new_ticks(
        &self,
        cursors: &mut HashMap<SymbolId, u64>,
    ) -> Vec<(SymbolId, Vec<Tick>, u64)> {
        let st = self.lock();
        let mut out = Vec::new();
        for &symbol in &st.by_kind[Kind::Ticks.index()] {
            let ch = ChannelId {
                kind: Kind::Ticks,
                symbol,
            };
            let Some(channel) = st.channels.get(&ch) else {
                continue;
            };
            let cursor = cursors.entry(symbol).or_insert(0);
            if channel.ring.last_seq() == *cursor {
                continue;
            }
            let (events, missed) = channel.ring.since(*cursor);
            let ticks: Vec<Tick> = events
                .filter_map(|e| match e.payload {
                    crate::model::Payload::Tick(t) => Some(t),
                    _ => None,
                })
                .collect();
            *cursor = channel.ring.last_seq();
            out.push((symbol, ticks, missed));
        }
        out
    }

    /// `seq` of the newest event of `ch` (0 when it has none).
    pub fn last_seq(&self, ch: ChannelId) -> u64 {
        self.lock()
            .channels
            .get(&ch)
            .map_or(0, |c| c.ring.last_seq())
    }

    fn total_subscriptions(st: &State) -> u64 {
        st.conns.values().map(|c| c.count() as u64).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
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
        {
            let mut st = self.lock();
            let st = &mut *st;
            // Events of this batch per kind, for wildcard subscribers (pushed below, one lock
            // per subscriber per batch instead of one per event).
            let mut by_kind: [Vec<(ChannelId, &Bytes)>; Kind::COUNT] = Default::default();
            for event in events {
                let ch = event.channel;
                let channel = st.channels.entry(ch).or_insert_with(|| {
                    st.by_kind[ch.kind.index()].push(ch.symbol);
                    Channel::new(self.config.ring_capacity)
                });
                if event.seq != channel.ring.last_seq() + 1 {
                    tracing::error!(channel = ?ch, seq = event.seq, last = channel.ring.last_seq(),
                        "out-of-order event dropped");
                    continue;
                }
                channel.ring.push(event.clone());
                for sub in &channel.subscribers {
                    if sub.outbox.push_event(ch, &event.bytes, sub.throttle, now) {
                        wake.push(sub.outbox.clone());
                    }
                }
                delivered += channel.subscribers.len() as u64;
                if !st.wildcard[ch.kind.index()].is_empty() {
                    by_kind[ch.kind.index()].push((ch, &event.bytes));
                }
            }
            for (kind, batch) in by_kind.iter().enumerate() {
                if batch.is_empty() {
                    continue;
                }
                for sub in &st.wildcard[kind] {
                    if sub
                        .outbox
                        .push_events(batch.iter().copied(), sub.throttle, now)
                    {
                        wake.push(sub.outbox.clone());
                    }
                }
                delivered += (batch.len() * st.wildcard[kind].len()) as u64;
            }
        }
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

// === impl Channel ===

impl Channel {
    fn new(capacity: usize) -> Self {
        Self {
            ring: Ring::new(capacity),
            subscribers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::model::{Payload, Side};

    fn ch(kind: Kind, s: u32) -> ChannelId {
        ChannelId {
            kind,
            symbol: SymbolId(s),
        }
    }

    fn tick(channel: ChannelId, seq: u64) -> Event {
        Event {
            channel,
            seq,
            ts: seq as i64,
            payload: Payload::Tick(Tick {
                symbol: channel.symbol,
                price: 1.0,
                size: 1.0,
                side: Side::Buy,
                exchange_ts: 0,
                ts: 0,
            }),
            bytes: Bytes::from(format!("{}#{}", channel.symbol.0, seq)),
        }
    }

    fn encode(v: &SnapshotView<'_>) -> Bytes {
        let seqs: Vec<String> = v.events.iter().map(|e| e.seq.to_string()).collect();
        Bytes::from(format!(
            "snap {}@{} [{}]{}",
            v.channel.symbol.0,
            v.seq,
            seqs.join(","),
            if v.reset { " reset" } else { "" }
        ))
    }

    fn hub() -> Hub {
        Hub::new(
            HubConfig {
                ring_capacity: 4,
                snapshot_depth: 2,
            },
            Arc::new(Metrics::default()),
        )
    }

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(OutboxLimits {
            max_events: 1000,
            max_bytes: 1 << 20,
        }))
    }

    fn drain(o: &Outbox) -> Vec<String> {
        let mut out = VecDeque::new();
        o.drain(Instant::now(), &mut out);
        out.iter()
            .map(|i| String::from_utf8_lossy(i.bytes()).into_owned())
            .collect()
    }

    fn sub(targets: Vec<Target>) -> Subscribe {
        Subscribe {
            targets,
            ..Subscribe::default()
        }
    }

    #[test]
    fn snapshot_then_contiguous_live_events() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        h.publish(&[tick(a, 1), tick(a, 2), tick(a, 3)]);
        let (c, o) = (h.next_conn_id(), outbox());
        h.subscribe(c, &o, &sub(vec![Target::Channel(a)]), &encode);
        h.publish(&[tick(a, 4)]);
        assert_eq!(drain(&o), vec!["snap 0@3 [2,3]", "0#4"]);
    }

    #[test]
    fn resume_replays_or_resets() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        h.publish(&(1..=6).map(|s| tick(a, s)).collect::<Vec<_>>());
        let cases = [
            (4, vec!["0#5", "0#6"]),
            (1, vec!["snap 0@6 [5,6] reset"]),
            (9, vec!["snap 0@6 [5,6] reset"]),
        ];
        for (from, want) in cases {
            let (c, o) = (h.next_conn_id(), outbox());
            let mut req = sub(vec![Target::Channel(a)]);
            req.from.insert(a, from);
            h.subscribe(c, &o, &req, &encode);
            assert_eq!(drain(&o), want, "from {from}");
        }
    }

    #[test]
    fn wildcard_covers_new_symbols_without_duplicates() {
        let h = hub();
        let (a, b) = (ch(Kind::Ticks, 0), ch(Kind::Ticks, 1));
        h.publish(&[tick(a, 1)]);
        let (c, o) = (h.next_conn_id(), outbox());
        h.subscribe(c, &o, &sub(vec![Target::Channel(a)]), &encode);
        h.subscribe(c, &o, &sub(vec![Target::Wildcard(Kind::Ticks)]), &encode);
        h.publish(&[tick(a, 2), tick(b, 1)]);
        assert_eq!(
            drain(&o),
            vec!["snap 0@1 [1]", "snap 0@1 [1]", "0#2", "1#1"]
        );
        // Dropping the wildcard hands ticks:A back to its concrete subscription without a gap.
        h.unsubscribe(c, &[Target::Wildcard(Kind::Ticks)]);
        h.publish(&[tick(a, 3), tick(b, 2)]);
        assert_eq!(drain(&o), vec!["0#3"]);
        assert_eq!(h.count_after(c, &[]), 1);
    }

    #[test]
    fn unsubscribe_and_disconnect_stop_delivery() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        let (c, o) = (h.next_conn_id(), outbox());
        h.subscribe(c, &o, &sub(vec![Target::Channel(a)]), &encode);
        assert_eq!(drain(&o), vec!["snap 0@0 []"]);
        assert_eq!(
            h.unsubscribe(c, &[Target::Channel(a), Target::Wildcard(Kind::Ticks)]),
            vec![Target::Channel(a)]
        );
        h.publish(&[tick(a, 1)]);
        assert!(drain(&o).is_empty());
        h.subscribe(c, &o, &sub(vec![Target::Wildcard(Kind::Ticks)]), &encode);
        h.disconnect(c);
        h.publish(&[tick(a, 2)]);
        assert_eq!(drain(&o), vec!["snap 0@1 [1]"]);
        assert_eq!(h.count_after(c, &[]), 0);
    }

    #[test]
    fn out_of_order_events_are_refused() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        h.publish(&[tick(a, 1), tick(a, 3)]);
        assert_eq!(h.last_seq(a), 1);
    }
}
