//! Per-connection outbound queue: bounded, conflating, throttling.
//!
//! The hub pushes encoded events here under its lock (never blocking), the connection's writer
//! task drains everything queued in one go and sends it as one frame. A consumer that cannot keep
//! up makes the queue conflate (the newest event per channel wins, seen by the client as a `seq`
//! jump) instead of growing; one that stays behind is evicted by its writer.
//!
//! What cannot be conflated (replies, snapshots, replayed events) is "held": it has its own byte
//! budget, [`OutboxLimits::max_held_bytes`], which the hub reads before it queues snapshots or a
//! replay ([`Outbox::held_room`]), so no subscribe can queue more than that for one connection.
//! Snapshots are queued as handles of the ring's events ([`Snapshot`]) and encoded by the
//! writer, outside every lock. Events are queued as their [`Wire`] (every encoding); the writer
//! picks its connection's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::book::PublishedView;
use crate::model::{ChannelId, Encoding, Wire};

/// Bounds of one connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Queued events beyond which the queue conflates.
    pub max_events: usize,
    /// Queued bytes beyond which the queue conflates.
    pub max_bytes: usize,
    /// Snapshot and replay data a connection may have queued and not yet drained (see
    /// [`Outbox::held_room`]).
    pub max_held_bytes: usize,
}

/// Fixed cost charged per held item on top of its data (the snapshot's envelope, the handle).
pub const HELD_ITEM_OVERHEAD: usize = 64;

/// One queued frame part.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Replies and errors, in the connection's encoding: never conflated or dropped. Boxed, as
    /// snapshots are: rare next to events.
    Control(Box<Bytes>),
    /// A replayed event (a resume): never conflated or dropped.
    Replay { channel: ChannelId, wire: Wire },
    /// A channel event: may be conflated with a newer one of the same channel.
    Event { channel: ChannelId, wire: Wire },
    /// A channel's snapshot, encoded by the writer (rooms know no JSON); never conflated. Boxed:
    /// it is rare, and every other item fits in 16 bytes.
    Snapshot(Box<Snapshot>),
    /// The events of one kind from one published batch, shared by every wildcard subscriber
    /// that takes them whole: counted as its events, conflated as its events.
    Batch(Arc<SharedBatch>),
    /// The end of a channel's replay from a time (`replay_done`), encoded by the writer; held
    /// like a snapshot.
    ReplayDone(Box<ReplayDone>),
}

/// A channel's `replay_done`: the last `seq` replayed, and whether the budget stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayDone {
    pub channel: ChannelId,
    pub seq: u64,
    pub more: bool,
}

/// One published batch's events of one kind, for wildcard subscribers: pushed as one handle
/// per subscriber instead of one per event (no per-event reference counting on the fan-out
/// path), and framed once by the first writer that sends it whole ([`SharedBatch::frame`]);
/// every other writer sends the same frame bytes.
#[derive(Debug)]
pub struct SharedBatch {
    pub events: Vec<(ChannelId, Wire)>,
    /// Sum of the events' lengths ([`Wire::len`]).
    pub bytes: usize,
    /// The batch as one frame, per encoding.
    frames: [OnceLock<Bytes>; Encoding::COUNT],
}

impl SharedBatch {
    pub fn new(events: Vec<(ChannelId, Wire)>) -> Self {
        let bytes = events.iter().map(|(_, w)| w.len()).sum();
        Self {
            events,
            bytes,
            frames: Default::default(),
        }
    }

    /// The whole batch as one frame of `encoding`, built by `make` the first time (the writer
    /// knows the wire; rooms do not).
    pub fn frame(
        &self,
        encoding: Encoding,
        make: impl FnOnce(&[(ChannelId, Wire)]) -> Bytes,
    ) -> &Bytes {
        self.frames[encoding.index()].get_or_init(|| make(&self.events))
    }
}

impl PartialEq for SharedBatch {
    fn eq(&self, other: &Self) -> bool {
        self.events == other.events
    }
}

/// A snapshot as the hub takes it from a ring: handles on the stored encodings, no copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub channel: ChannelId,
    /// `seq` of the channel's newest event (0 for a channel without events).
    pub seq: u64,
    /// Held events, oldest first.
    pub events: Vec<Wire>,
    /// True when the client asked to resume from a point that cannot be served exactly.
    pub reset: bool,
    /// A `book` channel's snapshot: its view at `seq` (`events` is empty), which the writer
    /// sends as one `book` event with `reset`.
    pub book: Option<BookSnapshot>,
}

/// A book channel's view as a snapshot takes it: shared with the hub, never copied under its
/// lock, and cut by the writer to the levels that fit the connection's held budget.
#[derive(Debug, Clone, PartialEq)]
pub struct BookSnapshot {
    pub view: Arc<PublishedView>,
    /// Levels per side the snapshot may carry.
    pub max_levels: usize,
}

impl BookSnapshot {
    /// Levels the snapshot carries, both sides.
    pub fn levels(&self) -> usize {
        let v = &self.view.view;
        v.bids.len().min(self.max_levels) + v.asks.len().min(self.max_levels)
    }
}

/// What a book level costs in a snapshot, at most (`[price,size],` in JSON).
pub(crate) const BOOK_LEVEL_BYTES: usize = 48;

impl Snapshot {
    /// What this snapshot is charged against [`OutboxLimits::max_held_bytes`].
    pub(crate) fn held_len(&self) -> usize {
        let book = self
            .book
            .as_ref()
            .map_or(0, |b| b.levels() * BOOK_LEVEL_BYTES);
        HELD_ITEM_OVERHEAD + book + self.events.iter().map(|e| e.len() + 1).sum::<usize>()
    }
}

impl Item {
    /// Bytes charged to the queue: an event's or reply's encoding, a snapshot's data.
    pub(crate) fn len(&self) -> usize {
        match self {
            Item::Control(b) => b.len(),
            Item::Replay { wire: w, .. } | Item::Event { wire: w, .. } => w.len(),
            Item::Snapshot(s) => s.held_len(),
            Item::Batch(b) => b.bytes,
            Item::ReplayDone(_) => HELD_ITEM_OVERHEAD,
        }
    }
}

/// What a drain handed to the writer besides the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// When the next throttled event falls due, if one is pending.
    pub next_due: Option<Instant>,
    /// Since when the consumer has been behind without catching up, if it is.
    pub behind_since: Option<Instant>,
    /// When the oldest event of this drain was queued (`None`: no channel event in it): the
    /// writer times delivery from here (`tickcast_ws_delivery_seconds`).
    pub oldest_queued: Option<Instant>,
}

/// Counters of what a connection lost to flow control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events replaced by a newer one of the same channel (slow consumer or throttle).
    pub conflated: u64,
    /// Events dropped outright because too many distinct channels were queued.
    pub dropped: u64,
}

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    /// Set while the hub holds this outbox on its wake list, so a batch wakes it once.
    wake_scheduled: AtomicBool,
    limits: OutboxLimits,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Item>,
    /// Events in `queue` (held items are not counted: they are never conflated).
    queued_events: usize,
    /// Bytes of the events in `queue`.
    queued_bytes: usize,
    /// Bytes of the held items in `queue` (replies, snapshots, replayed events).
    held_bytes: usize,
    /// Channels with a `throttle_ms`; allocated only for connections that ask for one.
    throttled: HashMap<ChannelId, Throttled>,
    behind_since: Option<Instant>,
    /// When the first channel event still queued was pushed (see [`Drain::oldest_queued`]).
    oldest_queued: Option<Instant>,
    /// Conflations since the writer last drained; zero at a drain means it kept up.
    overflowed_since_drain: bool,
    stats: OutboxStats,
    closed: bool,
}

#[derive(Debug)]
struct Throttled {
    interval: Duration,
    next_due: Instant,
    pending: Option<Wire>,
}

// === impl Outbox ===

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            wake_scheduled: AtomicBool::new(false),
            limits,
        }
    }

    /// Queues a reply or error and wakes the writer.
    pub(crate) fn push_control(&self, bytes: Bytes) {
        self.push_held(std::iter::once(Item::Control(Box::new(bytes))));
        self.notify.notify_one();
    }

    /// Queues items that are never conflated (snapshots, replayed events as
    /// [`Item::Replay`]) without waking the writer; the hub wakes it after its lock. The caller
    /// keeps within [`Outbox::held_room`].
    pub(crate) fn push_held(&self, items: impl IntoIterator<Item = Item>) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        for item in items {
            st.held_bytes += item.len();
            st.queue.push_back(item);
        }
    }

    /// Held bytes this connection may still queue: [`OutboxLimits::max_held_bytes`] less what is
    /// queued and not yet drained.
    pub(crate) fn held_room(&self) -> usize {
        let st = self.lock();
        if st.closed {
            return 0;
        }
        self.limits.max_held_bytes.saturating_sub(st.held_bytes)
    }

    /// Queues a channel event without waking the writer; returns true when the caller must put
    /// this outbox on its wake list (see [`Outbox::wake`]).
    pub fn push_event(
        &self,
        channel: ChannelId,
        wire: &Wire,
        throttle: Option<Duration>,
        now: Instant,
    ) -> bool {
        self.pushing(now, |st, limits| {
            st.push(channel, wire, throttle, now, limits)
        })
    }

    /// Runs `push` on the state under the lock unless the outbox is closed; true when the
    /// caller must put this outbox on its wake list (see [`Outbox::wake`]).
    fn pushing(&self, now: Instant, push: impl FnOnce(&mut State, OutboxLimits)) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        push(&mut st, self.limits);
        // A throttled push waits in its slot, not in the queue: the wait is the client's choice.
        if st.queued_events > 0 {
            st.oldest_queued.get_or_insert(now);
        }
        drop(st);
        !self.wake_scheduled.swap(true, Ordering::AcqRel)
    }

    /// Queues a wildcard subscriber's share of a published batch as one shared handle when it
    /// fits whole and the subscription is not throttled; otherwise event by event, as
    /// [`Outbox::push_event`] (throttle slots, conflation), with the same contract.
    pub(crate) fn push_batch(
        &self,
        batch: &Arc<SharedBatch>,
        throttle: Option<Duration>,
        now: Instant,
    ) -> bool {
        self.pushing(now, |st, limits| {
            let n = batch.events.len();
            let fits = st.queued_events + n <= limits.max_events
                && st.queued_bytes + batch.bytes <= limits.max_bytes;
            if throttle.is_none() && fits {
                st.queued_events += n;
                st.queued_bytes += batch.bytes;
                st.queue.push_back(Item::Batch(batch.clone()));
            } else {
                for (channel, wire) in &batch.events {
                    st.push(*channel, wire, throttle, now, limits);
                }
            }
        })
    }

    /// Wakes the writer after a batch of [`Outbox::push_event`] calls.
    pub fn wake(&self) {
        self.wake_scheduled.store(false, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits until something was pushed (or the outbox closed) since the last drain.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await
    }

    /// Moves everything sendable into `out`: the queue, then throttled events that fell due.
    pub fn drain(&self, now: Instant, out: &mut VecDeque<Item>) -> Drain {
        let mut st = self.lock();
        std::mem::swap(&mut st.queue, out);
        st.queued_events = 0;
        st.queued_bytes = 0;
        st.held_bytes = 0;
        let mut next_due: Option<Instant> = None;
        for (channel, slot) in st.throttled.iter_mut() {
            if slot.pending.is_some() && slot.next_due <= now {
                if let Some(wire) = slot.pending.take() {
                    out.push_back(Item::Event {
                        channel: *channel,
                        wire,
                    });
                }
                slot.next_due = now + slot.interval;
            } else if slot.pending.is_some() {
                next_due = Some(next_due.map_or(slot.next_due, |d| d.min(slot.next_due)));
            }
        }
        if !st.overflowed_since_drain {
            st.behind_since = None;
        }
        st.overflowed_since_drain = false;
        Drain {
            next_due,
            behind_since: st.behind_since,
            oldest_queued: st.oldest_queued.take(),
        }
    }

    /// Stops accepting pushes and wakes the writer so it can notice.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Forgets the throttle state of channels no longer subscribed.
    pub(crate) fn forget(&self, channels: &HashSet<ChannelId>) {
        self.lock().throttled.retain(|ch, _| !channels.contains(ch));
    }

    pub(crate) fn stats(&self) -> OutboxStats {
        self.lock().stats
    }

    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // No `.await` and no user code runs under this lock; a poisoned lock still holds a
        // consistent queue (every mutation is a single push or swap).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl State ===

impl State {
    fn push(
        &mut self,
        channel: ChannelId,
        wire: &Wire,
        throttle: Option<Duration>,
        now: Instant,
        limits: OutboxLimits,
    ) {
        if let Some(interval) = throttle {
            let slot = self.throttled.entry(channel).or_insert(Throttled {
                interval,
                next_due: now,
                pending: None,
            });
            slot.interval = interval;
            if slot.pending.replace(wire.clone()).is_some() {
                self.stats.conflated += 1;
            }
        } else {
            if self.queued_events >= limits.max_events || self.queued_bytes >= limits.max_bytes {
                self.conflate(limits, now);
            }
            self.queued_events += 1;
            self.queued_bytes += wire.len();
            self.queue.push_back(Item::Event {
                channel,
                wire: wire.clone(),
            });
        }
    }

    /// Keeps held items and the newest event per channel; if that is still over the limits
    /// (too many distinct channels), drops the oldest events until it is at half of them.
    fn conflate(&mut self, limits: OutboxLimits, now: Instant) {
        let before = self.queued_events;
        let mut seen: HashSet<ChannelId> = HashSet::new();
        let mut kept: VecDeque<Item> = VecDeque::with_capacity(self.queue.len().min(1024));
        let (mut events, mut bytes) = (0usize, 0usize);
        let mut keep = |item: Item, kept: &mut VecDeque<Item>| match &item {
            Item::Event { channel, .. } if !seen.insert(*channel) => {}
            Item::Event { wire, .. } => {
                events += 1;
                bytes += wire.len();
                kept.push_front(item);
            }
            _ => kept.push_front(item),
        };
        while let Some(item) = self.queue.pop_back() {
            match item {
                // A shared batch conflates as the events it holds, newest first.
                Item::Batch(batch) => {
                    for (channel, wire) in batch.events.iter().rev() {
                        let event = Item::Event {
                            channel: *channel,
                            wire: wire.clone(),
                        };
                        keep(event, &mut kept);
                    }
                }
                item => keep(item, &mut kept),
            }
        }
        self.stats.conflated += (before - events) as u64;
        let (max_events, max_bytes) = (limits.max_events / 2, limits.max_bytes / 2);
        let mut i = 0;
        while i < kept.len() && (events > max_events || bytes > max_bytes) {
            if let Item::Event { wire, .. } = &kept[i] {
                bytes -= wire.len();
                events -= 1;
                kept.remove(i);
                self.stats.dropped += 1;
            } else {
                i += 1;
            }
        }
        self.queue = kept;
        self.queued_events = events;
        self.queued_bytes = bytes;
        self.overflowed_since_drain = true;
        self.behind_since.get_or_insert(now);
    }
}

#[cfg(test)]
mod tests;
