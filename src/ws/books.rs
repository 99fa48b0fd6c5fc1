//! A connection's `book:` subscriptions, on the writer's side: the depth each was asked at,
//! whether it is throttled, and what the client last got of each book channel, so every book
//! message it sends keeps the client's copy equal to the view it subscribed to (and its
//! checksum true).
//!
//! Two ways, chosen per subscription:
//! - **Shared**: the whole published view (`book.depth` levels), unthrottled: the deltas ingest
//!   encoded go out as they are, and a resume replays them from the ring. A gap (the queue
//!   conflated an event of a slow consumer) is never passed on: the writer sends the channel's
//!   current view instead, as a `reset`, and skips what it covers.
//! - **Tracked**: a narrower `depth`, or a `throttle_ms`: each time the channel has news, the
//!   writer sends the difference between what the client holds and the current view cut to its
//!   depth, one net delta for however many events came in between (so a throttle never drops a
//!   level change). This connection encodes these itself.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::book::BookView;
use crate::model::{ChannelId, Encoding, Kind, SymbolId, Wire, now_ns};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    seq: u64,
    /// False while the client holds no book to apply deltas to (its snapshot was empty because
    /// this node has no view of the book yet): only a reset goes out then.
    base: bool,
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
    /// sends, so it is a dense array of 16-byte entries (a `book:*` subscriber of 100 symbols
    /// keeps 1.6 KB hot), not a hash table whose probes miss the cache per event. At most
    /// `ring.max_symbols` entries.
    sent: Vec<Option<Sent>>,
    /// Tracked subscriptions: the view each client copy holds.
    held: HashMap<ChannelId, Arc<BookView>>,
}

impl BookSubs {
    pub(super) fn new(encoding: Encoding, view_depth: usize) -> Self {
        Self {
            encoding,
            view_depth,
            concrete: HashMap::new(),
            wildcard: None,
            sent: Vec::new(),
            held: HashMap::new(),
        }
    }

    fn sent(&self, ch: ChannelId) -> Option<Sent> {
        self.sent.get(ch.symbol.0 as usize).copied().flatten()
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
        self.held.remove(&ch);
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
                self.held.clear();
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
                self.held.retain(|ch, _| concrete.contains_key(ch));
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

    fn tracked(&self, sub: BookSub) -> bool {
        sub.throttled || sub.depth < self.view_depth
    }

    /// A book channel's snapshot as this connection sends it: the view cut to its depth, as
    /// one `book` event with `reset`.
    pub(super) fn snapshot(&mut self, s: &Snapshot, name: &str) -> Bytes {
        let encoding = self.encoding;
        let sub = self.sub(s.channel);
        let view = s
            .book
            .as_ref()
            .map(|v| {
                if v.bids.len().max(v.asks.len()) <= sub.depth {
                    v.clone() // shared with the hub, not copied per connection
                } else {
                    Arc::new(v.top(sub.depth))
                }
            })
            .unwrap_or_default();
        let events: Vec<Wire> = if s.book.is_some() {
            let message = BookMessage {
                ch: name,
                seq: s.seq,
                ts: now_ns(),
                reset: true,
                levels: &view,
                checksum: view.checksum(),
            };
            // Only this connection's encoding is made (the snapshot reads no other).
            let bytes = message.encoded(encoding);
            vec![match encoding {
                Encoding::Json => Wire::new(bytes, Bytes::new()),
                Encoding::Msgpack => Wire::new(Bytes::new(), bytes),
            }]
        } else {
            Vec::new()
        };
        if self.tracked(sub) {
            self.held.insert(s.channel, view);
        }
        let sent = Sent {
            seq: s.seq,
            base: s.book.is_some(),
        };
        self.set_sent(s.channel, Some(sent));
        protocol::encode_snapshot(encoding, name, s.seq, &events, s.reset)
    }

    /// A queued book event as this connection sends it: as it is, as a net delta, or as a
    /// `reset` with the current view; `None` when the client already holds what it says.
    pub(super) fn event(
        &mut self,
        ch: ChannelId,
        wire: &Wire,
        hub: &Hub,
        name: impl FnOnce() -> String,
    ) -> Option<Bytes> {
        let encoding = self.encoding;
        let sub = self.sub(ch);
        let sent = self.sent(ch);
        let tracked = self.tracked(sub);
        if !tracked {
            let Some((seq, reset)) = wire.book_seq() else {
                return Some(wire.get(encoding).clone());
            };
            match sent {
                Some(s) if seq <= s.seq => return None, // a reset already covered it
                Some(s) if !s.base && !reset => return None, // nothing to apply it to yet
                Some(s) if s.base && s.seq != 0 && seq != s.seq + 1 => {} // a gap: reset below
                _ => {
                    self.set_sent(ch, Some(Sent { seq, base: true }));
                    return Some(wire.get(encoding).clone());
                }
            }
        }
        let (seq, view) = hub.book_view(ch)?;
        if sent.is_some_and(|s| seq <= s.seq) {
            return None;
        }
        // At the full depth the hub's own view is shared, not copied per connection.
        let view = if sub.depth >= self.view_depth {
            view
        } else {
            Arc::new(view.top(sub.depth))
        };
        let held = if tracked {
            self.held.insert(ch, view.clone())
        } else {
            None
        };
        let (reset, levels) = match &held {
            Some(v) => (false, v.diff(&view)),
            None => (true, (*view).clone()),
        };
        self.set_sent(ch, Some(Sent { seq, base: true }));
        if !reset && levels.is_empty() {
            return None; // net nothing: the client's copy is already the view
        }
        let name = name();
        let message = BookMessage {
            ch: &name,
            seq,
            ts: now_ns(),
            reset,
            levels: &levels,
            checksum: view.checksum(),
        };
        Some(message.encoded(encoding))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::{Book, BookUpdate};
    use crate::model::{Event, Payload, SymbolId};
    use crate::rooms::{EventSink, HubConfig};
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
            let message = BookMessage {
                ch: "book:X",
                seq,
                ts: 1,
                reset: seq == 1,
                levels: &levels,
                checksum: view.checksum(),
            };
            events.push(Event {
                channel: CH,
                seq,
                ts: 1,
                payload: Payload::Book,
                wire: message.wire(),
                book: Some(Arc::new(view.clone())),
            });
            before = view;
        }
        (hub, events)
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
        let snap = Snapshot {
            channel: CH,
            seq: 2,
            events: vec![],
            reset: false,
            book: hub.book_view(CH).map(|(_, v)| v),
        };
        let s = json(&subs.snapshot(&snap, "book:X"));
        assert_eq!(s["data"][0]["reset"], true);
        hub.publish(&events[2..]);
        let name = || "book:X".to_owned();
        // seq 3 follows 2: sent as ingest encoded it (the same bytes).
        let e3 = subs.event(CH, &events[2].wire, &hub, name).expect("sent");
        assert_eq!(&e3, events[2].wire.json());
        // seq 4 was conflated away: seq 5 would leave the copy wrong, so the book goes instead.
        let reset = json(&subs.event(CH, &events[4].wire, &hub, name).expect("sent"));
        assert_eq!(
            (reset["reset"].as_bool(), reset["seq"].as_u64()),
            (Some(true), Some(5))
        );
        assert_eq!(reset["checksum"], json(events[4].wire.json())["checksum"]);
        // What the reset covered is not sent again.
        assert_eq!(subs.event(CH, &events[3].wire, &hub, name), None);
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
        let snap = Snapshot {
            channel: CH,
            seq: 1,
            events: vec![],
            reset: false,
            book: hub.book_view(CH).map(|(_, v)| v),
        };
        let s = json(&subs.snapshot(&snap, "book:X"));
        assert_eq!(s["data"][0]["bids"].as_array().map(Vec::len), Some(1));
        // Five events later (a throttle's worth), one delta takes the copy to the current top.
        hub.publish(&events[1..]);
        let name = || "book:X".to_owned();
        let d = json(&subs.event(CH, &events[5].wire, &hub, name).expect("sent"));
        assert_eq!(d["reset"], false);
        assert_eq!(d["seq"], 6);
        let (_, now) = hub.book_view(CH).expect("a book");
        assert_eq!(d["checksum"], now.top(1).checksum());
        // The client held 101 (its snapshot); it now holds 106.
        assert_eq!(d["bids"], serde_json::json!([[106, 6], [101, 0]]), "{d}");
        // The earlier events are already covered.
        assert_eq!(subs.event(CH, &events[3].wire, &hub, name), None);
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
