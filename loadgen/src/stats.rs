//! Measurements: per-channel `seq` gap accounting, latency histograms and their percentiles.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track, in µs (one hour); larger values saturate.
const MAX_TRACKABLE_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("static histogram bounds are valid")
}

/// Latency histograms split into a few shards so connection tasks on different worker threads
/// rarely wait on each other. A shard's lock is held only to record one frame's events, never
/// across an `.await`, so a std `Mutex` is right here.
pub struct ShardedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

// === impl ShardedHistogram ===

impl ShardedHistogram {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    /// Records each latency (µs) into the shard for `key` under one lock.
    pub fn record_all(&self, key: usize, values_us: &[u64]) {
        if values_us.is_empty() {
            return;
        }
        let mut h = self.shards[key % self.shards.len()]
            .lock()
            .expect("histogram lock poisoned");
        for &v in values_us {
            h.saturating_record(v.max(1));
        }
    }

    /// Sum of all shards.
    pub fn merged(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for s in &self.shards {
            out.add(&*s.lock().expect("histogram lock poisoned"))
                .expect("same bounds");
        }
        out
    }
}

/// Latency percentiles in milliseconds (µs resolution).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Reads a histogram recorded in µs.
    pub fn from_histogram_us(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_ms: h.mean().round() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// What one concrete channel's `seq` numbers showed on one connection (or summed over many).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ChannelGaps {
    /// Events whose `seq` was more than one past the previous one.
    pub gap_events: u64,
    /// Sum of `seq - last - 1` over those events: events this client never saw.
    pub missed: u64,
    /// Events whose `seq` was not above the previous one (duplicates or reordering).
    pub out_of_order: u64,
}

impl ChannelGaps {
    pub fn add(&mut self, o: &ChannelGaps) {
        self.gap_events += o.gap_events;
        self.missed += o.missed;
        self.out_of_order += o.out_of_order;
    }
}

#[derive(Debug)]
struct ChannelState {
    /// The channel's name, kept for the report; lookups go by its hash.
    name: Box<str>,
    last: u64,
    gaps: ChannelGaps,
}

/// FNV-1a of a channel name. Every live event costs one lookup, and profiling showed SipHash
/// plus the key comparison as the loadgen's top cost; a 64-bit hash over at most a few thousand
/// channels per connection will not collide in practice, so the hash alone is the key.
fn channel_key(ch: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ch.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Passes a precomputed `u64` key straight through as the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Tracks the last `seq` per concrete channel on one connection.
///
/// Baselines are always updated; gaps are only counted when the caller says the event falls in
/// the measurement window, so warm-up jitter does not pollute the numbers.
#[derive(Debug, Default)]
pub struct SeqTracker {
    chans: HashMap<u64, ChannelState, BuildHasherDefault<KeyHasher>>,
}

// === impl SeqTracker ===

impl SeqTracker {
    /// A snapshot resets the channel's baseline to its `seq`; live events follow from there.
    pub fn on_snapshot(&mut self, ch: &str, seq: u64) {
        self.state(ch).last = seq;
    }

    /// Accounts one live event; returns the number of events missed just before it.
    pub fn on_event(&mut self, ch: &str, seq: u64, count: bool) -> u64 {
        let st = match self.chans.get_mut(&channel_key(ch)) {
            Some(st) => st,
            None => {
                // First sight of the channel without a snapshot: it sets the baseline.
                self.state(ch).last = seq;
                return 0;
            }
        };
        let mut missed = 0;
        if seq > st.last {
            missed = seq - st.last - 1;
            if count && missed > 0 {
                st.gaps.gap_events += 1;
                st.gaps.missed += missed;
            }
            st.last = seq;
        } else if count {
            st.gaps.out_of_order += 1;
        }
        missed
    }

    fn state(&mut self, ch: &str) -> &mut ChannelState {
        self.chans
            .entry(channel_key(ch))
            .or_insert_with(|| ChannelState {
                name: ch.into(),
                last: 0,
                gaps: ChannelGaps::default(),
            })
    }

    /// Adds this connection's per-channel gaps into `into`, skipping clean channels.
    pub fn merge_into(&self, into: &mut HashMap<String, ChannelGaps>) {
        for st in self.chans.values() {
            if st.gaps != ChannelGaps::default() {
                into.entry(st.name.to_string()).or_default().add(&st.gaps);
            }
        }
    }

    #[cfg(test)]
    pub fn channels(&self) -> usize {
        self.chans.len()
    }
}

/// Sum over a channel map.
pub fn total_gaps(m: &HashMap<String, ChannelGaps>) -> ChannelGaps {
    let mut t = ChannelGaps::default();
    for g in m.values() {
        t.add(g);
    }
    t
}

/// The `n` channels that missed the most events, worst first.
pub fn worst_channels(m: &HashMap<String, ChannelGaps>, n: usize) -> Vec<(String, ChannelGaps)> {
    let mut v: Vec<_> = m.iter().map(|(k, g)| (k.clone(), *g)).collect();
    v.sort_by(|a, b| b.1.missed.cmp(&a.1.missed).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_accounting() {
        let mut t = SeqTracker::default();
        t.on_snapshot("ticks:A", 10);
        assert_eq!(t.on_event("ticks:A", 11, true), 0);
        assert_eq!(t.on_event("ticks:A", 15, true), 3);
        assert_eq!(t.on_event("ticks:A", 16, true), 0);
        assert_eq!(t.on_event("ticks:A", 20, true), 3);
        // Duplicate and reordered events are counted apart and do not move the baseline.
        assert_eq!(t.on_event("ticks:A", 20, true), 0);
        assert_eq!(t.on_event("ticks:A", 18, true), 0);
        assert_eq!(t.on_event("ticks:A", 21, true), 0);
        // A channel seen first without a snapshot sets its baseline.
        assert_eq!(t.on_event("ticks:B", 100, true), 0);
        assert_eq!(t.on_event("ticks:B", 102, true), 1);

        let mut m = HashMap::new();
        t.merge_into(&mut m);
        assert_eq!(
            m["ticks:A"],
            ChannelGaps {
                gap_events: 2,
                missed: 6,
                out_of_order: 2
            }
        );
        assert_eq!(m["ticks:B"].missed, 1);
        let total = total_gaps(&m);
        assert_eq!((total.gap_events, total.missed), (3, 7));
        assert_eq!(worst_channels(&m, 1)[0].0, "ticks:A");
    }

    #[test]
    fn warmup_gaps_not_counted_but_baseline_moves() {
        let mut t = SeqTracker::default();
        t.on_snapshot("ticks:A", 1);
        t.on_event("ticks:A", 50, false);
        assert_eq!(t.on_event("ticks:A", 51, true), 0);
        let mut m = HashMap::new();
        t.merge_into(&mut m);
        assert!(m.is_empty(), "no gaps inside the window");
    }

    #[test]
    fn channel_keys_differ() {
        let names: Vec<String> = (0..5000)
            .flat_map(|i| [format!("ticks:S{i:04}"), format!("indicators:S{i:04}")])
            .collect();
        let mut keys: Vec<u64> = names.iter().map(|n| channel_key(n)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), names.len());
    }

    #[test]
    fn snapshot_rebases() {
        let mut t = SeqTracker::default();
        t.on_event("ticks:A", 5, true);
        t.on_snapshot("ticks:A", 40);
        assert_eq!(t.on_event("ticks:A", 41, true), 0);
        assert_eq!(t.channels(), 1);
    }

    #[test]
    fn percentiles_in_ms() {
        let h = ShardedHistogram::new(3);
        let values: Vec<u64> = (1..=10_000).collect();
        for (i, chunk) in values.chunks(1000).enumerate() {
            h.record_all(i, chunk);
        }
        let p = Percentiles::from_histogram_us(&h.merged());
        assert_eq!(p.count, 10_000);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002 + 0.001;
        assert!(near(p.p50_ms, 5.0), "{p:?}");
        assert!(near(p.p90_ms, 9.0), "{p:?}");
        assert!(near(p.p99_ms, 9.9), "{p:?}");
        assert!(near(p.p999_ms, 9.99), "{p:?}");
        assert!(near(p.max_ms, 10.0), "{p:?}");
        assert!(near(p.mean_ms, 5.0), "{p:?}");
    }

    #[test]
    fn percentiles_resolution_and_empty() {
        assert_eq!(
            Percentiles::from_histogram_us(&new_histogram()),
            Percentiles::default()
        );
        let mut h = new_histogram();
        h.record(1234).unwrap();
        let p = Percentiles::from_histogram_us(&h);
        assert_eq!(p.p50_ms, 1.234, "µs resolution at small values");
        // Zero latencies (clock granularity) are kept as 1 µs, huge ones saturate.
        let s = ShardedHistogram::new(1);
        s.record_all(0, &[0, u64::MAX]);
        let m = s.merged();
        assert_eq!(m.len(), 2);
        assert_eq!(m.min(), 1);
    }
}
