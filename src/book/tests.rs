use proptest::prelude::*;

use super::*;

fn update(snapshot: bool, bids: &[Level], asks: &[Level]) -> BookUpdate {
    BookUpdate {
        symbol: "BTC-USD".into(),
        snapshot,
        bids: bids.to_vec(),
        asks: asks.to_vec(),
        exchange_ts: 1,
    }
}

#[test]
fn a_book_orders_its_sides_and_removes_size_zero() {
    let mut b = Book::default();
    b.apply(
        &update(
            true,
            &[(100.0, 1.0), (101.0, 2.0), (99.5, 3.0)],
            &[(102.0, 4.0), (101.5, 5.0)],
        ),
        100,
    );
    assert_eq!(
        b.view(2),
        BookView {
            bids: vec![(101.0, 2.0), (100.0, 1.0)],
            asks: vec![(101.5, 5.0), (102.0, 4.0)],
        }
    );
    b.apply(&update(false, &[(101.0, 0.0)], &[(101.5, 7.0)]), 100);
    assert_eq!(b.view(1).bids, vec![(100.0, 1.0)]);
    assert_eq!(b.view(1).asks, vec![(101.5, 7.0)]);
    // A snapshot replaces everything.
    b.apply(&update(true, &[(50.0, 1.0)], &[]), 100);
    assert_eq!(
        b.view(10),
        BookView {
            bids: vec![(50.0, 1.0)],
            asks: vec![]
        }
    );
}

#[test]
fn a_book_keeps_at_most_max_levels_per_side_dropping_the_farthest() {
    let mut b = Book::default();
    let bids: Vec<Level> = (1..=10).map(|i| (f64::from(i), 1.0)).collect();
    let asks: Vec<Level> = (11..=20).map(|i| (f64::from(i), 1.0)).collect();
    assert_eq!(b.apply(&update(true, &bids, &asks), 4), 12);
    assert_eq!(b.len(), 8);
    let v = b.view(10);
    assert_eq!(v.bids.first(), Some(&(10.0, 1.0)));
    assert_eq!(v.bids.last(), Some(&(7.0, 1.0)));
    assert_eq!(v.asks.last(), Some(&(14.0, 1.0)));
}

#[test]
fn the_checksum_is_crc32_of_the_interleaved_top_levels() {
    let v = BookView {
        bids: vec![(187.25, 100.0), (187.2, 0.5)],
        asks: vec![(187.3, 5.0), (187.35, 12.0)],
    };
    // zlib.crc32(b"187.25:100:187.3:5:187.2:0.5:187.35:12")
    assert_eq!(v.checksum(), 4_035_929_231);
    // Only the top ten per side count.
    let deep = BookView {
        bids: (0..12).map(|i| (100.0 - f64::from(i), 1.0)).collect(),
        asks: vec![],
    };
    let mut deeper = deep.clone();
    deeper.bids[11].1 = 9.0;
    assert_eq!(deep.checksum(), deeper.checksum());
    deeper.bids[9].1 = 9.0;
    assert_ne!(deep.checksum(), deeper.checksum());
}

#[test]
fn updates_are_validated() {
    let ok = update(false, &[(1.0, 0.0)], &[(2.0, 1.0)]);
    assert_eq!(ok.validate(), Ok(()));
    let cases = [
        (update(false, &[(0.0, 1.0)], &[]), BookError::Price(0.0)),
        (update(false, &[], &[(1.0, -1.0)]), BookError::Size(-1.0)),
        (
            BookUpdate {
                symbol: "btc".into(),
                ..ok.clone()
            },
            BookError::Symbol("btc".into()),
        ),
        (
            BookUpdate {
                exchange_ts: 0,
                ..ok.clone()
            },
            BookError::Time(0),
        ),
    ];
    for (u, want) in cases {
        assert_eq!(u.validate(), Err(want));
    }
    assert!(matches!(
        update(false, &[(f64::NAN, 1.0)], &[]).validate(),
        Err(BookError::Price(_))
    ));
}

fn levels() -> impl Strategy<Value = Vec<Level>> {
    // Prices on a small grid so updates hit existing levels often; size 0 removes.
    prop::collection::vec(
        (
            (1u32..40).prop_map(f64::from),
            (0u32..4).prop_map(f64::from),
        ),
        0..12,
    )
}

proptest! {
    /// A client that starts from a view and applies each published delta always holds the
    /// server's view, whatever the updates (snapshots included) and the depth.
    #[test]
    fn applying_the_deltas_always_yields_the_view(
        steps in prop::collection::vec((any::<bool>(), levels(), levels()), 1..40),
        depth in 1usize..8,
    ) {
        let mut book = Book::default();
        let mut published = BookView::default();
        let mut client = BookView::default();
        for (snapshot, bids, asks) in steps {
            book.apply(&update(snapshot, &bids, &asks), 16);
            let view = book.view(depth);
            let delta = published.diff(&view);
            prop_assert_eq!(&delta, &diff_reference(&published, &view));
            client.apply(&delta, depth);
            prop_assert_eq!(&client, &view);
            prop_assert_eq!(client.checksum(), view.checksum());
            // A narrower view derived from the same views is consistent too.
            let mut narrow = published.top(depth.min(3));
            narrow.apply(&published.top(depth.min(3)).diff(&view.top(depth.min(3))), depth.min(3));
            prop_assert_eq!(narrow, view.top(depth.min(3)));
            published = view;
        }
    }
}

// --- Number formatting for the checksum: `write_f64` against `{}` ---

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn written(x: f64) -> String {
    let mut out = Vec::new();
    write_f64(&mut out, x);
    String::from_utf8(out).expect("ASCII")
}

/// The checksum as it was first written: `write!` of every number into a `String`, one CRC.
fn checksum_reference(v: &BookView) -> u32 {
    use std::fmt::Write;
    let mut s = String::new();
    for i in 0..CHECKSUM_LEVELS {
        for level in [v.bids.get(i), v.asks.get(i)].into_iter().flatten() {
            if !s.is_empty() {
                s.push(':');
            }
            let _ = write!(s, "{}:{}", level.0, level.1);
        }
    }
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(s.as_bytes())
}

#[test]
fn numbers_are_written_as_display_writes_them() {
    let cases = [
        0.0,
        -0.0,
        1.0,
        100.0,
        187.25,
        187.2,
        0.5,
        0.0005,
        0.07,
        0.1 + 0.2,
        1.0 / 3.0,
        371.28000000000003,
        123_456_789_012_345.6,
        999_999_999_999_999.0,
        1e15,
        1e16,
        1e21,
        1e22,
        1e23,
        9_007_199_254_740_993.0,
        1e-5,
        1e-6,
        1e-7,
        1.5e-7,
        1.234_567_890_123_456_7e-10,
        5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::EPSILON,
        -187.25,
        -1e-7,
        -1e300,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for x in cases {
        assert_eq!(written(x), format!("{x}"), "{x:?}");
    }
}

/// Finite f64 >= 0 from the places prices and sizes come from, and from everywhere else.
fn checksum_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        // Any finite, non-negative bit pattern (subnormals included).
        (0u64..0x7ff0_0000_0000_0000).prop_map(f64::from_bits),
        // Cent, mill and finer grids, as `(n as f64) / 10^k` (what parsing "12.34" gives).
        (0u64..100_000_000_000, 0usize..13).prop_map(|(n, k)| n as f64 / 10f64.powi(k as i32)),
        (0u64..10_000_000).prop_map(|n| n as f64 / 100.0),
        // Integers, small and up to 2^64.
        (0u64..1_000_000).prop_map(|n| n as f64),
        any::<u64>().prop_map(|n| n as f64),
        // Near the short path's limit of 10^15.
        (0.9e15f64..1.1e16),
        // Few fractional bits at 2^52 / 2^k: exactly halfway between two 16- or 17-digit
        // decimals now and then (ryu rounds those to even, `{}` up).
        ((1u64 << 52)..(1u64 << 53), 0i32..12).prop_map(|(m, k)| m as f64 / 2f64.powi(k)),
        (1e-10f64..1e-3),
        (1e15f64..1e300),
        Just(0.0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn write_f64_is_display(x in checksum_number()) {
        prop_assert_eq!(written(x), format!("{x}"));
    }

    #[test]
    fn any_finite_bits_are_written_as_display(bits in any::<u64>()) {
        let x = f64::from_bits(bits);
        prop_assert_eq!(written(x), format!("{x}"));
    }
}

proptest! {
    /// The checksum is byte for byte the first implementation's, whatever the numbers.
    #[test]
    fn the_checksum_is_the_reference_checksum(
        bids in prop::collection::vec((checksum_number(), checksum_number()), 0..14),
        asks in prop::collection::vec((checksum_number(), checksum_number()), 0..14),
    ) {
        let v = BookView { bids, asks };
        prop_assert_eq!(v.checksum(), checksum_reference(&v));
    }
}

// --- The diff: the linear merge against the quadratic original ---

/// The diff as it was first written (level by level, for sides in any order): the merge's
/// fallback, `diff_side_unordered`, is that code.
fn diff_reference(old: &BookView, new: &BookView) -> BookView {
    BookView {
        bids: diff_side_unordered(&old.bids, &new.bids),
        asks: diff_side_unordered(&old.asks, &new.asks),
    }
}

/// A view in view order: distinct cent prices from a narrow band (so two views share many),
/// sizes from a few values (so a shared price often keeps its size).
fn sorted_view() -> impl Strategy<Value = BookView> {
    let side = || prop::collection::btree_map(1u32..60, 1u32..4, 0..30);
    (side(), side()).prop_map(|(bids, asks)| {
        let level = |(&p, &s): (&u32, &u32)| (f64::from(p) / 100.0, f64::from(s) / 2.0);
        BookView {
            bids: bids.iter().rev().map(level).collect(),
            asks: asks.iter().map(level).collect(),
        }
    })
}

#[test]
fn the_diff_lists_changes_in_next_order_then_removals_in_old_order() {
    let old = BookView {
        bids: vec![(10.0, 1.0), (9.0, 1.0), (8.0, 1.0), (7.0, 1.0), (5.0, 1.0)],
        asks: vec![(11.0, 1.0), (12.0, 1.0), (14.0, 1.0)],
    };
    let new = BookView {
        bids: vec![
            (9.5, 2.0),
            (9.0, 1.0),
            (8.0, 3.0),
            (6.0, 1.0),
            (5.0, 1.0),
            (4.0, 1.0),
        ],
        asks: vec![(12.0, 2.0), (13.0, 1.0)],
    };
    let want = BookView {
        bids: vec![
            (9.5, 2.0),
            (8.0, 3.0),
            (6.0, 1.0),
            (4.0, 1.0),
            (10.0, 0.0),
            (7.0, 0.0),
        ],
        asks: vec![(12.0, 2.0), (13.0, 1.0), (11.0, 0.0), (14.0, 0.0)],
    };
    assert_eq!(old.diff(&new), want);
    assert_eq!(diff_reference(&old, &new), want);
}

proptest! {
    /// On views in view order (the merge) the diff is the original's, and applying it to the
    /// old view gives the new one.
    #[test]
    fn the_diff_of_sorted_views_is_the_reference_and_applies(
        old in sorted_view(),
        new in sorted_view(),
    ) {
        let delta = old.diff(&new);
        prop_assert_eq!(&delta, &diff_reference(&old, &new));
        let mut copy = old.clone();
        copy.apply(&delta, usize::MAX);
        prop_assert_eq!(copy, new);
    }

    /// On sides in any order, with repeated prices (a venue's levels as sent), the diff falls
    /// back to the original comparison.
    #[test]
    fn the_diff_of_unordered_sides_is_the_reference(
        old in (levels(), levels()),
        new in (levels(), levels()),
    ) {
        let old = BookView { bids: old.0, asks: old.1 };
        let new = BookView { bids: new.0, asks: new.1 };
        prop_assert_eq!(old.diff(&new), diff_reference(&old, &new));
    }
}
