//! Subscriptions: what a connection asks for, and how the hub registers it.
//!
//! Each target is answered with a snapshot (or the replay of the events a resuming client
//! missed) and registered for live events under the hub's one lock, so a subscriber sees the
//! snapshot with `seq = S` and then exactly the events after `S`. A connection's wildcard on a
//! kind "covers" its concrete channels of that kind: they are remembered but not registered in
//! the channel, so no event is delivered twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Outbox;
use super::hub::{Channel, ConnId, ConnSubs, Hub, State, Subscriber};
use crate::model::{ChannelId, Event, Kind};

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

// === impl Hub: subscriptions ===

impl Hub {
    /// How many subscriptions (concrete or wildcard) the connection would hold after adding
    /// `targets`; the hub is the one record of what a connection holds.
    pub(crate) fn count_after(&self, conn: ConnId, targets: &[Target]) -> usize {
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
    pub(crate) fn subscribe(
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
    pub(crate) fn unsubscribe(&self, conn: ConnId, targets: &[Target]) -> Vec<Target> {
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
    pub(crate) fn disconnect(&self, conn: ConnId) {
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

    fn total_subscriptions(st: &State) -> u64 {
        st.conns.values().map(|c| c.count() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::EventSink;
    use crate::rooms::fixtures::*;

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
}
