//! The read side: what REST and the pipeline ask of the rings, under the same lock as publishing
//! so every answer is a consistent cut (never half a batch).

use std::collections::HashMap;
use std::sync::Arc;

use super::Hub;
use super::hub::RingsHeld;
use crate::book::PublishedView;
use crate::model::{ChannelId, Event, Kind, SymbolId, Tick};

// === impl Hub: reads ===

impl Hub {
    /// The newest tick of a symbol, if any.
    pub(crate) fn latest_tick(&self, symbol: SymbolId) -> Option<Tick> {
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

    /// The newest event of `ch`, if it has one (a ticker's latest statistics).
    pub(crate) fn latest_event(&self, ch: ChannelId) -> Option<Event> {
        self.lock()
            .channels
            .get(&ch)
            .and_then(|c| c.ring.latest())
            .cloned()
    }

    /// Folds the held events of `ch`, oldest first, without copying them (the forecasts read
    /// only the closes of 1 s bars: a few microseconds under the lock, not a copy of the ring).
    pub(crate) fn fold_events<A>(
        &self,
        ch: ChannelId,
        init: A,
        f: impl FnMut(A, &Event) -> A,
    ) -> A {
        let st = self.lock();
        match st.channels.get(&ch) {
            Some(c) => c.ring.since(0).0.fold(init, f),
            None => init,
        }
    }

    /// Copies the events of `ch` after `from` that are still held, and how many were lost.
    #[cfg(test)]
    pub(crate) fn events_since(&self, ch: ChannelId, from: u64) -> (Vec<Event>, u64) {
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
    pub(crate) fn take_new_ticks(
        &self,
        cursors: &mut HashMap<SymbolId, u64>,
    ) -> Vec<(SymbolId, Vec<Tick>, u64)> {
        let st = self.lock();
        let mut out = Vec::new();
        let mut read = 0u64;
        for &symbol in &st.by_kind[Kind::Ticks.index()] {
            let ch = ChannelId {
                kind: Kind::Ticks,
                symbol,
            };
            let Some(channel) = st.channels.get(&ch) else {
                continue;
            };
            // A new reader starts where the ring's history does (0, or where an ingest node
            // that took over continued the stream).
            let cursor = cursors
                .entry(symbol)
                .or_insert_with(|| channel.ring.start_seq());
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
            read += channel.ring.last_seq() - *cursor;
            *cursor = channel.ring.last_seq();
            out.push((symbol, ticks, missed));
        }
        self.backlog.consumed(read);
        out
    }

    /// (`seq` of the oldest held event, `seq` of the newest) of `ch`: a resume from `from`
    /// can be replayed from the ring when `from + 1 >= oldest`.
    pub(crate) fn held_range(&self, ch: ChannelId) -> (u64, u64) {
        self.lock()
            .channels
            .get(&ch)
            .map_or((1, 0), |c| (c.ring.oldest_seq(), c.ring.last_seq()))
    }

    /// A book channel's view after its newest event.
    pub(crate) fn book_view(&self, ch: ChannelId) -> Option<Arc<PublishedView>> {
        self.lock().channels.get(&ch)?.book.latest().cloned()
    }

    /// A book channel's view after its event `seq`, while the hub still keeps it (the newest
    /// [`RECENT_VIEWS`](super::views::RECENT_VIEWS) events).
    pub(crate) fn book_view_at(&self, ch: ChannelId, seq: u64) -> Option<Arc<PublishedView>> {
        self.lock().channels.get(&ch)?.book.at(seq).cloned()
    }

    /// Connections subscribed to the concrete channel `ch`.
    pub(crate) fn subscriber_count(&self, ch: ChannelId) -> usize {
        self.lock()
            .channels
            .get(&ch)
            .map_or(0, |c| c.subscribers.len())
    }

    /// Drops a channel that nobody is subscribed to (its ring's memory with it); false, and
    /// nothing changes, while it has a subscriber. Only for channels outside the wildcard lists
    /// (a user's `portfolio`): a market channel lives as long as its symbol.
    pub(crate) fn retire(&self, ch: ChannelId) -> bool {
        debug_assert_eq!(ch.kind, Kind::Portfolio);
        let mut st = self.lock();
        match st.channels.get(&ch) {
            Some(c) if !c.subscribers.is_empty() => false,
            Some(_) => {
                if let Some(channel) = st.channels.remove(&ch) {
                    let mut held = RingsHeld::default();
                    held.dropped(&channel.ring);
                    held.apply(&self.metrics);
                }
                true
            }
            None => true,
        }
    }

    /// `seq` of the newest event of `ch` (0 when it has none).
    pub fn last_seq(&self, ch: ChannelId) -> u64 {
        self.lock()
            .channels
            .get(&ch)
            .map_or(0, |c| c.ring.last_seq())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BarInterval;
    use crate::rooms::EventSink;
    use crate::rooms::fixtures::*;

    #[test]
    fn take_new_ticks_advances_cursors_and_counts_evictions() {
        let h = hub();
        let (a, b) = (ch(Kind::Ticks, 0), ch(Kind::Ticks, 1));
        let mut cursors = HashMap::new();
        h.publish(&[tick(a, 1), tick(a, 2), tick(b, 1)]);
        let seqs = |taken: Vec<(SymbolId, Vec<Tick>, u64)>| -> Vec<(u32, usize, u64)> {
            taken
                .into_iter()
                .map(|(s, ticks, missed)| (s.0, ticks.len(), missed))
                .collect()
        };
        assert_eq!(
            seqs(h.take_new_ticks(&mut cursors)),
            vec![(0, 2, 0), (1, 1, 0)]
        );
        // Nothing new: symbols without new ticks are left out.
        assert!(h.take_new_ticks(&mut cursors).is_empty());
        // The ring holds 4: of a's ticks 3..=8, 3 and 4 were evicted before this read.
        h.publish(&(3..=8).map(|s| tick(a, s)).collect::<Vec<_>>());
        assert_eq!(seqs(h.take_new_ticks(&mut cursors)), vec![(0, 4, 2)]);
        assert_eq!(cursors.get(&a.symbol), Some(&8));
    }

    #[test]
    fn latest_tick_events_since_and_last_seq_read_the_ring() {
        let h = hub();
        let a = ch(Kind::Ticks, 0);
        assert!(h.latest_tick(a.symbol).is_none());
        assert_eq!(h.last_seq(a), 0);
        let (events, missed) = h.events_since(a, 0);
        assert!(events.is_empty() && missed == 0);
        h.publish(&(1..=6).map(|s| tick(a, s)).collect::<Vec<_>>());
        assert_eq!(h.last_seq(a), 6);
        assert!(h.latest_tick(a.symbol).is_some());
        let (events, missed) = h.events_since(a, 1);
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!((seqs, missed), (vec![3, 4, 5, 6], 1));
        // Another kind of the same symbol is another channel.
        assert_eq!(h.last_seq(ch(Kind::Bars(BarInterval::S1), 0)), 0);
    }
}
