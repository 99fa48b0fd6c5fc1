//! Resumes older than the ring: which gaps of one subscribe are read from history (an edge's
//! stream) and how many bytes each may read. The held budget is shared out before anything is
//! read, and one subscribe starts at most `cluster.resume_max_reads` reads, so a subscribe with
//! thousands of stale `from` entries reads at most one budget with a bounded number of stream
//! consumers; the gaps it does not read are answered with `reset` by the hub.

use std::collections::HashMap;

use crate::model::ChannelId;
use crate::rooms::HELD_ITEM_OVERHEAD;

/// One gap to read from history: the events of `ch` with `seq` in `(from, until]`, at most
/// `max_bytes` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gap {
    pub ch: ChannelId,
    pub from: u64,
    pub until: u64,
    pub max_bytes: usize,
}

/// The gaps of `resume` that have left the ring (`held` gives a channel's oldest and newest
/// `seq` there), in channel order, at most `max_reads` of them. Each may read an equal share of
/// `room` after every resumed channel's envelope is charged, so together they read at most
/// `room`: the hub gives no channel of the subscribe more than that either.
pub(super) fn plan(
    resume: &HashMap<ChannelId, u64>,
    held: impl Fn(ChannelId) -> (u64, u64),
    room: usize,
    max_reads: usize,
) -> Vec<Gap> {
    let n = resume.len().max(1);
    let share = room.saturating_sub(n.saturating_mul(HELD_ITEM_OVERHEAD)) / n;
    if share == 0 {
        return Vec::new();
    }
    let mut points: Vec<(ChannelId, u64)> = resume.iter().map(|(&ch, &f)| (ch, f)).collect();
    points.sort_unstable();
    points
        .into_iter()
        .filter_map(|(ch, from)| {
            let (oldest, last) = held(ch);
            // Ahead of the ring's newest (any `from` up to u64::MAX) or still in the ring: the
            // hub answers it. Past this test `from < last`, so `from + 1` cannot overflow.
            let gap = from < last && from + 1 < oldest;
            gap.then_some(Gap {
                ch,
                from,
                until: last,
                max_bytes: share,
            })
        })
        .take(max_reads)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, SymbolId};

    fn ch(symbol: u32) -> ChannelId {
        ChannelId {
            kind: Kind::Ticks,
            symbol: SymbolId(symbol),
        }
    }

    /// Every channel's ring holds seqs 901..=1000.
    fn ring(_: ChannelId) -> (u64, u64) {
        (901, 1000)
    }

    #[test]
    fn only_gaps_older_than_the_ring_are_read_and_never_past_u64() {
        let resume: HashMap<ChannelId, u64> = [
            (ch(1), 10),       // older than the ring: read
            (ch(2), 899),      // 900 is missing from the ring: read
            (ch(3), 900),      // the ring replays it
            (ch(4), 1000),     // up to date
            (ch(5), 5000),     // ahead: the hub answers reset
            (ch(6), u64::MAX), // ahead, and `from + 1` would overflow
        ]
        .into();
        let gaps = plan(&resume, ring, 1 << 20, 100);
        let read: Vec<(ChannelId, u64, u64)> =
            gaps.iter().map(|g| (g.ch, g.from, g.until)).collect();
        assert_eq!(read, vec![(ch(1), 10, 1000), (ch(2), 899, 1000)]);
    }

    #[test]
    fn the_budget_is_shared_before_reading_and_reads_are_capped() {
        let room = 1 << 20;
        let resume: HashMap<ChannelId, u64> = (0..5_000).map(|s| (ch(s), 1)).collect();
        let gaps = plan(&resume, ring, room, 8);
        assert_eq!(gaps.len(), 8, "at most resume_max_reads reads");
        assert_eq!(
            gaps.iter().map(|g| g.ch).collect::<Vec<_>>(),
            (0..8).map(ch).collect::<Vec<_>>(),
            "in channel order"
        );
        let share = (room - 5_000 * HELD_ITEM_OVERHEAD) / 5_000;
        assert!(gaps.iter().all(|g| g.max_bytes == share), "{gaps:?}");
        // Whatever the cap, the shares together never exceed the budget.
        let all = plan(&resume, ring, room, usize::MAX);
        assert_eq!(all.len(), 5_000);
        assert!(all.iter().map(|g| g.max_bytes).sum::<usize>() <= room);
        // A budget too small for any data reads nothing.
        assert_eq!(plan(&resume, ring, 5_000 * HELD_ITEM_OVERHEAD, 8), vec![]);
    }
}
