use super::*;
use crate::model::{Kind, SymbolId};

fn ch(sym: u32) -> ChannelId {
    ChannelId {
        kind: Kind::Ticks,
        symbol: SymbolId(sym),
    }
}

fn ev(s: &str) -> Wire {
    let b = Bytes::copy_from_slice(s.as_bytes());
    Wire::new(b.clone(), b)
}

fn drained(o: &Outbox, now: Instant) -> (Vec<String>, Drain) {
    let mut out = VecDeque::new();
    let d = o.drain(now, &mut out);
    let items = out
        .iter()
        .map(|i| match i {
            Item::Control(b) => String::from_utf8_lossy(b).into_owned(),
            Item::Replay { wire: w, .. } | Item::Event { wire: w, .. } => {
                String::from_utf8_lossy(w.json()).into_owned()
            }
            Item::Snapshot(s) => format!("snapshot of {} events", s.events.len()),
            Item::ReplayDone(d) => format!("replay done at {}", d.seq),
            Item::Batch(b) => format!(
                "batch [{}]",
                b.events
                    .iter()
                    .map(|(_, e)| String::from_utf8_lossy(e.json()).into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
        .collect();
    (items, d)
}

fn batch(events: &[(u32, &str)]) -> Arc<SharedBatch> {
    Arc::new(SharedBatch::new(
        events.iter().map(|(c, e)| (ch(*c), ev(e))).collect(),
    ))
}

#[test]
fn a_queued_item_is_small() {
    // Outboxes of busy sockets hold up to `max_events` of these each: 10,000 sockets times
    // 1,024 items is 240 MB at 24 bytes, not the 800 MB of an 80-byte item.
    assert!(
        std::mem::size_of::<Item>() <= 24,
        "{}",
        std::mem::size_of::<Item>()
    );
}

#[test]
fn a_shared_batch_is_one_handle_framed_once_and_conflates_as_its_events() {
    let now = Instant::now();
    let o = Outbox::new(LIMITS);
    let b = batch(&[(0, "a1"), (1, "b1")]);
    assert!(o.push_batch(&b, None, now));
    o.wake();
    let (items, _) = drained(&o, now);
    assert_eq!(items, vec!["batch [a1,b1]"]);
    // Framed once, by whoever asks first; every later writer gets the same bytes.
    let mut made = 0;
    let f1 = b
        .frame(Encoding::Json, |e| {
            made += 1;
            Bytes::from(format!("{} events", e.len()))
        })
        .clone();
    let f2 = b
        .frame(Encoding::Json, |_| unreachable!("framed twice"))
        .clone();
    assert_eq!((made, &f1[..], f1 == f2), (1, &b"2 events"[..], true));
    // Each encoding has its own frame, made once too.
    let m = b
        .frame(Encoding::Msgpack, |_| Bytes::from_static(b"mp"))
        .clone();
    let m2 = b
        .frame(Encoding::Msgpack, |_| unreachable!("framed twice"))
        .clone();
    assert_eq!((&m[..], m == m2), (&b"mp"[..], true));
    // Two batches fit (4 events); the third would not: it goes in event by event, and the
    // overflow conflates the queued batches as their events: newest per channel (a2 goes),
    // then the oldest down to half the bound (b2 goes), as for single events.
    assert!(o.push_batch(&batch(&[(0, "a2"), (1, "b2")]), None, now));
    o.push_batch(&batch(&[(0, "a3"), (2, "c3")]), None, now);
    o.push_batch(&batch(&[(0, "a4"), (1, "b4")]), None, now);
    o.wake();
    let (items, d) = drained(&o, now);
    assert_eq!(items, vec!["a3", "c3", "a4", "b4"]);
    assert!(d.behind_since.is_some());
    assert_eq!((o.stats().conflated, o.stats().dropped), (1, 1));
    // A throttled wildcard takes the batch event by event into its throttle slots.
    let t = Outbox::new(LIMITS);
    t.push_batch(&b, Some(Duration::from_millis(100)), now);
    let (mut items, _) = drained(&t, now);
    items.sort();
    assert_eq!(items, vec!["a1", "b1"]);
}

const LIMITS: OutboxLimits = OutboxLimits {
    max_events: 4,
    max_bytes: 1 << 20,
    max_held_bytes: 1 << 10,
};

#[test]
fn wakes_once_per_batch() {
    let o = Outbox::new(LIMITS);
    let now = Instant::now();
    assert!(o.push_event(ch(1), &ev("a"), None, now));
    assert!(!o.push_event(ch(1), &ev("b"), None, now));
    o.wake();
    assert!(o.push_event(ch(1), &ev("c"), None, now));
}

#[test]
fn full_queue_keeps_newest_per_channel_and_all_control() {
    let o = Outbox::new(OutboxLimits {
        max_events: 6,
        ..LIMITS
    });
    let now = Instant::now();
    o.push_control(ev("ack").json().clone());
    for s in ["a1", "b1", "a2", "b2", "a3", "b3"] {
        let c = if s.starts_with('a') { 1 } else { 2 };
        o.push_event(ch(c), &ev(s), None, now);
    }
    // Six events are queued (the ack is held, not counted): the next push conflates a1,
    // b1, a2 and b2 away first.
    o.push_event(ch(1), &ev("a4"), None, now);
    let (items, d) = drained(&o, now);
    assert_eq!(items, vec!["ack", "a3", "b3", "a4"]);
    assert_eq!(o.stats().conflated, 4);
    assert_eq!(d.behind_since, Some(now));
    // A drain with no overflow since the previous one clears the lag.
    let (_, d) = drained(&o, now);
    assert_eq!(d.behind_since, None);
}

#[test]
fn too_many_channels_drop_oldest_events() {
    let o = Outbox::new(LIMITS);
    let now = Instant::now();
    for c in 0..5 {
        o.push_event(ch(c), &ev(&format!("e{c}")), None, now);
    }
    let (items, _) = drained(&o, now);
    // At the 5th push, 4 distinct channels were queued: conflation keeps all 4, then drops
    // the oldest two to get back to half the limit.
    assert_eq!(items, vec!["e2", "e3", "e4"]);
    assert_eq!(o.stats().dropped, 2);
}

#[test]
fn throttle_sends_newest_once_per_interval() {
    let o = Outbox::new(LIMITS);
    let t0 = Instant::now();
    let every = Some(Duration::from_millis(100));
    o.push_event(ch(1), &ev("x1"), every, t0);
    let (items, d) = drained(&o, t0);
    assert_eq!(items, vec!["x1"]);
    assert_eq!(d.next_due, None);
    o.push_event(ch(1), &ev("x2"), every, t0);
    o.push_event(ch(1), &ev("x3"), every, t0);
    let (items, d) = drained(&o, t0 + Duration::from_millis(50));
    assert!(items.is_empty());
    assert_eq!(d.next_due, Some(t0 + Duration::from_millis(100)));
    let (items, _) = drained(&o, t0 + Duration::from_millis(100));
    assert_eq!(items, vec!["x3"]);
    assert_eq!(o.stats().conflated, 1);
}

#[test]
fn held_items_have_their_own_budget_and_survive_conflation() {
    let o = Outbox::new(LIMITS);
    let now = Instant::now();
    assert_eq!(o.held_room(), 1024);
    let snap = Snapshot {
        channel: ch(1),
        seq: 9,
        events: vec![ev("e8"), ev("e9")],
        reset: false,
        book: None,
    };
    // Envelope plus each event and its separator.
    assert_eq!(snap.held_len(), HELD_ITEM_OVERHEAD + 6);
    o.push_held([
        Item::Snapshot(Box::new(snap)),
        Item::Control(Box::new(ev("r1").json().clone())),
    ]);
    assert_eq!(o.held_room(), 1024 - HELD_ITEM_OVERHEAD - 6 - 2);
    // Events past the bound conflate; held items stay, in order.
    for s in ["a1", "a2", "a3", "a4", "a5"] {
        o.push_event(ch(1), &ev(s), None, now);
    }
    let (items, _) = drained(&o, now);
    assert_eq!(items, vec!["snapshot of 2 events", "r1", "a4", "a5"]);
    // A drain hands the held bytes to the writer: the budget is free again.
    assert_eq!(o.held_room(), 1024);
    o.close();
    assert_eq!(o.held_room(), 0);
}

#[test]
fn closed_outbox_ignores_pushes() {
    let o = Outbox::new(LIMITS);
    o.close();
    assert!(!o.push_event(ch(1), &ev("a"), None, Instant::now()));
    o.push_control(ev("ack").json().clone());
    assert_eq!(o.queued(), 0);
    assert!(o.is_closed());
}

#[test]
fn a_drain_reports_when_its_oldest_event_was_queued() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_millis(3);
    let o = Outbox::new(LIMITS);
    o.push_event(ch(0), &ev("a"), None, t0);
    o.push_batch(&batch(&[(1, "b")]), None, t1);
    let (_, d) = drained(&o, t1);
    assert_eq!(d.oldest_queued, Some(t0));
    // Nothing queued since: nothing to time.
    let (_, d) = drained(&o, t1);
    assert_eq!(d.oldest_queued, None);
    // Replies and throttled events are not timed: only events waiting in the queue are.
    o.push_control(Bytes::from_static(b"ack"));
    o.push_event(ch(2), &ev("c"), Some(Duration::from_millis(250)), t1);
    let (items, d) = drained(&o, t1);
    assert_eq!((items.len(), d.oldest_queued), (2, None));
}
