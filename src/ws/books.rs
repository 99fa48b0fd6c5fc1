//! A connection's `book:` subscriptions, on the writer's side: the depth each was asked at,
//! whether it is throttled, and what the client last got of each book channel, so every book
//! message it sends keeps the client's copy equal to the view it subscribed to (and its
//! checksum true).
//!
//! Two ways, chosen per subscription:
//! - **Shared**: the whole published view (`book.depth` levels), unthrottled: the deltas ingest
//!   encoded go out as they are, and a resume replays them from the ring. A gap (the queue
//!   conflated an event of a slow consumer) is never passed on: the writer sends the channel's
//!   current view instead, as a `reset` (encoded once per view and encoding, whoever sends
//!   it), and skips what it covers.
//! - **Tracked**: a narrower `depth`, or a `throttle_ms`: each time the channel has news, the
//!   writer sends the difference between what the client holds and the view cut to its depth,
//!   one net delta for however many events came in between (so a throttle never drops a level
//!   change). Unthrottled, every event gets its own delta, from the view that event published
//!   (empty when nothing changed within the depth), so `seq` never jumps without a loss. The cut of a view to a depth, and its checksum, are made once per view and
//!   depth ([`PublishedView::cut`]); the net delta is this connection's own to diff and encode.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::book::{BookView, PublishedView};
use crate::model::{ChannelId, Encoding, Kind, SymbolId, Wire};
use crate::protocol::{self, BookMessage};
use crate::rooms::{Hub, Snapshot, Target};

/// How one book subscription is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BookSub {
    /// Levels per side the client holds.
    pub depth: usize,
    pub throttled: bool,
}

/// What the client was last sent of one channel.
#[derive(Debug, Clone, PartialEq, Default)]
struct Sent {
    seq: u64,
    /// False while the client holds no book to apply deltas to (its snapshot was empty because
    /// this node has no view of the book yet): only a reset goes out then.
    base: bool,
    /// Tracked subscriptions: the view the client holds (shared with the hub's published view
    /// or its cut, never a per-connection copy).
    held: Option<Arc<BookView>>,
}

/// One connection's book subscriptions and what each client copy holds.
#[derive(Debug)]
pub(super) struct BookSubs {
    /// The connection's encoding.
    pub(super) encoding: Encoding,
    /// Levels per side the server publishes (`book.depth`).
    view_depth: usize,
    concrete: HashMap<ChannelId, BookSub>,
    wildcard: Option<BookSub>,
    /// Per book channel, by symbol id: read and written for every book event this connection
    /// sends, so it is a dense array of 24-byte entries (a `book:*` subscriber of 100 symbols
    /// keeps 2.4 KB hot), not a hash table whose probes miss the cache per event. At most
    /// `ring.max_symbols` entries.
    sent: Vec<Option<Sent>>,
}

impl BookSubs {
    pub(super) fn new(encoding: Encoding, view_depth: usize) -> Self {
        Self {
            encoding,
            view_depth,
            concrete: HashMap::new(),
            wildcard: None,
            sent: Vec::new(),
        }
    }

    fn sent(&self, ch: ChannelId) -> Option<&Sent> {
        self.sent.get(ch.symbol.0 as usize)?.as_ref()
    }

    fn set_sent(&mut self, ch: ChannelId, sent: Option<Sent>) {
        let i = ch.symbol.0 as usize;
        if i >= self.sent.len() {
            if sent.is_none() {
                return;
            }
            self.sent.resize(i + 1, None);
        }
        self.sent[i] = sent;
    }

    /// Forgets what a channel's client copy holds.
    fn forget(&mut self, ch: ChannelId) {
        self.set_sent(ch, None);
    }

    /// Records a book subscription (a later one replaces an earlier one's settings).
    pub(super) fn subscribe(&mut self, target: Target, sub: BookSub) {
        match target {
            Target::Channel(ch) if ch.kind == Kind::Book => {
                self.concrete.insert(ch, sub);
                self.forget(ch);
            }
            Target::Wildcard(Kind::Book) => {
                self.wildcard = Some(sub);
                self.sent.clear();
            }
            _ => {}
        }
    }

    pub(super) fn unsubscribe(&mut self, target: Target) {
        match target {
            Target::Channel(ch) => {
                self.concrete.remove(&ch);
                if self.wildcard.is_none() {
                    self.forget(ch);
                }
            }
            Target::Wildcard(Kind::Book) => {
                self.wildcard = None;
                let concrete = &self.concrete;
                for (i, sent) in self.sent.iter_mut().enumerate() {
                    let ch = ChannelId {
                        kind: Kind::Book,
                        symbol: SymbolId(i as u32),
                    };
                    if !concrete.contains_key(&ch) {
                        *sent = None;
                    }
                }
            }
            Target::Wildcard(_) => {}
        }
    }

    fn sub(&self, ch: ChannelId) -> BookSub {
        self.concrete
            .get(&ch)
            .copied()
            .or(self.wildcard)
            .unwrap_or(BookSub {
                depth: self.view_depth,
                throttled: false,
            })
    }

    /// True when `sub` is served from views (a narrower depth or a throttle), never as the
    /// deltas ingest published.
    pub(super) fn tracked(&self, sub: BookSub) -> bool {
        sub.throttled || sub.depth < self.view_depth
    }

    /// A book channel's snapshot as this connection sends it: the view cut to its depth, as
    /// one `book` event with `reset`.
    pub(super) fn snapshot(&mut self, s: &Snapshot, name: &str) -> Bytes {
        let encoding = self.encoding;
        let sub = self.sub(s.channel);
        let (events, view) = match &s.book {
            Some(b) => {
                let depth = sub.depth.min(b.max_levels);
                let (bytes, view) = self.reset(&b.view, depth);
                // Only this connection's encoding is made (the snapshot reads no other).
                let wire = match encoding {
                    Encoding::Json => Wire::new(bytes, Bytes::new()),
                    Encoding::Msgpack => Wire::new(Bytes::new(), bytes),
                };
                (vec![wire], view)
            }
            None => (Vec::new(), Arc::default()),
        };
        let sent = Sent {
            seq: s.seq,
            base: s.book.is_some(),
            held: self.tracked(sub).then_some(view),
        };
        self.set_sent(s.channel, Some(sent));
        protocol::encode_snapshot(encoding, name, s.seq, &events, s.reset)
    }

    /// A queued book event as this connection sends it: as it is, as a net delta, or as a
    /// `reset` with the current view; `None` when the client already holds what it says.
    pub(super) fn event(&mut self, ch: ChannelId, wire: &Wire, hub: &Hub) -> Option<Bytes> {
        let encoding = self.encoding;
        let sub = self.sub(ch);
        let tracked = self.tracked(sub);
        let (sent, held) = match self.sent(ch) {
            Some(s) => (Some((s.seq, s.base)), s.held.clone()),
            None => (None, None),
        };
        if !tracked {
            let Some((seq, reset)) = wire.book_seq() else {
                return Some(wire.get(encoding).clone());
            };
            match sent {
                Some((last, _)) if seq <= last => return None, // a reset already covered it
                Some((_, false)) if !reset => return None,     // nothing to apply it to yet
                Some((last, true)) if last != 0 && seq != last + 1 => {} // a gap: reset below
                _ => {
                    let sent = Sent {
                        seq,
                        base: true,
                        held: None,
                    };
                    self.set_sent(ch, Some(sent));
                    return Some(wire.get(encoding).clone());
                }
            }
        }
        // Unthrottled, each event is served by the view it published (while the hub keeps it),
        // so the client gets every `seq`; throttled, or too far behind, by the newest view.
        let own = match wire.book_seq() {
            Some((seq, _)) if !sub.throttled => hub.book_view_at(ch, seq),
            _ => None,
        };
        let published = own.or_else(|| hub.book_view(ch))?;
        let seq = published.seq;
        if sent.is_some_and(|(last, _)| seq <= last) {
            return None;
        }
        let Some(held) = held.filter(|_| tracked) else {
            // Nothing to diff against (a gap in a shared subscription): the whole view.
            let (bytes, view) = self.reset(&published, sub.depth);
            let sent = Sent {
                seq,
                base: true,
                held: tracked.then_some(view),
            };
            self.set_sent(ch, Some(sent));
            return Some(bytes);
        };
        let (view, checksum) = published.cut(sub.depth);
        let levels = held.diff(&view);
        let sent = Sent {
            seq,
            base: true,
            held: Some(view),
        };
        self.set_sent(ch, Some(sent));
        if levels.is_empty() && sub.throttled {
            return None; // net nothing: the client's copy is already the view
        }
        // Unthrottled, an event that changed nothing within this depth still goes out, as an
        // empty delta with its `seq` and checksum: a jump then always means a loss.
        let message = BookMessage {
            ch: &published.channel,
            seq,
            ts: published.ts,
            reset: false,
            levels: &levels,
            checksum,
        };
        Some(message.encoded(encoding))
    }

    /// `published` cut to `depth` as one `reset` event of this connection's encoding, and the
    /// view it carries. The whole view's reset is encoded once per encoding and shared by every
    /// connection that sends it ([`PublishedView::reset`]).
    fn reset(&self, published: &PublishedView, depth: usize) -> (Bytes, Arc<BookView>) {
        let encoding = self.encoding;
        let encode = |levels: &BookView, checksum: u32| {
            BookMessage {
                ch: &published.channel,
                seq: published.seq,
                ts: published.ts,
                reset: true,
                levels,
                checksum,
            }
            .encoded(encoding)
        };
        let (view, checksum) = published.cut(depth);
        let bytes = if Arc::ptr_eq(&view, &published.view) {
            published.reset(encoding, |p| encode(&p.view, p.checksum))
        } else {
            encode(&view, checksum)
        };
        (bytes, view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::{Book, BookUpdate};
    use crate::model::{Event, Payload, SymbolId};
    use crate::rooms::{BookSnapshot, EventSink, HubConfig};
    use serde_json::Value;

    const CH: ChannelId = ChannelId {
        kind: Kind::Book,
        symbol: SymbolId(0),
    };

    /// A hub, and the book events of a bid ladder that gets a new best bid per event (as
    /// ingest makes them), seq 1..=n.
    fn published(n: u64) -> (Hub, Vec<Event>) {
        let hub = Hub::new(
            HubConfig {
                ring_capacity: 64,
                long_bar_ring_capacity: 64,
                snapshot_depth: 1,
                portfolio_ring_capacity: 1,
            },
            Default::default(),
        );
        let mut book = Book::default();
        let mut before = BookView::default();
        let mut events = Vec::new();
        for seq in 1..=n {
            let u = BookUpdate {
                symbol: "X".into(),
                snapshot: seq == 1,
                bids: vec![(100.0 + seq as f64, seq as f64)],
                asks: vec![(200.0, 1.0)],
                exchange_ts: 1,
            };
            book.apply(&u, 100);
            let view = book.view(3);
            let levels = if seq == 1 {
                view.clone()
            } else {
                before.diff(&view)
            };
            let ts = seq as i64 * 10; // when ingest published it
            let message = BookMessage {
                ch: "book:X",
                seq,
                ts,
                reset: seq == 1,
                levels: &levels,
                checksum: view.checksum(),
            };
            let checksum = view.checksum();
            events.push(Event {
                channel: CH,
                seq,
                ts,
                payload: Payload::Book,
                wire: message.wire(),
                book: Some(Arc::new(PublishedView::new(
                    "book:X".into(),
                    seq,
                    ts,
                    view.clone(),
                    checksum,
                ))),
            });
            before = view;
        }
        (hub, events)
    }

    /// The hub's snapshot of `CH` at `seq`, as a subscribe takes it.
    fn snapshot(hub: &Hub, seq: u64) -> Snapshot {
        Snapshot {
            channel: CH,
            seq,
            events: vec![],
            reset: false,
            book: hub.book_view(CH).map(|view| BookSnapshot {
                view,
                max_levels: 100,
            }),
        }
    }

    fn json(b: &Bytes) -> Value {
        serde_json::from_slice(b).expect("json")
    }

    #[test]
    fn a_gap_in_a_full_depth_subscription_is_answered_with_the_current_book() {
        let (hub, events) = published(5);
        let mut subs = BookSubs::new(Encoding::Json, 3);
        subs.subscribe(
            Target::Channel(CH),
            BookSub {
                depth: 3,
                throttled: false,
            },
        );
        hub.publish(&events[..2]);
        let snap = snapshot(&hub, 2);
        let s = json(&subs.snapshot(&snap, "book:X"));
        assert_eq!(s["data"][0]["reset"], true);
        hub.publish(&events[2..]);
        // seq 3 follows 2: sent as ingest encoded it (the same bytes).
        let e3 = subs.event(CH, &events[2].wire, &hub).expect("sent");
        assert_eq!(&e3, events[2].wire.json());
        // seq 4 was conflated away: seq 5 would leave the copy wrong, so the book goes instead.
        let reset = json(&subs.event(CH, &events[4].wire, &hub).expect("sent"));
        assert_eq!(
            (reset["reset"].as_bool(), reset["seq"].as_u64()),
            (Some(true), Some(5))
        );
        assert_eq!(reset["checksum"], json(events[4].wire.json())["checksum"]);
        // What the reset covered is not sent again.
        assert_eq!(subs.event(CH, &events[3].wire, &hub), None);
    }

    #[test]
    fn connections_that_fall_behind_on_one_book_share_one_encoding_of_its_reset() {
        let (hub, events) = published(5);
        hub.publish(&events[..4]);
        let full = BookSub {
            depth: 3,
            throttled: false,
        };
        let mut resets = Vec::new();
        for encoding in [Encoding::Json, Encoding::Json, Encoding::Msgpack] {
            let mut subs = BookSubs::new(encoding, 3);
            subs.subscribe(Target::Wildcard(Kind::Book), full);
            // In step on seq 1, then seq 2 and 3 lost to the queue.
            assert!(subs.event(CH, &events[0].wire, &hub).is_some());
            resets.push(subs.event(CH, &events[3].wire, &hub).expect("sent"));
        }
        // One allocation for both JSON connections, another for MessagePack.
        assert_eq!(resets[0].as_ptr(), resets[1].as_ptr());
        assert_ne!(resets[0].as_ptr(), resets[2].as_ptr());
        let r = json(&resets[0]);
        assert_eq!(
            (r["reset"].as_bool(), r["seq"].as_u64()),
            (Some(true), Some(4))
        );
        // Stamped when ingest published the view, not when a writer sent it.
        assert_eq!(r["ts"], 40);
        assert_eq!(r["checksum"], json(events[3].wire.json())["checksum"]);
    }

    #[test]
    fn a_narrower_subscription_gets_net_deltas_of_its_depth() {
        let (hub, events) = published(6);
        let mut subs = BookSubs::new(Encoding::Json, 3);
        subs.subscribe(
            Target::Wildcard(Kind::Book),
            BookSub {
                depth: 1,
                throttled: false,
            },
        );
        hub.publish(&events[..1]);
        let snap = snapshot(&hub, 1);
        let s = json(&subs.snapshot(&snap, "book:X"));
        assert_eq!(s["data"][0]["bids"].as_array().map(Vec::len), Some(1));
        // Five events later (a throttle's worth), one delta takes the copy to the current top.
        hub.publish(&events[1..]);
        let d = json(&subs.event(CH, &events[5].wire, &hub).expect("sent"));
        assert_eq!(d["reset"], false);
        assert_eq!(d["seq"], 6);
        let now = hub.book_view(CH).expect("a book").view.clone();
        assert_eq!(d["checksum"], now.top(1).checksum());
        // The client held 101 (its snapshot); it now holds 106.
        assert_eq!(d["bids"], serde_json::json!([[106, 6], [101, 0]]), "{d}");
        // The earlier events are already covered.
        assert_eq!(subs.event(CH, &events[3].wire, &hub), None);
    }

    #[test]
    fn an_unthrottled_narrower_subscription_gets_every_seq_from_the_view_it_published() {
        let (hub, events) = published(6);
        let mut subs = BookSubs::new(Encoding::Json, 3);
        let depth1 = BookSub {
            depth: 1,
            throttled: false,
        };
        subs.subscribe(Target::Channel(CH), depth1);
        hub.publish(&events[..1]);
        subs.snapshot(&snapshot(&hub, 1), "book:X");
        // The hub is already at seq 6 when the writer takes seq 2..=6: each still goes out
        // with its own seq, the delta and checksum of the view it published.
        hub.publish(&events[1..]);
        for e in &events[1..] {
            let d = json(&subs.event(CH, &e.wire, &hub).expect("sent"));
            let view = e.book.as_ref().expect("a view").view.top(1);
            assert_eq!(
                (d["seq"].as_u64(), d["reset"].as_bool()),
                (Some(e.seq), Some(false))
            );
            assert_eq!(d["checksum"], view.checksum());
        }
        // The same book, but only the second level changes: depth 1 holds nothing new, and
        // still gets the event, empty, with its seq.
        let mut ladder = BookView {
            bids: vec![(200.0, 1.0), (100.0, 1.0)],
            asks: vec![(300.0, 1.0)],
        };
        let (hub, _) = published(0);
        let mut subs = BookSubs::new(Encoding::Json, 3);
        subs.subscribe(Target::Channel(CH), depth1);
        for seq in 1..=3u64 {
            ladder.bids[1].1 = seq as f64;
            let checksum = ladder.checksum();
            let view = Arc::new(PublishedView::new(
                "book:X".into(),
                seq,
                0,
                ladder.clone(),
                checksum,
            ));
            let wire = BookMessage {
                ch: "book:X",
                seq,
                ts: 0,
                reset: seq == 1,
                levels: &ladder,
                checksum,
            }
            .wire();
            hub.publish(&[Event {
                channel: CH,
                seq,
                ts: 0,
                payload: Payload::Book,
                wire: wire.clone(),
                book: Some(view),
            }]);
            if seq == 1 {
                subs.snapshot(&snapshot(&hub, 1), "book:X");
                continue;
            }
            let d = json(&subs.event(CH, &wire, &hub).expect("sent"));
            assert_eq!(d["seq"], seq);
            assert_eq!(
                (
                    d["bids"].as_array().map(Vec::len),
                    d["asks"].as_array().map(Vec::len)
                ),
                (Some(0), Some(0))
            );
            assert_eq!(d["checksum"], ladder.top(1).checksum());
        }
    }

    #[test]
    fn a_book_event_carries_its_seq_and_reset_flag() {
        let v = BookView::default();
        let w = BookMessage {
            ch: "book:AAPL",
            seq: 1234,
            ts: 5,
            reset: false,
            levels: &v,
            checksum: 0,
        }
        .wire();
        assert_eq!(w.book_seq(), Some((1234, false)));
        let r = BookMessage {
            ch: "book:ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
            seq: u64::MAX,
            ts: i64::MIN,
            reset: true,
            levels: &v,
            checksum: 0,
        }
        .wire();
        assert_eq!(r.book_seq(), Some((u64::MAX, true)));
        assert_eq!(
            Wire::new(Bytes::from_static(b"{}"), Bytes::new()).book_seq(),
            None
        );
    }
}
