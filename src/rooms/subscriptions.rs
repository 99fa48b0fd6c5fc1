//! Subscriptions: what a connection asks for, and how the hub registers it.
//!
//! Each target is answered with a snapshot (or the replay of the events a resuming client
//! missed) and registered for live events under the hub's one lock, so a subscriber sees the
//! snapshot with `seq = S` and then exactly the events after `S`. A connection's wildcard on a
//! kind "covers" its concrete channels of that kind: they are remembered but not registered in
//! the channel, so no event is delivered twice.
//!
//! Bounded by construction: under the lock the hub only takes `Wire` handles from the rings,
//! and never more than the connection's held budget ([`Outbox::held_room`]) allows, shared out
//! over the channels the op covers. A snapshot holds the newest events that fit its share; a
//! replay that does not fit is answered with a `reset` snapshot instead, never cut short. A
//! channel the connection already receives gets no new snapshot unless the op asks for one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Outbox;
use super::catch_up::{Budget, catch_up};
use super::conn::{ConnId, Subscriber};
use super::hub::{Channel, ConnSubs, Hub};
use super::outbox::{HELD_ITEM_OVERHEAD, Item};
use super::request::{Subscribe, Target};
use crate::model::{ChannelId, Kind};

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
    pub(crate) fn subscribe(&self, conn: ConnId, outbox: &Arc<Outbox>, req: &Subscribe) {
        let depth = req.snapshot.unwrap_or(self.config.snapshot_depth);
        // A portfolio, ticker or bbo event is the whole state: its snapshot is the latest one.
        let kind_depth = |kind: Kind| match (kind.is_whole_state(), req.snapshot) {
            (true, None) => 1,
            _ => depth,
        };
        let mut held: Vec<Item> = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            let subs = st.conns.entry(conn).or_insert_with(|| ConnSubs {
                outbox: outbox.clone(),
                concrete: HashMap::new(),
                wildcard: [None; Kind::COUNT],
            });
            let before = subs.count();
            // Which channels get a snapshot or replay; each is charged its overhead up front,
            // so the envelopes always fit and the shares only bound the data.
            let mut wanted = Self::wanted(&st.by_kind, subs, req);
            let room = outbox.held_room();
            let mut budget = Budget::new(
                room.saturating_sub(wanted.len() * HELD_ITEM_OVERHEAD),
                wanted.len(),
            );
            for target in &req.targets {
                match *target {
                    Target::Channel(ch) => {
                        let covered = subs.wildcard[ch.kind.index()].is_some();
                        // A known symbol with no event on this kind yet gets an empty snapshot
                        // and its channel now, so the first event is delivered.
                        let channel = st
                            .channels
                            .entry(ch)
                            .or_insert_with(|| Channel::open(&mut st.by_kind, ch, &self.config));
                        let depth = kind_depth(ch.kind);
                        let live = !wanted.remove(&ch)
                            || catch_up(channel, ch, req, depth, &mut budget, &mut held);
                        if !live {
                            // A replay from a time that the budget stopped short: the client
                            // continues with `from`; live events now would leave a gap.
                            subs.concrete.remove(&ch);
                            channel.subscribers.remove(conn);
                            continue;
                        }
                        subs.concrete.insert(ch, req.throttle);
                        if !covered {
                            Self::register(channel, conn, outbox, req.throttle);
                        }
                    }
                    Target::Wildcard(kind) => {
                        subs.wildcard[kind.index()] = Some(req.throttle);
                        for &symbol in &st.by_kind[kind.index()] {
                            let ch = ChannelId { kind, symbol };
                            if let Some(channel) = st.channels.get_mut(&ch) {
                                // Covered concrete subscriptions leave the channel: the wildcard
                                // delivers their events from now on.
                                channel.subscribers.remove(conn);
                                if wanted.remove(&ch) {
                                    // `from_ts` takes concrete channels only: always live.
                                    let depth = kind_depth(kind);
                                    catch_up(channel, ch, req, depth, &mut budget, &mut held);
                                }
                            }
                        }
                        let room = &mut st.wildcard[kind.index()];
                        room.remove(conn);
                        room.insert(Subscriber {
                            conn,
                            outbox: outbox.clone(),
                            throttle: req.throttle,
                        });
                    }
                }
            }
            let after = subs.count();
            // Queued under the hub lock, so nothing published after this subscribe can get
            // ahead of its snapshots in the outbox.
            outbox.push_held(held.drain(..));
            st.total_subscriptions = st.total_subscriptions + after as u64 - before as u64;
            self.metrics
                .subscriptions
                .store(st.total_subscriptions, Ordering::Relaxed);
        }
        outbox.wake();
    }

    /// The concrete channels this subscribe answers with a snapshot or replay: every channel it
    /// covers that the connection does not receive yet, and those it does when the op names
    /// `snapshot` (or a `from` for them).
    fn wanted(
        by_kind: &[Vec<crate::model::SymbolId>; Kind::COUNT],
        subs: &ConnSubs,
        req: &Subscribe,
    ) -> HashSet<ChannelId> {
        let receives = |ch: &ChannelId| {
            subs.concrete.contains_key(ch) || subs.wildcard[ch.kind.index()].is_some()
        };
        let asked = |ch: &ChannelId| {
            req.snapshot.is_some() || req.from_ts.is_some() || req.from.contains_key(ch)
        };
        let mut wanted = HashSet::new();
        for target in &req.targets {
            match *target {
                Target::Channel(ch) => {
                    if !receives(&ch) || asked(&ch) {
                        wanted.insert(ch);
                    }
                }
                Target::Wildcard(kind) => {
                    for &symbol in &by_kind[kind.index()] {
                        let ch = ChannelId { kind, symbol };
                        if !receives(&ch) || asked(&ch) {
                            wanted.insert(ch);
                        }
                    }
                }
            }
        }
        wanted
    }

    /// Registers the subscriber in the channel (once).
    fn register(
        channel: &mut Channel,
        conn: ConnId,
        outbox: &Arc<Outbox>,
        throttle: Option<Duration>,
    ) {
        channel.subscribers.remove(conn);
        channel.subscribers.insert(Subscriber {
            conn,
            outbox: outbox.clone(),
            throttle,
        });
    }

    /// What the connection holds: its concrete channels and wildcards.
    pub(crate) fn subscriptions_of(&self, conn: ConnId) -> Vec<Target> {
        let st = self.lock();
        let Some(subs) = st.conns.get(&conn) else {
            return Vec::new();
        };
        let wildcards = Kind::ALL
            .into_iter()
            .filter(|k| subs.wildcard[k.index()].is_some())
            .map(Target::Wildcard);
        subs.concrete
            .keys()
            .map(|&ch| Target::Channel(ch))
            .chain(wildcards)
            .collect()
    }

    /// Removes subscriptions; returns the targets that were actually subscribed.
    pub(crate) fn unsubscribe(&self, conn: ConnId, targets: &[Target]) -> Vec<Target> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(subs) = st.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let before = subs.count();
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
                        channel.subscribers.remove(conn);
                    }
                }
                Target::Wildcard(kind) => {
                    if subs.wildcard[kind.index()].take().is_none() {
                        continue;
                    }
                    removed.push(*target);
                    st.wildcard[kind.index()].remove(conn);
                    // Concrete subscriptions the wildcard covered take over, with no gap.
                    for (&ch, &throttle) in subs.concrete.iter().filter(|(c, _)| c.kind == kind) {
                        if let Some(channel) = st.channels.get_mut(&ch) {
                            channel.subscribers.insert(Subscriber {
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
        let after = subs.count();
        if after == 0 {
            st.conns.remove(&conn);
        }
        st.total_subscriptions -= (before - after) as u64;
        self.metrics
            .subscriptions
            .store(st.total_subscriptions, Ordering::Relaxed);
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
                channel.subscribers.remove(conn);
            }
        }
        for (k, w) in subs.wildcard.iter().enumerate() {
            if w.is_some() {
                st.wildcard[k].remove(conn);
            }
        }
        st.total_subscriptions -= subs.count() as u64;
        self.metrics
            .subscriptions
            .store(st.total_subscriptions, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::EventSink;
    use crate::rooms::fixtures::*;
    use crate::rooms::outbox::HELD_ITEM_OVERHEAD;

    #[test]
    fn snapshot_then_contiguous_live_events() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        h.publish(&[tick(a, 1), tick(a, 2), tick(a, 3)]);
        let (c, o) = (h.next_conn_id(), outbox());
        h.subscribe(c, &o, &sub(vec![Target::Channel(a)]));
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
            h.subscribe(c, &o, &req);
            assert_eq!(drain(&o), want, "from {from}");
        }
    }

    #[test]
    fn wildcard_covers_new_symbols_without_duplicates() {
        let h = hub();
        let (a, b) = (ch(Kind::Ticks, 0), ch(Kind::Ticks, 1));
        h.publish(&[tick(a, 1)]);
        let (c, o) = (h.next_conn_id(), outbox());
        h.subscribe(c, &o, &sub(vec![Target::Channel(a)]));
        h.subscribe(c, &o, &sub(vec![Target::Wildcard(Kind::Ticks)]));
        h.publish(&[tick(a, 2), tick(b, 1)]);
        // ticks:A is already held: the wildcard sends no second snapshot of it.
        assert_eq!(drain(&o), vec!["snap 0@1 [1]", "0#2", "1#1"]);
        // Dropping the wildcard hands ticks:A back to its concrete subscription without a gap.
        h.unsubscribe(c, &[Target::Wildcard(Kind::Ticks)]);
        h.publish(&[tick(a, 3), tick(b, 2)]);
        assert_eq!(drain(&o), vec!["0#3"]);
        assert_eq!(h.count_after(c, &[]), 1);
    }

    #[test]
    fn resubscribing_a_held_channel_sends_a_snapshot_only_when_asked() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        h.publish(&[tick(a, 1), tick(a, 2), tick(a, 3)]);
        let (c, o) = (h.next_conn_id(), outbox());
        h.subscribe(c, &o, &sub(vec![Target::Wildcard(Kind::Ticks)]));
        assert_eq!(drain(&o), vec!["snap 0@3 [2,3]"]);
        // Again, and a concrete channel the wildcard already covers: nothing new.
        h.subscribe(c, &o, &sub(vec![Target::Wildcard(Kind::Ticks)]));
        h.subscribe(c, &o, &sub(vec![Target::Channel(a)]));
        assert!(drain(&o).is_empty());
        // Naming `snapshot` asks for a fresh one; `from` asks for the replay.
        let mut req = sub(vec![Target::Channel(a)]);
        req.snapshot = Some(1);
        h.subscribe(c, &o, &req);
        assert_eq!(drain(&o), vec!["snap 0@3 [3]"]);
        let mut req = sub(vec![Target::Channel(a)]);
        req.from.insert(a, 2);
        h.subscribe(c, &o, &req);
        assert_eq!(drain(&o), vec!["0#3"]);
        // Held subscriptions were counted once each.
        assert_eq!(h.count_after(c, &[]), 2);
        assert_eq!(h.metrics.subscriptions.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn snapshots_share_the_held_budget_and_oversized_replays_reset() {
        let h = hub();
        let (a, b) = (ch(Kind::Ticks, 0), ch(Kind::Ticks, 1));
        h.publish(
            &(1..=4)
                .flat_map(|s| [tick(a, s), tick(b, s)])
                .collect::<Vec<_>>(),
        );
        // Each event is 3 bytes plus a separator. Room for two envelopes and 10 bytes of data:
        // a gets 5 (one event), b the 5 left plus what a left unused (one event).
        let (c, o) = (
            h.next_conn_id(),
            outbox_holding(2 * HELD_ITEM_OVERHEAD + 10),
        );
        let mut req = sub(vec![Target::Wildcard(Kind::Ticks)]);
        req.snapshot = Some(4);
        h.subscribe(c, &o, &req);
        assert_eq!(drain(&o), vec!["snap 0@4 [4]", "snap 1@4 [4]"]);
        // A replay of three events (12 bytes) does not fit 10: a reset snapshot, never a
        // replay cut short.
        let (c, o) = (h.next_conn_id(), outbox_holding(HELD_ITEM_OVERHEAD + 10));
        let mut req = sub(vec![Target::Channel(a)]);
        req.from.insert(a, 1);
        req.snapshot = Some(4);
        h.subscribe(c, &o, &req);
        assert_eq!(drain(&o), vec!["snap 0@4 [3,4] reset"]);
        // Two events (8 bytes) fit: replayed exactly. Live events past the outbox bound (4)
        // conflate, visibly (5..7 missing before 8); the replay does not.
        let mut req = sub(vec![Target::Channel(a)]);
        req.from.insert(a, 2);
        h.subscribe(c, &o, &req);
        h.publish(&(5..=9).map(|s| tick(a, s)).collect::<Vec<_>>());
        assert_eq!(drain(&o), vec!["0#3", "0#4", "0#8", "0#9"]);
    }

    #[test]
    fn a_full_held_budget_leaves_snapshots_empty_but_exact() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        h.publish(&[tick(a, 1), tick(a, 2)]);
        let (c, o) = (h.next_conn_id(), outbox_holding(HELD_ITEM_OVERHEAD + 8));
        h.subscribe(c, &o, &sub(vec![Target::Channel(a)]));
        // The first snapshot used the whole budget; until the writer drains, the next one
        // carries the right `seq` and no data.
        let mut req = sub(vec![Target::Channel(a)]);
        req.snapshot = Some(2);
        h.subscribe(c, &o, &req);
        assert_eq!(drain(&o), vec!["snap 0@2 [1,2]", "snap 0@2 []"]);
    }

    #[test]
    fn unsubscribe_and_disconnect_stop_delivery() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        let (c, o) = (h.next_conn_id(), outbox());
        h.subscribe(c, &o, &sub(vec![Target::Channel(a)]));
        assert_eq!(drain(&o), vec!["snap 0@0 []"]);
        assert_eq!(
            h.unsubscribe(c, &[Target::Channel(a), Target::Wildcard(Kind::Ticks)]),
            vec![Target::Channel(a)]
        );
        h.publish(&[tick(a, 1)]);
        assert!(drain(&o).is_empty());
        h.subscribe(c, &o, &sub(vec![Target::Wildcard(Kind::Ticks)]));
        h.disconnect(c);
        h.publish(&[tick(a, 2)]);
        assert_eq!(drain(&o), vec!["snap 0@1 [1]"]);
        assert_eq!(h.count_after(c, &[]), 0);
    }
}
