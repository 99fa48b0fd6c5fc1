//! Ingest's unit tests: sequencing, validation, the future-skew bound and the books it keeps.

use std::sync::Mutex;

use super::*;
use crate::model::Side;

/// `[book]` as the tests need it; `checkpoint_ms` is theirs to choose.
fn books(checkpoint_ms: u64) -> BookConfig {
    BookConfig {
        depth: 25,
        max_levels: 1000,
        checkpoint_ms,
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);
impl EventSink for Collect {
    fn publish(&self, events: &[Event]) {
        self.0.lock().unwrap().extend_from_slice(events);
    }
}

fn raw(sym: &str, price: f64) -> RawTick {
    RawTick {
        symbol: sym.into(),
        price,
        size: 1.0,
        side: Some(Side::Buy),
        exchange_ts: 1,
    }
}

#[test]
fn validation_names_the_problem() {
    let cases = [
        (raw("aapl", 1.0), "invalid symbol"),
        (raw("A", 0.0), "price"),
        (raw("A", f64::NAN), "price"),
        (
            RawTick {
                size: -1.0,
                ..raw("A", 1.0)
            },
            "size",
        ),
        (
            RawTick {
                exchange_ts: 0,
                ..raw("A", 1.0)
            },
            "exchange time",
        ),
    ];
    for (t, needle) in cases {
        let e = validate(&t).unwrap_err().to_string();
        assert!(e.contains(needle), "{t:?}: {e}");
    }
    assert_eq!(validate(&raw("A", 1.0)), Ok(()));
}

#[test]
fn a_symbols_book_belongs_to_the_first_source_that_sends_one() {
    let sink = Arc::new(Collect::default());
    let metrics = Arc::new(Metrics::default());
    let (ingest, handle) = Ingest::new(
        Arc::new(Symbols::new(10)),
        sink.clone(),
        metrics.clone(),
        IndicatorPeriods::default(),
        books(10_000),
    );
    let thread = ingest.spawn().unwrap();
    let update = |bid: f64| BookUpdate {
        symbol: "BTC-USD".into(),
        snapshot: false,
        bids: vec![(bid, 1.0)],
        asks: vec![(200.0, 1.0)],
        exchange_ts: 1,
    };
    let (a, b): (Arc<str>, Arc<str>) = ("coinbase".into(), "kraken".into());
    handle.try_send_books(&a, vec![update(100.0)]).unwrap();
    handle.try_send_books(&b, vec![update(150.0)]).unwrap();
    handle.try_send_books(&a, vec![update(101.0)]).unwrap();
    drop(handle);
    thread.join().unwrap();
    let events = sink.0.lock().unwrap();
    let bids: Vec<f64> = events
        .iter()
        .filter_map(|e| e.book.as_ref().map(|v| v.view.bids[0].0))
        .collect();
    assert_eq!(
        bids,
        [100.0, 101.0],
        "kraken's level never entered coinbase's book"
    );
    assert_eq!(metrics.book_updates_rejected.load(Ordering::Relaxed), 1);
    let seqs = |kind: Kind| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e.channel.kind == kind)
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(Kind::Book), [1, 2]);
    // Each update moved the touch: a `bbo` event after each book event.
    assert_eq!(seqs(Kind::Bbo), [1, 2]);
    let touches: Vec<Payload> = events
        .iter()
        .filter(|e| e.channel.kind == Kind::Bbo)
        .map(|e| e.payload.clone())
        .collect();
    let bbo = |bid: f64| {
        Payload::Bbo(crate::model::Bbo {
            bid: Some((bid, 1.0)),
            ask: Some((200.0, 1.0)),
        })
    };
    assert_eq!(touches, [bbo(100.0), bbo(101.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_checkpoint_publishes_whole_the_books_that_stopped_changing() {
    let sink = Arc::new(Collect::default());
    let (ingest, handle) = Ingest::new(
        Arc::new(Symbols::new(10)),
        sink.clone(),
        Arc::new(Metrics::default()),
        IndicatorPeriods::default(),
        books(200),
    );
    let thread = ingest.spawn().unwrap();
    let source: Arc<str> = "http".into();
    let book = |symbol: &str| BookUpdate {
        symbol: symbol.into(),
        snapshot: true,
        bids: vec![(100.0, 1.0)],
        asks: vec![(101.0, 2.0)],
        exchange_ts: 1,
    };
    handle
        .send_books(&source, vec![book("QUIET")])
        .await
        .unwrap();
    // Not yet due: nothing is published.
    handle.checkpoint_books().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    handle
        .send_books(&source, vec![book("FRESH")])
        .await
        .unwrap();
    // QUIET is due (published whole 300 ms ago), FRESH is not.
    handle.checkpoint_books().await.unwrap();
    drop(handle);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    let all = sink.0.lock().unwrap();
    // A checkpoint republishes the same touch: no `bbo` event of its own.
    let bbo: Vec<u64> = all
        .iter()
        .filter(|e| e.channel.kind == Kind::Bbo)
        .map(|e| e.seq)
        .collect();
    assert_eq!(bbo, [1, 1], "QUIET's and FRESH's first touch only");
    let events: Vec<&Event> = all
        .iter()
        .filter(|e| e.channel.kind == Kind::Book)
        .collect();
    let got: Vec<(u64, bool)> = events.iter().filter_map(|e| e.wire.book_seq()).collect();
    assert_eq!(
        got,
        [(1, true), (1, true), (2, true)],
        "QUIET, FRESH, QUIET again"
    );
    let (first, again) = (&events[0], &events[2]);
    assert_eq!(first.channel, again.channel);
    let (a, b) = (first.book.as_ref().unwrap(), again.book.as_ref().unwrap());
    assert_eq!(
        (&a.view, a.checksum),
        (&b.view, b.checksum),
        "the same book"
    );
}

#[test]
fn live_feeds_refuse_ticks_dated_too_far_ahead() {
    let sink = Arc::new(Collect::default());
    let symbols = Arc::new(Symbols::new(10));
    let metrics = Arc::new(Metrics::default());
    let (ingest, handle) = Ingest::new(
        symbols,
        sink.clone(),
        metrics.clone(),
        IndicatorPeriods::default(),
        books(10_000),
    );
    let thread = ingest.spawn().unwrap();
    let now = now_ns();
    let at = |sym: &str, ahead_ms: i64| RawTick {
        exchange_ts: now + ahead_ms * 1_000_000,
        ..raw(sym, 1.0)
    };
    let live = handle.live(5_000);
    let day = 86_400_000;
    // The handle's own check names the limit and its key (HTTP ingest reports it).
    let err = live.check_future(&at("A", day), now).unwrap_err();
    assert!(
        matches!(err, TickError::Future { ahead_ms, max_ms: 5_000 } if ahead_ms >= day - 1),
        "{err}"
    );
    assert!(
        err.to_string().contains("feeds.max_future_skew_ms"),
        "{err}"
    );
    assert_eq!(live.check_future(&at("A", 1_000), now), Ok(()));
    assert_eq!(handle.check_future(&at("A", day), now), Ok(()), "not live");
    live.try_send(vec![at("LIVE", 1_000), at("LIVE", day), at("LIVE", -day)])
        .unwrap();
    // Replay's handle is not live: history from any date goes through.
    handle.try_send(vec![at("HIST", day)]).unwrap();
    drop((live, handle));
    thread.join().unwrap();
    let got: Vec<u64> = sink.0.lock().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(got, vec![1, 2, 1], "LIVE 1 and 2, then HIST 1");
    assert_eq!(metrics.ticks_future.load(Ordering::Relaxed), 2);
    assert_eq!(metrics.ticks_rejected.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.ticks_ingested.load(Ordering::Relaxed), 3);
}

#[test]
fn assigns_contiguous_seq_per_channel_and_encodes_once() {
    let sink = Arc::new(Collect::default());
    let symbols = Arc::new(Symbols::new(10));
    let (ingest, handle) = Ingest::new(
        symbols.clone(),
        sink.clone(),
        Arc::new(Metrics::default()),
        IndicatorPeriods::default(),
        books(10_000),
    );
    let thread = ingest.spawn().unwrap();
    handle
        .try_send(vec![
            raw("A", 1.0),
            raw("B", 2.0),
            raw("A", 3.0),
            raw("bad", 1.0),
        ])
        .unwrap();
    handle
        .send_derived_blocking(vec![Derived::Indicators {
            symbol: SymbolId(0),
            values: IndicatorValues::default(),
        }])
        .unwrap();
    drop(handle);
    thread.join().unwrap();
    let events = sink.0.lock().unwrap();
    let got: Vec<(String, u64)> = events
        .iter()
        .map(|e| (symbols.channel_name(e.channel), e.seq))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ticks:A".into(), 1),
            ("ticks:B".into(), 1),
            ("ticks:A".into(), 2),
            ("indicators:A".into(), 1)
        ]
    );
    assert_eq!(symbols.get("A"), Some(SymbolId(0)));
    let v: serde_json::Value = serde_json::from_slice(events[2].wire.json()).unwrap();
    assert_eq!(
        (v["ch"].as_str(), v["seq"].as_u64(), v["price"].as_f64()),
        (Some("ticks:A"), Some(2), Some(3.0))
    );
}
