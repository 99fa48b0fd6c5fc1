//! The indicator batch: 10,000 symbols with 100 ticks each per second, through the worker pool
//! (bars, indicators, output), as the coordinator runs it once a second; with the rolling 24 h
//! ticker (`pipeline.ticker`, the default) and without it.
//!
//! `cargo bench --bench pipeline`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tickcast::model::{IndicatorPeriods, Side, SymbolId, Tick};
use tickcast::pipeline::worker::{BatchClock, SymbolTicks, WorkerPool};

const SYMBOLS: u32 = 10_000;
const TICKS_PER_SYMBOL: usize = 100;

/// One second of ticks for every symbol, exchange times spread over second `s`.
fn second_of_ticks(s: i64) -> Vec<SymbolTicks> {
    (0..SYMBOLS)
        .map(|sym| SymbolTicks {
            symbol: SymbolId(sym),
            ticks: (0..TICKS_PER_SYMBOL)
                .map(|i| Tick {
                    symbol: SymbolId(sym),
                    price: 100.0 + ((s as f64 + i as f64 * 0.37 + sym as f64).sin()),
                    size: 1.0 + (i % 7) as f64,
                    side: Some(if i % 2 == 0 { Side::Buy } else { Side::Sell }),
                    exchange_ts: (s * 1000 + (i as i64 * 10)) * 1_000_000,
                    // Arrives when stamped, like a live feed.
                    ts: (s * 1000 + (i as i64 * 10)) * 1_000_000,
                })
                .collect(),
        })
        .collect()
}

fn clock(second: i64, ticker: bool) -> BatchClock {
    BatchClock {
        now_ms: second * 1000,
        partial_bars: true,
        // Every batch in a wall second of its own, as the coordinator's: a ticker each time.
        wall_ms: second * 1000,
        ticker,
    }
}

fn pipeline(c: &mut Criterion) {
    for ticker in [true, false] {
        batch(c, ticker);
    }
}

fn batch(c: &mut Criterion, ticker: bool) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = WorkerPool::new(workers, IndicatorPeriods::default()).expect("pool starts");
    let mut g = c.benchmark_group("pipeline_batch");
    g.sample_size(10);
    g.throughput(Throughput::Elements(
        SYMBOLS as u64 * TICKS_PER_SYMBOL as u64,
    ));
    let mut second = 1_700_000_000i64;
    // Warm the pool up past indicator warm-up, so the measured batches do all the work.
    for _ in 0..25 {
        second += 1;
        pool.run_batch(second_of_ticks(second), clock(second, ticker));
    }
    g.bench_function(
        format!(
            "{SYMBOLS}_symbols_x_{TICKS_PER_SYMBOL}_ticks_{workers}_workers_ticker_{}",
            if ticker { "on" } else { "off" }
        ),
        |b| {
            b.iter_batched(
                || {
                    second += 1;
                    (second_of_ticks(second), second)
                },
                |(work, s)| pool.run_batch(work, clock(s, ticker)),
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
