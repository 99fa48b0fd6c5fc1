//! Test fixtures for the hub: events whose bytes name their channel and `seq`, and a snapshot
//! encoder that prints what it was given.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{Hub, HubConfig, Outbox, OutboxLimits, SnapshotView, Subscribe, Target};
use crate::model::{ChannelId, Event, Kind, Payload, Side, SymbolId, Tick};
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
        bytes: Bytes::from(format!("{}#{}", channel.symbol.0, seq)),
    }
}

pub(super) fn encode(v: &SnapshotView<'_>) -> Bytes {
    let seqs: Vec<String> = v.events.iter().map(|e| e.seq.to_string()).collect();
    Bytes::from(format!(
        "snap {}@{} [{}]{}",
        v.channel.symbol.0,
        v.seq,
        seqs.join(","),
        if v.reset { " reset" } else { "" }
    ))
}

pub(super) fn hub() -> Hub {
    Hub::new(
        HubConfig {
            ring_capacity: 4,
            snapshot_depth: 2,
        },
        Arc::new(Metrics::default()),
    )
}

pub(super) fn outbox() -> Arc<Outbox> {
    Arc::new(Outbox::new(OutboxLimits {
        max_events: 1000,
        max_bytes: 1 << 20,
    }))
}

pub(super) fn drain(o: &Outbox) -> Vec<String> {
    let mut out = VecDeque::new();
    o.drain(Instant::now(), &mut out);
    out.iter()
        .map(|i| String::from_utf8_lossy(i.bytes()).into_owned())
        .collect()
}

pub(super) fn sub(targets: Vec<Target>) -> Subscribe {
    Subscribe {
        targets,
        ..Subscribe::default()
    }
}
