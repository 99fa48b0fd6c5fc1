//! The identity of an imported tick: derived from its content, never from the file it came in.
//!
//! A stored tick is unique by `(symbol, epoch, seq)`. Live ticks carry their server run's epoch
//! (positive: µs at start-up, or the cluster stream's) and ingest's `seq`; ticks migrated from
//! before identities carry `-id`. Imported ticks all carry [`IMPORT_EPOCH`] (`i64::MIN`, which
//! neither ever takes) and, as `seq`, a 63-bit hash of `(symbol, ts, price, size, side, k)`,
//! where `k` counts the earlier trades of the same file identical in all five fields (0 for the
//! first). The same history imported again, plain or compressed, CSV or JSONL, in one file or
//! split at other places, so gets the same identities, and `ON CONFLICT DO NOTHING` stores it
//! once.
//!
//! Limits (README "Importing history"): two distinct trades whose five fields are equal are told
//! apart only by `k`, so when a split puts such a pair in two files the second file's copy is
//! taken for the first's; `k` is counted among the trades at the file's latest time (the count
//! restarts when the time moves on), so in a file not in time order an identical trade that comes
//! back to an earlier time is taken for the first one; and ticks recorded live are not
//! recognised (their identity is the run's): importing history the live feed already recorded
//! stores it twice. Two different trades of a symbol share a hash with odds of about n² / 2⁶⁴
//! for n ticks of that symbol.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::{RawTick, Side};

/// The epoch of every imported tick and bar: never a server run's (those are positive) nor a
/// migrated row's (`-id`).
pub const IMPORT_EPOCH: i64 = i64::MIN;

/// FNV-1a over the bytes, then the SplitMix64 finaliser so every input bit reaches every output
/// bit. Written out here (not `std`'s hasher, whose output may change between releases): stored
/// identities must not change with the compiler.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("AB", "C") and ("A", "BC") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn side_byte(side: Option<Side>) -> u8 {
    match side {
        Some(Side::Buy) => 0,
        Some(Side::Sell) => 1,
        None => 2,
    }
}

/// The `seq` of an imported tick: the stable hash of its content and `k`, in `0..2⁶³`.
pub(crate) fn tick_seq(t: &RawTick, k: u32) -> i64 {
    let h = stable_hash(&[
        t.symbol.as_bytes(),
        &t.exchange_ts.to_le_bytes(),
        &t.price.to_bits().to_le_bytes(),
        &t.size.to_bits().to_le_bytes(),
        &[side_byte(t.side)],
        &k.to_le_bytes(),
    ]);
    (h >> 1) as i64
}

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Counts identical trades at the file's latest time, giving each its `k`.
#[derive(Default)]
pub(crate) struct Repeats {
    /// Content hash (`k` = 0) → trades seen with it at `latest_ts`.
    seen: HashMap<i64, u32, BuildHasherDefault<PassThrough>>,
    latest_ts: i64,
}

impl Repeats {
    /// The `seq` of the next trade of the file.
    pub(crate) fn seq(&mut self, t: &RawTick) -> i64 {
        if t.exchange_ts > self.latest_ts {
            // In a file in time order no trade can repeat one from an earlier time: forget them,
            // so memory stays bounded by the trades of one timestamp.
            self.seen.clear();
            self.latest_ts = t.exchange_ts;
        }
        let first = tick_seq(t, 0);
        let count = self.seen.entry(first).or_insert(0);
        let k = *count;
        *count = count.saturating_add(1);
        if k == 0 { first } else { tick_seq(t, k) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, ts: i64, price: f64, size: f64, side: Option<Side>) -> RawTick {
        RawTick {
            symbol: symbol.into(),
            price,
            size,
            side,
            exchange_ts: ts,
        }
    }

    #[test]
    fn the_hash_is_pinned_and_63_bits() {
        // A change here changes every imported tick's identity: re-imports would store twice.
        let t = tick(
            "BTC-USD",
            1_700_000_000_000_000_000,
            42_000.5,
            0.25,
            Some(Side::Buy),
        );
        assert_eq!(tick_seq(&t, 0), 8_490_532_872_362_914_390);
        for k in 0..1000 {
            assert!(tick_seq(&t, k) >= 0);
        }
    }

    #[test]
    fn every_field_and_k_count_in_the_identity() {
        let base = tick("A", 1, 1.0, 1.0, Some(Side::Buy));
        let variants = [
            tick("B", 1, 1.0, 1.0, Some(Side::Buy)),
            tick("A", 2, 1.0, 1.0, Some(Side::Buy)),
            tick("A", 1, 1.5, 1.0, Some(Side::Buy)),
            tick("A", 1, 1.0, 2.0, Some(Side::Buy)),
            tick("A", 1, 1.0, 1.0, Some(Side::Sell)),
            tick("A", 1, 1.0, 1.0, None),
        ];
        let mut seqs: Vec<i64> = variants.iter().map(|t| tick_seq(t, 0)).collect();
        seqs.push(tick_seq(&base, 0));
        seqs.push(tick_seq(&base, 1));
        let distinct: std::collections::HashSet<_> = seqs.iter().collect();
        assert_eq!(distinct.len(), seqs.len(), "{seqs:?}");
    }

    #[test]
    fn repeats_number_identical_trades_and_restart_when_time_moves_on() {
        let a = tick("A", 10, 1.0, 1.0, None);
        let b = tick("B", 10, 1.0, 1.0, None);
        let mut r = Repeats::default();
        let got = [r.seq(&a), r.seq(&b), r.seq(&a), r.seq(&a)];
        assert_eq!(
            got,
            [
                tick_seq(&a, 0),
                tick_seq(&b, 0),
                tick_seq(&a, 1),
                tick_seq(&a, 2)
            ]
        );
        // The same trades in another file, or split after the first: the same identities.
        let mut again = Repeats::default();
        assert_eq!(again.seq(&a), got[0]);
        let later = tick("A", 11, 1.0, 1.0, None);
        assert_eq!(r.seq(&later), tick_seq(&later, 0));
        assert!(r.seen.len() == 1, "older times are forgotten");
    }
}
