//! What a rate-limited request pays for its keyed limiter (the REST limiter by address or
//! verified key, the WebSocket upgrade limiter by address) once the table holds 100,000 busy keys
//! (a spread of addresses each with a token taken within the last hour, so no prune can drop
//! them): the rule before (a full prune scan on every check past 10,000 keys, kept here as the
//! reference) against `KeyedLimiter` (a scan only when the table has doubled since the last).
//!
//! `cargo bench -j 2 --bench limits -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use governor::{DefaultKeyedRateLimiter, Quota};
use tickcast::client::{KeyedLimiter, LIMITER_PRUNE_AT};

const KEYS: u64 = 100_000;

/// The check before: prune on every request once the table passed 10,000 keys.
fn check_scanning(limiter: &DefaultKeyedRateLimiter<u64>, key: &u64) -> bool {
    if limiter.len() > LIMITER_PRUNE_AT {
        limiter.retain_recent();
    }
    limiter.check_key(key).is_ok()
}

fn limits(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed_limiter_100k_busy_keys");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    // One token an hour: every key stays busy for the whole run.
    let hourly = Quota::with_period(Duration::from_secs(3600))
        .expect("a period")
        .allow_burst(NonZeroU32::MIN);
    let before = DefaultKeyedRateLimiter::<u64>::dashmap(hourly);
    for key in 0..KEYS {
        let _ = before.check_key(&key);
    }
    let mut key = 0;
    g.bench_function("check_scan_every_request_before", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            check_scanning(black_box(&before), &key)
        })
    });
    let after = KeyedLimiter::<u64>::new(hourly);
    for key in 0..KEYS {
        let _ = after.check(&key);
    }
    g.bench_function("check_scan_on_doubling_after", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            black_box(&after).check(&key).is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, limits);
criterion_main!(benches);
