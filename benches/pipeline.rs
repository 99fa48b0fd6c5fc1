//! The indicator batch: 10,000 symbols with 100 ticks each per second, through the worker pool
//! (bars, indicators, output), as the coordinator runs it once a second: with the v1 bar
//! intervals (1 s, 1 m), with the v1 intervals and three SMAs (`pipeline.indicators.sma =
//! [20, 50, 200]`), and with every interval (1 s ... 1 d), in the same run.
//!
//! `cargo bench --bench pipeline`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tickcast::model::{BarIntervals, IndicatorPeriods, Side, SymbolId, Tick};
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

fn pipeline(c: &mut Criterion) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = c.benchmark_group("pipeline_batch");
    g.sample_size(10);
    g.throughput(Throughput::Elements(
        SYMBOLS as u64 * TICKS_PER_SYMBOL as u64,
    ));
    let mut second = 1_700_000_000i64;
    let three_smas = IndicatorPeriods {
        sma: vec![20, 50, 200],
        ..IndicatorPeriods::default()
    };
    // Each with the ticker on (the default) and off: what the rolling 24 h ticker adds to a batch.
    for (name, intervals, periods, ticker) in [
        (
            "v1_intervals",
            BarIntervals::V1,
            IndicatorPeriods::default(),
            true,
        ),
        (
            "v1_intervals_ticker_off",
            BarIntervals::V1,
            IndicatorPeriods::default(),
            false,
        ),
        ("v1_intervals_3_smas", BarIntervals::V1, three_smas, true),
        (
            "all_intervals",
            BarIntervals::ALL,
            IndicatorPeriods::default(),
            true,
        ),
        (
            "all_intervals_ticker_off",
            BarIntervals::ALL,
            IndicatorPeriods::default(),
            false,
        ),
    ] {
        let warm_up = periods.sma.iter().max().copied().unwrap_or(0).max(20) + 5;
        let pool = WorkerPool::new(workers, periods, intervals).expect("pool starts");
        // Warm the pool up past indicator warm-up, so the measured batches do all the work.
        for _ in 0..warm_up {
            second += 1;
            pool.run_batch(
                second_of_ticks(second),
                BatchClock {
                    now_ms: second * 1000,
                    partial_bars: true,
                    wall_ms: second * 1000,
                    ticker,
                },
            );
        }
        g.bench_function(
            format!("{SYMBOLS}_symbols_x_{TICKS_PER_SYMBOL}_ticks_{workers}_workers_{name}"),
            |b| {
                b.iter_batched(
                    || {
                        second += 1;
                        (second_of_ticks(second), second)
                    },
                    |(work, s)| {
                        pool.run_batch(
                            work,
                            BatchClock {
                                now_ms: s * 1000,
                                partial_bars: true,
                                // A wall second of its own per batch: a ticker each time (when on).
                                wall_ms: s * 1000,
                                ticker,
                            },
                        )
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
