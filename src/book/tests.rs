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
