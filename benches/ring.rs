//! Ring buffer hot paths: push (every ingested event) and replay (every resume).
//!
//! `cargo bench --bench ring`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickcast::model::{ChannelId, Event, Kind, Payload, Side, SymbolId, Tick, Wire};
use tickcast::ring::Ring;

fn event(seq: u64) -> Event {
    let tick = Tick {
        symbol: SymbolId(0),
        price: 100.0,
        size: 1.0,
        side: Some(Side::Buy),
        exchange_ts: 1,
        ts: 1,
    };
    Event {
        channel: ChannelId {
            kind: Kind::Ticks,
            symbol: SymbolId(0),
        },
        seq,
        ts: 1,
        payload: Payload::Tick(tick),
        wire: Wire::new(
            Bytes::from_static(b"{\"type\":\"tick\"}"),
            Bytes::from_static(&[0x91, 0x01]),
        ),
        book: None,
    }
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    g.bench_function("push_full_1024", |b| {
        let mut r = Ring::new(1024);
        let mut seq = 0;
        for _ in 0..2048 {
            seq += 1;
            r.push(event(seq));
        }
        b.iter(|| {
            seq += 1;
            r.push(black_box(event(seq)));
        })
    });
    let mut r = Ring::new(1024);
    for s in 1..=4096 {
        r.push(event(s));
    }
    g.throughput(Throughput::Elements(100));
    g.bench_function("replay_last_100", |b| {
        b.iter(|| {
            let it = black_box(&r).replay(black_box(3996)).expect("held");
            it.map(|e| black_box(e).wire.len() as u64).sum::<u64>()
        })
    });
    g.finish();
}

criterion_group!(benches, ring);
criterion_main!(benches);
