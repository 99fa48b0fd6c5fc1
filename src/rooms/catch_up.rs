//! What a subscribe sends a channel before its live events, taken out of the ring under the
//! hub's lock: a snapshot, the replay of a resume (`from`), or a replay from a time
//! (`from_ts`), each within the channel's share of the connection's held budget.
//!
//! A replay from a time starts at the first held event (in `seq` order) whose time is at or
//! after it ([`event_time`]), or after the events read from the store (`prefetched`, ticks),
//! and runs to the channel's newest event, then one `replay_done`. When it does not fit the
//! share, the events that fit are sent, oldest first, and `replay_done` says `more`: the
//! channel is then not registered (live events would leave a gap), and the client continues
//! with `from` at the last `seq` it got.

use super::hub::Channel;
use super::outbox::{BOOK_LEVEL_BYTES, BookSnapshot, Item, ReplayDone, Snapshot};
use super::request::Subscribe;
use crate::model::{ChannelId, Event, Kind, Payload, Wire};

/// The held budget of one subscribe, shared out over the channels that need a snapshot or a
/// replay: each takes at most an equal share of what is left, so what one leaves unused goes to
/// those after it.
pub(super) struct Budget {
    left: usize,
    channels: usize,
}

impl Budget {
    /// `left` bytes for the data of `channels` channels (their overheads already charged).
    pub(super) fn new(left: usize, channels: usize) -> Self {
        Budget { left, channels }
    }

    /// The share of the next channel's data (its overhead already charged).
    fn next_share(&mut self) -> usize {
        let share = self.left / self.channels.max(1);
        self.channels = self.channels.saturating_sub(1);
        share
    }

    fn spend(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n);
    }
}

/// The time a replay from a time selects an event by, ns since the epoch: a tick's exchange
/// time, a bar's start, and for the other kinds when the server made the event (`ts`).
fn event_time(e: &Event) -> i64 {
    match e.payload {
        Payload::Tick(t) => t.exchange_ts,
        Payload::Bar(b) => b.start_ms.saturating_mul(1_000_000),
        _ => e.ts,
    }
}

/// Takes one channel's replay or snapshot out of its ring, within the budget; false when the
/// channel must not go live (a replay from a time that the budget stopped short).
pub(super) fn catch_up(
    channel: &Channel,
    ch: ChannelId,
    req: &Subscribe,
    depth: usize,
    budget: &mut Budget,
    held: &mut Vec<Item>,
) -> bool {
    let share = budget.next_share();
    // A `from` of another run is not trusted, with or without `from_ts`: reset below.
    let stale = req.stale_from && req.from.contains_key(&ch);
    if let Some(since) = req
        .from_ts
        .filter(|_| ch.kind.replays_from_time() && !stale)
    {
        return replay_from_time(channel, ch, req, since, share, budget, held);
    }
    // A resume point is honoured only if it belongs to this server run, every event after
    // it is still held, and they all fit the share; otherwise the client gets a snapshot
    // marked `reset` (never a replay cut short: that would be a silent `seq` jump).
    let from = req.from.get(&ch).copied();
    // Events read from older history come first; the ring replays from where they end.
    // A book served from views cannot be replayed from the ring's whole-view deltas.
    let from_view = ch.kind == Kind::Book && req.book_from_view;
    let (ring_from, prefix): (Option<u64>, &[Wire]) = match req.prefetched.get(&ch) {
        Some((upto, events)) if from.is_some() => (Some(*upto), events),
        _ => (from, &[]),
    };
    let prefix_bytes: usize = prefix.iter().map(|b| b.len() + 1).sum();
    let replay = ring_from
        .filter(|_| !(req.stale_from || from_view))
        .and_then(|f| channel.ring.replay(f).ok())
        .filter(|events| {
            prefix_bytes + events.clone().map(|e| e.wire.len() + 1).sum::<usize>() <= share
        });
    if let Some(events) = replay {
        let all = prefix.iter().chain(events.map(|e| &e.wire));
        for w in all {
            budget.spend(w.len() + 1);
            held.push(Item::Replay {
                channel: ch,
                wire: w.clone(),
            });
        }
        return true;
    }
    if ch.kind == Kind::Book {
        // A book's snapshot is its view, not its recent deltas. One that does not fit the
        // share is cut to the levels that do (the writer sends the top of it).
        let snapshot = Snapshot {
            channel: ch,
            seq: channel.ring.last_seq(),
            events: Vec::new(),
            reset: from.is_some(),
            book: channel.book.latest().cloned().map(|view| BookSnapshot {
                view,
                max_levels: (share / BOOK_LEVEL_BYTES / 2).max(1),
            }),
        };
        budget.spend(snapshot.held_len());
        held.push(Item::Snapshot(Box::new(snapshot)));
        return true;
    }
    // The newest events that fit both the depth and the share, oldest first.
    let mut events: Vec<Wire> = Vec::new();
    let mut used = 0;
    for e in channel.ring.snapshot(depth).rev() {
        let n = e.wire.len() + 1;
        if used + n > share {
            break;
        }
        used += n;
        events.push(e.wire.clone());
    }
    events.reverse();
    budget.spend(used);
    held.push(Item::Snapshot(Box::new(Snapshot {
        channel: ch,
        seq: channel.ring.last_seq(),
        events,
        reset: from.is_some(),
        book: None,
    })));
    true
}

/// A replay from time `since` (or from the channel's `from`, a continuation), then
/// `replay_done`; false when the share stopped it short.
fn replay_from_time(
    channel: &Channel,
    ch: ChannelId,
    req: &Subscribe,
    since: i64,
    share: usize,
    budget: &mut Budget,
    held: &mut Vec<Item>,
) -> bool {
    let ring = &channel.ring;
    let (prefix, upto): (&[Wire], Option<u64>) = match req.prefetched.get(&ch) {
        Some((upto, events)) => (events, Some(*upto)),
        None => (&[], None),
    };
    let ring_from = match (upto, req.from.get(&ch)) {
        // Read from the store: the ring continues after them.
        (Some(upto), _) => upto,
        (None, Some(&from)) => from.min(ring.last_seq()),
        // The first held event at or after the time; none: nothing to replay.
        (None, None) => ring
            .snapshot(usize::MAX)
            .find(|e| event_time(e) >= since)
            .map_or(ring.last_seq(), |e| e.seq - 1),
    };
    let ring_events = match ring.replay(ring_from) {
        Ok(events) => Some(events),
        // The store's events end before the ring starts (it evicted meanwhile, or the store
        // has not caught up): send them, and the client continues after them.
        Err(_) if upto.is_some() => None,
        // Older than anything held (no store for this kind, or not in it): from the oldest
        // held event, a visible `seq` jump.
        Err(_) => ring.replay(ring.oldest_seq() - 1).ok(),
    };
    let mut more = ring_events.is_none();
    // The seq before the first event sent: prefix events are contiguous and end at `upto`.
    let mut last = match upto {
        Some(upto) => upto - prefix.len() as u64,
        None => ring_events
            .clone()
            .and_then(|mut e| e.next().map(|e| e.seq - 1))
            .unwrap_or(ring_from),
    };
    let mut used = 0;
    let events = prefix.iter().map(|w| (None, w)).chain(
        ring_events
            .into_iter()
            .flatten()
            .map(|e| (Some(e.seq), &e.wire)),
    );
    for (seq, w) in events {
        let n = w.len() + 1;
        if used + n > share {
            more = true;
            break;
        }
        used += n;
        last = seq.unwrap_or(last + 1);
        held.push(Item::Replay {
            channel: ch,
            wire: w.clone(),
        });
    }
    budget.spend(used);
    held.push(Item::ReplayDone(Box::new(ReplayDone {
        channel: ch,
        seq: last,
        more,
    })));
    !more
}
