//! Serialize-once fan-out: one tick encoded once and pushed to 1,000 subscriber queues, against
//! encoding it once per subscriber (what a naive server does).
//!
//! `cargo bench --bench fanout`

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickcast::model::{ChannelId, Kind, Side, SymbolId, Tick};
use tickcast::protocol::encode_tick;
use tickcast::rooms::{Outbox, OutboxLimits};

const SUBSCRIBERS: usize = 1000;

fn fanout(c: &mut Criterion) {
    let ch = ChannelId {
        kind: Kind::Ticks,
        symbol: SymbolId(0),
    };
    let tick = Tick {
        symbol: SymbolId(0),
        price: 189.23,
        size: 100.0,
        side: Some(Side::Buy),
        exchange_ts: 1_764_070_000_123_456_789,
        ts: 1_764_070_000_123_456_789,
    };
    let limits = OutboxLimits {
        max_events: 4096,
        max_bytes: 1 << 20,
        max_held_bytes: 1 << 20,
    };
    // Each iteration also drains every queue, as the writers would, so memory stays flat.
    let outboxes: Vec<Arc<Outbox>> = (0..SUBSCRIBERS)
        .map(|_| Arc::new(Outbox::new(limits)))
        .collect();
    let mut sink = VecDeque::new();
    let mut drain_all = |outboxes: &[Arc<Outbox>]| {
        let now = Instant::now();
        for o in outboxes {
            o.drain(now, &mut sink);
            sink.clear();
        }
    };

    let mut g = c.benchmark_group("fanout_1000");
    g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    let mut seq = 0;
    g.bench_function("serialize_once_shared_bytes", |b| {
        b.iter(|| {
            seq += 1;
            let bytes = encode_tick("ticks:AAPL", seq, &tick);
            let now = Instant::now();
            for o in &outboxes {
                o.push_event(ch, &bytes, None, now);
            }
            for o in &outboxes {
                o.wake();
            }
            drain_all(&outboxes);
        });
    });
    g.bench_function("serialize_per_subscriber", |b| {
        b.iter(|| {
            seq += 1;
            let now = Instant::now();
            for o in &outboxes {
                let bytes = encode_tick(black_box("ticks:AAPL"), seq, &tick);
                o.push_event(ch, &bytes, None, now);
            }
            drain_all(&outboxes);
        });
    });
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
