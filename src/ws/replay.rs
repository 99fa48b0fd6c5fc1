//! Replay from a time (`"from_ts"` on a subscribe): which channels it may name, how old it may
//! be, and the stored ticks read before the hub replays the rest from its rings
//! (`rooms/catch_up.rs`).
//!
//! Ticks are stored with their `seq` (`(symbol, epoch, seq)` is a stored tick's identity), so
//! those of this run that left the ring are read back from the store by `seq` and handed over
//! to the ring exactly. The other kinds replay what their rings hold.

use std::collections::HashMap;

use serde_json::Value;

use crate::model::{ChannelId, Kind, Wire};
use crate::rooms::{HELD_ITEM_OVERHEAD, Target};
use crate::timestamp;

/// This run's ticks as the store holds them, for replays older than the rings.
pub trait StoredTicks: Send + Sync + std::fmt::Debug {
    /// The encoded ticks of `ch` (named `name` on the wire) of this run with `after < seq <
    /// before`, oldest first, starting at `after + 1` or, without `after`, at the lowest `seq`
    /// whose exchange time is at or after `since_ns`; at most `max_bytes` of them. Each with
    /// its `seq`. Empty when the store cannot be read (the hub then replays what the ring has).
    fn run(
        &self,
        ch: ChannelId,
        name: &str,
        since_ns: i64,
        after: Option<u64>,
        before: u64,
        max_bytes: usize,
    ) -> futures_util::future::BoxFuture<'_, Vec<(u64, Wire)>>;
}

/// `from_ts` as sent: an integer by the magnitude rule (ms below 1e14, else ns) or an RFC 3339
/// string, the time rule of every input.
pub(super) fn parse_from_ts(v: &Value) -> Result<i64, String> {
    let parsed = match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => timestamp::from_integer(i),
            None => return Err(format!("`from_ts` must be an integer or a time, got {n}")),
        },
        Value::String(s) => timestamp::parse(s),
        other => {
            return Err(format!(
                "`from_ts` must be an integer or a time, got {other}"
            ));
        }
    };
    parsed.map_err(|e| format!("`from_ts`: {e}"))
}

/// Why a subscribe's `from_ts` cannot be served: every target must be a concrete channel of a
/// kind a time selects events of, and the time within `ws.replay_max_age_ms` of `now_ns`.
pub(super) fn check(
    targets: &[Target],
    names: &[String],
    from_ts: i64,
    now_ns: i64,
    max_age_ms: u64,
) -> Result<(), String> {
    for (t, name) in targets.iter().zip(names) {
        match t {
            Target::Wildcard(_) => {
                return Err(format!(
                    "`from_ts` replays concrete channels, not {name}: name each symbol"
                ));
            }
            Target::Channel(ch) if !ch.kind.replays_from_time() => {
                return Err(format!(
                    "`from_ts` does not apply to {name}: its snapshot is its current state"
                ));
            }
            Target::Channel(_) => {}
        }
    }
    let max_age_ns = i64::try_from(max_age_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    if from_ts < now_ns.saturating_sub(max_age_ns) {
        return Err(format!(
            "`from_ts` is more than {max_age_ms} ms ago (ws.replay_max_age_ms): read older \
             history from REST"
        ));
    }
    Ok(())
}

/// What one channel reads from the store: the ticks of a channel whose replay starts before
/// its ring (`held`: the ring's oldest and newest `seq`).
pub(super) struct StoreRead {
    pub ch: ChannelId,
    /// Continue after this `seq` (the subscribe's `from` for the channel), else from the time.
    pub after: Option<u64>,
    /// The ring's oldest `seq`: the store is read up to it.
    pub before: u64,
}

/// The ticks channels of a `from_ts` subscribe whose replay may start before their ring:
/// those whose ring does not hold all of this run's events, unless their `from` is in it.
pub(super) fn store_reads(
    targets: &[Target],
    from: &HashMap<ChannelId, u64>,
    held: impl Fn(ChannelId) -> (u64, u64),
) -> Vec<StoreRead> {
    targets
        .iter()
        .filter_map(|t| match t {
            Target::Channel(ch) if ch.kind == Kind::Ticks => Some(*ch),
            _ => None,
        })
        .filter_map(|ch| {
            let (oldest, _) = held(ch);
            let after = from.get(&ch).copied();
            // Nothing of this run is older than the ring (it starts at seq 1), or the resume
            // point is in it.
            let older = oldest > 1 && after.is_none_or(|f| f + 1 < oldest);
            older.then_some(StoreRead {
                ch,
                after,
                before: oldest,
            })
        })
        .collect()
}

/// Each read's share of `room` bytes, after every channel's envelope.
pub(super) fn share(room: usize, channels: usize) -> usize {
    let n = channels.max(1);
    room.saturating_sub(n.saturating_mul(HELD_ITEM_OVERHEAD)) / n
}

/// The stored events as the hub takes them: the contiguous run from the first one, and the
/// `seq` it ends at; `None` when there are none.
pub(super) fn contiguous(rows: Vec<(u64, Wire)>) -> Option<(u64, Vec<Wire>)> {
    let first = rows.first()?.0;
    let mut out = Vec::with_capacity(rows.len());
    let mut last = first - 1;
    for (seq, wire) in rows {
        if seq != last + 1 {
            break;
        }
        last = seq;
        out.push(wire);
    }
    Some((last, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SymbolId;
    use serde_json::json;

    fn ch(kind: Kind) -> ChannelId {
        ChannelId {
            kind,
            symbol: SymbolId(0),
        }
    }

    #[test]
    fn from_ts_follows_the_time_rule() {
        assert_eq!(
            parse_from_ts(&json!(1_764_070_000_000i64)),
            Ok(1_764_070_000_000_000_000)
        );
        assert_eq!(
            parse_from_ts(&json!("2025-11-25T11:26:40Z")),
            Ok(1_764_070_000_000_000_000)
        );
        for bad in [
            json!(-5),
            json!("yesterday"),
            json!(1.5),
            json!(true),
            json!(0),
        ] {
            assert!(parse_from_ts(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_concrete_replayable_channels_within_the_maximum_age() {
        let now = 10_000 * 1_000_000_000i64;
        let names = |n: usize| vec!["x".to_owned(); n];
        let ok = [
            Target::Channel(ch(Kind::Ticks)),
            Target::Channel(ch(Kind::Bbo)),
        ];
        assert_eq!(check(&ok, &names(2), now - 1_000, now, 60_000), Ok(()));
        let too_old = check(&ok, &names(2), now - 61_000_000_000, now, 60_000).unwrap_err();
        assert!(too_old.contains("ws.replay_max_age_ms"), "{too_old}");
        for bad in [
            Target::Wildcard(Kind::Ticks),
            Target::Channel(ch(Kind::Book)),
        ] {
            assert!(check(&[bad], &names(1), now, now, 60_000).is_err());
        }
    }

    #[test]
    fn the_store_is_read_for_ticks_older_than_the_ring_only() {
        let t = [
            Target::Channel(ch(Kind::Ticks)),
            Target::Channel(ch(Kind::Bars(crate::model::BarInterval::S1))),
        ];
        let reads = |from: &[(ChannelId, u64)], oldest: u64| {
            let from: HashMap<ChannelId, u64> = from.iter().copied().collect();
            store_reads(&t, &from, |_| (oldest, 500))
                .into_iter()
                .map(|r| (r.ch.kind, r.after, r.before))
                .collect::<Vec<_>>()
        };
        assert_eq!(reads(&[], 1), vec![], "the ring holds the whole run");
        assert_eq!(reads(&[], 300), vec![(Kind::Ticks, None, 300)]);
        assert_eq!(
            reads(&[(ch(Kind::Ticks), 299)], 300),
            vec![],
            "from is in the ring"
        );
        assert_eq!(
            reads(&[(ch(Kind::Ticks), 100)], 300),
            vec![(Kind::Ticks, Some(100), 300)]
        );
    }

    #[test]
    fn a_stored_run_stops_at_its_first_hole() {
        let w = |n: u8| Wire::new(vec![n].into(), vec![n].into());
        assert_eq!(contiguous(vec![]), None);
        let (upto, events) = contiguous(vec![(5, w(5)), (6, w(6)), (8, w(8))]).unwrap();
        assert_eq!((upto, events.len()), (6, 2));
    }
}
