//! Per-channel ring buffer of sequenced events: the memory behind snapshots, resume and the
//! pipeline's view of new ticks.
//!
//! The ring never assigns `seq`; events arrive in `seq` order and it keeps the newest `capacity`
//! of them. A ring may start at any `seq` (an edge node joins a stream mid-way, a new ingest
//! leader continues the old one's), and an event past `last_seq + 1` (events lost upstream)
//! restarts it there: it never holds a hole, so a replay is always exact.

use std::collections::VecDeque;

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

/// `[ring]`: how much history each channel keeps, and how many symbols there may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingConfig {
    pub capacity: usize,
    /// Events held per bar channel above 1 m (`bars.5m` ... `bars.1d`), at most `capacity`.
    pub long_bar_capacity: usize,
    pub snapshot_depth: usize,
    pub max_symbols: usize,
}

impl RingConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(self.capacity >= 1, "ring.capacity", "must be at least 1")?;
        check(
            self.long_bar_capacity >= 1,
            "ring.long_bar_capacity",
            "must be at least 1",
        )?;
        check(
            self.snapshot_depth <= self.capacity,
            "ring.snapshot_depth",
            "must not exceed ring.capacity",
        )?;
        check(
            self.max_symbols >= 1,
            "ring.max_symbols",
            "must be at least 1",
        )
    }
}

/// Something with a per-channel sequence number.
pub trait Sequenced {
    fn seq(&self) -> u64;

    /// Heap bytes this item keeps alive beyond its own slot (what a ring holding it costs on top
    /// of `size_of::<Self>()`); it must not change while a ring holds the item.
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl Sequenced for crate::model::Event {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn heap_bytes(&self) -> usize {
        self.heap_bytes()
    }
}

/// Why a resume cannot be served from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Events after `from` were already evicted: the client must take a fresh snapshot.
    #[error("events after seq {from} are no longer held (oldest held is {oldest})")]
    Evicted { from: u64, oldest: u64 },
    /// The client claims to have seen events this channel never had (e.g. before a restart).
    #[error("seq {from} is ahead of the channel (last is {last})")]
    Ahead { from: u64, last: u64 },
}

/// Fixed-capacity ring of events in `seq` order.
#[derive(Debug)]
pub struct Ring<T> {
    buf: VecDeque<T>,
    capacity: usize,
    /// `seq` of the newest event ever pushed (0 before the first).
    last_seq: u64,
    /// `seq` just before the ring's history starts: 0, or the `seq` before a restart.
    start_seq: u64,
    /// Sum of the held items' [`Sequenced::heap_bytes`].
    held_heap_bytes: usize,
}

// === impl Ring ===

impl<T: Sequenced> Ring<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            capacity: capacity.max(1),
            last_seq: 0,
            start_seq: 0,
            held_heap_bytes: 0,
        }
    }

    /// Appends an event newer than the last, evicting the oldest when full. The first event may
    /// have any `seq`; one past `last_seq + 1` empties the ring and starts it again there.
    pub fn push(&mut self, item: T) {
        debug_assert!(item.seq() > self.last_seq, "ring events must be in order");
        if item.seq() != self.last_seq + 1 {
            self.buf.clear();
            self.held_heap_bytes = 0;
            self.start_seq = item.seq() - 1;
        }
        self.last_seq = item.seq();
        if self.buf.len() == self.capacity
            && let Some(evicted) = self.buf.pop_front()
        {
            self.held_heap_bytes -= evicted.heap_bytes();
        }
        self.held_heap_bytes += item.heap_bytes();
        self.buf.push_back(item);
    }

    /// Memory this ring holds: its slots (allocated as it grows, up to `capacity`) and what the
    /// held items keep alive on the heap, in bytes as requested from the allocator.
    pub fn bytes(&self) -> usize {
        self.buf.capacity() * std::mem::size_of::<T>() + self.held_heap_bytes
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// `seq` of the newest event, 0 when none was ever pushed.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// `seq` just before the first event this ring was given (after its latest restart): a
    /// reader that starts here misses nothing that the ring ever had.
    pub(crate) fn start_seq(&self) -> u64 {
        self.start_seq
    }

    /// `seq` of the oldest event still held (`last_seq + 1` when empty).
    pub(crate) fn oldest_seq(&self) -> u64 {
        self.buf.front().map_or(self.last_seq + 1, |e| e.seq())
    }

    pub(crate) fn latest(&self) -> Option<&T> {
        self.buf.back()
    }

    /// The newest `n` events, oldest first.
    pub(crate) fn snapshot(
        &self,
        n: usize,
    ) -> impl ExactSizeIterator<Item = &T> + DoubleEndedIterator + Clone {
        let skip = self.buf.len().saturating_sub(n);
        self.buf.range(skip..)
    }

    /// Every held event with `seq > from`, oldest first, if none after `from` was evicted.
    pub fn replay(
        &self,
        from: u64,
    ) -> Result<impl ExactSizeIterator<Item = &T> + Clone, ReplayError> {
        if from > self.last_seq {
            return Err(ReplayError::Ahead {
                from,
                last: self.last_seq,
            });
        }
        let oldest = self.oldest_seq();
        if from + 1 < oldest {
            return Err(ReplayError::Evicted { from, oldest });
        }
        let skip = (from + 1 - oldest) as usize;
        Ok(self.buf.range(skip..))
    }

    /// Events with `seq > from` that are still held, and how many after `from` were lost.
    /// Unlike [`Ring::replay`], a consumer that fell behind gets what is left.
    pub(crate) fn since(&self, from: u64) -> (impl ExactSizeIterator<Item = &T>, u64) {
        let oldest = self.oldest_seq();
        let missed = oldest.saturating_sub(from + 1);
        let skip = (from + 1).saturating_sub(oldest).min(self.buf.len() as u64) as usize;
        (self.buf.range(skip..), missed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct E(u64);
    impl Sequenced for E {
        fn seq(&self) -> u64 {
            self.0
        }
    }

    fn ring_with(cap: usize, n: u64) -> Ring<E> {
        let mut r = Ring::new(cap);
        for s in 1..=n {
            r.push(E(s));
        }
        r
    }

    fn seqs<'a>(it: impl Iterator<Item = &'a E>) -> Vec<u64> {
        it.map(|e| e.0).collect()
    }

    #[test]
    fn keeps_newest_capacity_events() {
        let r = ring_with(4, 10);
        assert_eq!(r.len(), 4);
        assert_eq!(r.oldest_seq(), 7);
        assert_eq!(r.last_seq(), 10);
        assert_eq!(seqs(r.snapshot(2)), vec![9, 10]);
        assert_eq!(seqs(r.snapshot(100)), vec![7, 8, 9, 10]);
    }

    #[test]
    fn replay_serves_exactly_the_missed_events() {
        let r = ring_with(4, 10);
        let cases: &[(u64, Result<Vec<u64>, ReplayError>)] = &[
            (10, Ok(vec![])),
            (9, Ok(vec![10])),
            (6, Ok(vec![7, 8, 9, 10])),
            (5, Err(ReplayError::Evicted { from: 5, oldest: 7 })),
            (0, Err(ReplayError::Evicted { from: 0, oldest: 7 })),
            (11, Err(ReplayError::Ahead { from: 11, last: 10 })),
        ];
        for (from, want) in cases {
            let got = r.replay(*from).map(seqs);
            assert_eq!(&got, want, "from {from}");
        }
    }

    #[test]
    fn empty_ring_replays_from_zero() {
        let r: Ring<E> = Ring::new(4);
        assert_eq!(r.replay(0).map(|it| it.len()), Ok(0));
        assert_eq!(r.oldest_seq(), 1);
        assert!(r.latest().is_none());
    }

    #[test]
    fn a_ring_starts_anywhere_and_restarts_at_a_jump() {
        let mut r: Ring<E> = Ring::new(4);
        r.push(E(101));
        r.push(E(102));
        assert_eq!(
            (r.start_seq(), r.oldest_seq(), r.last_seq()),
            (100, 101, 102)
        );
        assert_eq!(r.replay(100).map(seqs), Ok(vec![101, 102]));
        assert_eq!(
            r.replay(99).map(seqs),
            Err(ReplayError::Evicted {
                from: 99,
                oldest: 101
            })
        );
        // Events 103..=109 never arrived: the ring holds no hole, a replay across it is refused.
        r.push(E(110));
        assert_eq!((r.start_seq(), r.oldest_seq()), (109, 110));
        assert_eq!(seqs(r.snapshot(10)), vec![110]);
        assert!(r.replay(102).is_err());
        let (it, missed) = r.since(102);
        assert_eq!((seqs(it), missed), (vec![110], 7));
    }

    /// An item that says it keeps `seq * 10` heap bytes alive.
    #[derive(Debug)]
    struct Heavy(u64);
    impl Sequenced for Heavy {
        fn seq(&self) -> u64 {
            self.0
        }
        fn heap_bytes(&self) -> usize {
            self.0 as usize * 10
        }
    }

    #[test]
    fn bytes_count_slots_and_what_held_items_keep_alive() {
        let slot = std::mem::size_of::<Heavy>();
        let mut r: Ring<Heavy> = Ring::new(3);
        assert_eq!(r.bytes(), 0, "nothing allocated before the first push");
        r.push(Heavy(1));
        r.push(Heavy(2));
        let slots = r.buf.capacity() * slot;
        assert_eq!(r.bytes(), slots + 30);
        r.push(Heavy(3));
        r.push(Heavy(4)); // evicts 1
        r.push(Heavy(5)); // evicts 2
        let slots = r.buf.capacity() * slot;
        assert_eq!((r.len(), r.bytes()), (3, slots + 120));
        // A jump restarts the ring: only the new item is held.
        r.push(Heavy(9));
        assert_eq!((r.len(), r.bytes()), (1, slots + 90));
        assert!(!r.is_empty());
    }

    #[test]
    fn since_reports_losses() {
        let r = ring_with(4, 10);
        let (it, missed) = r.since(3);
        assert_eq!((seqs(it), missed), (vec![7, 8, 9, 10], 3));
        let (it, missed) = r.since(8);
        assert_eq!((seqs(it), missed), (vec![9, 10], 0));
        let (it, missed) = r.since(10);
        assert_eq!((seqs(it), missed), (vec![], 0));
    }
}
