//! Test fixtures for the hub: events whose bytes name their channel and `seq`, and a drain that
//! prints snapshots as `snap SYMBOL@SEQ [seqs]`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{Hub, HubConfig, Item, Outbox, OutboxLimits, Subscribe, Target};
use crate::model::{ChannelId, Event, Kind, Payload, Side, SymbolId, Tick, Wire};
use crate::telemetry::metrics::Metrics;

pub(super) fn ch(kind: Kind, s: u32) -> ChannelId {
    ChannelId {
        kind,
        symbol: SymbolId(s),
    }
}

pub(super) fn tick(channel: ChannelId, seq: u64) -> Event {
    Event {
        channel,
        seq,
        ts: seq as i64,
        payload: Payload::Tick(Tick {
            symbol: channel.symbol,
            price: 1.0,
            size: 1.0,
            side: Some(Side::Buy),
            exchange_ts: 0,
            ts: 0,
        }),
        wire: {
            let b = Bytes::from(format!("{}#{}", channel.symbol.0, seq));
            Wire::new(b.clone(), b)
        },
        book: None,
    }
}

pub(super) fn hub() -> Hub {
    Hub::new(
        HubConfig {
            ring_capacity: 4,
            long_bar_ring_capacity: 4,
            snapshot_depth: 2,
            portfolio_ring_capacity: 4,
        },
        Arc::new(Metrics::default()),
    )
}

pub(super) fn outbox() -> Arc<Outbox> {
    outbox_holding(1 << 20)
}

/// An outbox whose held budget (snapshots, replays, replies) is `held` bytes.
pub(super) fn outbox_holding(held: usize) -> Arc<Outbox> {
    Arc::new(Outbox::new(OutboxLimits {
        max_events: 4,
        max_bytes: 1 << 20,
        max_held_bytes: held,
    }))
}

pub(super) fn drain(o: &Outbox) -> Vec<String> {
    let mut out = VecDeque::new();
    o.drain(Instant::now(), &mut out);
    // A shared batch shows as the events it holds, as a writer sends them.
    out.iter()
        .flat_map(|item| match item {
            Item::Batch(batch) => batch
                .events
                .iter()
                .map(|(_, w)| String::from_utf8_lossy(w.json()).into_owned())
                .collect(),
            other => vec![show(other)],
        })
        .collect()
}

/// An item as the tests compare it: events and replies as their bytes, snapshots as
/// `snap SYMBOL@SEQ [seqs]`, with ` reset` when marked.
pub(super) fn show(item: &Item) -> String {
    match item {
        Item::Control(b) => String::from_utf8_lossy(b).into_owned(),
        Item::Replay { wire: w, .. } | Item::Event { wire: w, .. } => {
            String::from_utf8_lossy(w.json()).into_owned()
        }
        Item::Batch(batch) => format!("batch of {}", batch.events.len()),
        Item::ReplayDone(d) => format!(
            "done {}@{}{}",
            d.channel.symbol.0,
            d.seq,
            if d.more { " more" } else { "" }
        ),
        Item::Snapshot(s) => {
            let seqs: Vec<String> = s
                .events
                .iter()
                .map(|e| {
                    let text = String::from_utf8_lossy(e.json());
                    text.split('#').nth(1).unwrap_or_default().to_owned()
                })
                .collect();
            format!(
                "snap {}@{} [{}]{}",
                s.channel.symbol.0,
                s.seq,
                seqs.join(","),
                if s.reset { " reset" } else { "" }
            )
        }
    }
}

pub(super) fn sub(targets: Vec<Target>) -> Subscribe {
    Subscribe {
        targets,
        ..Subscribe::default()
    }
}
