//! What the rings of an idle server hold once they are full: bytes per held event of each channel
//! kind (counted by a counting global allocator: the `Event` slot in its ring plus every heap
//! block it keeps alive, as requested from the allocator), and the resident memory of the whole
//! plateau (every market ring of `SYMBOLS` symbols at its default capacity), measured as the
//! process's `VmRSS` growth, which also counts the allocator's per-block overhead.
//!
//! The events are the real ones: made by the protocol's encoders, as ingest makes them, with
//! the synthetic feed's shapes (a book delta changes three levels). No server, no clock: the
//! plateau a server reaches after its slowest ring (bars.1s, indicators, ticker: one event a
//! second per symbol) has filled, in seconds instead of 17 minutes.
//!
//! `cargo bench --bench ring_memory` (add `-- 1000` for 1,000 symbols).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use tickcast::book::{BookView, TopOfBook};
use tickcast::model::{
    BarEvent, BarInterval, Bbo, ChannelId, Encoding, Event, IndicatorPeriods, IndicatorValues,
    Kind, Payload, Side, SymbolId, Tick, TickerStats,
};
use tickcast::protocol::{
    BookMessage, IndicatorFields, encode_bar, encode_bbo, encode_indicators, encode_tick,
    encode_ticker,
};
use tickcast::ring::Ring;

/// Counts the bytes and blocks live on the heap (requested sizes).
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> (i64, i64) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCKS.load(Ordering::Relaxed),
    )
}

fn rss_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<i64>().ok())
        .map_or(0, |kib| kib * 1024)
}

const TS: i64 = 1_764_070_000_123_456_789;

/// Event `seq` of channel `ch` as ingest would make it.
fn event(ch: ChannelId, name: &str, seq: u64, fields: &IndicatorFields) -> Event {
    let s = seq as f64;
    let price = 189.23 + (s * 0.37).sin() * 3.0;
    let ts = TS + seq as i64 * 1_003_417;
    let (payload, wire, book) = match ch.kind {
        Kind::Ticks => {
            let t = Tick {
                symbol: ch.symbol,
                price: (price * 100.0).round() / 100.0,
                size: 1.0 + (seq % 700) as f64,
                side: Some(if seq.is_multiple_of(2) {
                    Side::Buy
                } else {
                    Side::Sell
                }),
                exchange_ts: ts - 250_000,
                ts,
            };
            (Payload::Tick(t), encode_tick(name, seq, &t), None)
        }
        Kind::Bars(_) => {
            let b = BarEvent {
                start_ms: ts / 1_000_000,
                open: price,
                high: price + 0.11,
                low: price - 0.07,
                close: price + 0.03,
                volume: 1234.0 + s,
                trades: 10 + seq % 7,
                is_final: seq.is_multiple_of(2),
            };
            (Payload::Bar(b), encode_bar(name, seq, ts, &b), None)
        }
        Kind::Indicators => {
            let v = IndicatorValues {
                periodic: vec![
                    Some(price + 0.012345),
                    Some(price - 0.0234567),
                    Some(48.123456789),
                    Some(0.000123456789),
                ],
                vwap: Some(price + 0.001),
                book: TopOfBook {
                    mid: Some(price),
                    spread: Some(0.02),
                    imbalance: Some(-0.123456),
                },
                closes: Vec::new(),
            };
            let w = encode_indicators(name, seq, ts, &v, fields);
            (Payload::Indicators(v.into()), w, None)
        }
        Kind::Ticker => {
            let t = TickerStats {
                open: price - 1.5,
                high: price + 2.25,
                low: price - 3.5,
                last: price,
                volume: 123456.0 + s,
                quote_volume: 23456789.123 + s,
                change: 1.5,
                change_pct: 0.7987654321,
                trades: 86_400 + seq,
                open_time_ms: ts / 1_000_000 - 86_400_000,
                close_time_ms: ts / 1_000_000,
            };
            (
                Payload::Ticker(t.into()),
                encode_ticker(name, seq, ts, &t),
                None,
            )
        }
        Kind::Bbo => {
            let b = Bbo {
                bid: Some((price - 0.01, 300.0)),
                ask: Some((price + 0.01, 200.0 + (seq % 50) as f64)),
            };
            (Payload::Bbo(b), encode_bbo(name, seq, ts, &b), None)
        }
        Kind::Book => {
            let levels = BookView {
                bids: vec![(price - 0.01, 300.0), (price - 0.05, 0.0)],
                asks: vec![(price + 0.03, 150.0 + (seq % 9) as f64)],
            };
            let msg = BookMessage {
                ch: name,
                seq,
                ts,
                reset: false,
                levels: &levels,
                checksum: 0x9e37_79b9 ^ seq as u32,
            };
            (Payload::Book, msg.wire(), None)
        }
        Kind::Portfolio | Kind::Predictions => unreachable!("not in this bench's kinds"),
    };
    Event {
        channel: ch,
        seq,
        ts,
        payload,
        wire,
        book,
    }
}

/// The default capacities (`ring.capacity` 1,024, `ring.long_bar_capacity` 64).
fn capacity(kind: Kind) -> usize {
    match kind {
        Kind::Bars(iv) if iv > BarInterval::M1 => 64,
        _ => 1024,
    }
}

/// Every market kind, bar intervals from `pipeline.bar_intervals`' default (all of them).
fn kinds() -> Vec<Kind> {
    let mut kinds = vec![Kind::Ticks];
    kinds.extend(BarInterval::ALL.map(Kind::Bars));
    kinds.extend([Kind::Indicators, Kind::Book, Kind::Ticker, Kind::Bbo]);
    kinds
}

fn main() {
    let symbols: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let fields = IndicatorFields::new(&IndicatorPeriods::default());
    let kinds = kinds();
    println!(
        "size_of::<Event>() = {} bytes (Payload {} bytes)",
        std::mem::size_of::<Event>(),
        std::mem::size_of::<Payload>()
    );

    // Per kind: one full ring of one symbol, pushed twice over (so eviction ran).
    println!("\n| kind | JSON B | MessagePack B | heap B per held event | blocks per held event |");
    println!("| --- | --- | --- | --- | --- |");
    let mut per_event_total = 0.0;
    let mut events_total = 0usize;
    for &kind in &kinds {
        let ch = ChannelId {
            kind,
            symbol: SymbolId(0),
        };
        let name = format!("{}:AAPL", kind);
        let cap = capacity(kind);
        let sample = event(ch, &name, 1, &fields);
        let (json, msgpack) = (
            sample.wire.get(Encoding::Json).len(),
            sample.wire.get(Encoding::Msgpack).len(),
        );
        drop(sample);
        let (b0, n0) = live();
        let mut ring: Ring<Event> = Ring::new(cap);
        for seq in 1..=(2 * cap as u64) {
            ring.push(event(ch, &name, seq, &fields));
        }
        let (b1, n1) = live();
        let per = (b1 - b0) as f64 / cap as f64;
        per_event_total += per * cap as f64;
        events_total += cap;
        println!(
            "| {} | {json} | {msgpack} | {per:.0} | {:.2} |",
            kind,
            (n1 - n0) as f64 / cap as f64
        );
        drop(ring);
    }
    println!(
        "\none symbol's rings: {events_total} events, {:.0} KiB counted ({:.0} B per event)",
        per_event_total / 1024.0,
        per_event_total / events_total as f64
    );

    // The plateau: every symbol's rings full, resident memory measured.
    let rss0 = rss_bytes();
    let (b0, _) = live();
    let mut rings: Vec<Ring<Event>> = Vec::new();
    for s in 0..symbols {
        for &kind in &kinds {
            let ch = ChannelId {
                kind,
                symbol: SymbolId(s),
            };
            let name = format!("{}:S{s:04}", kind);
            let mut ring = Ring::new(capacity(kind));
            // Filled the way a server fills them: one event at a time, all rings interleaved
            // would be closer still, but a ring's own events are what stays.
            for seq in 1..=(capacity(kind) as u64 + 16) {
                ring.push(event(ch, &name, seq, &fields));
            }
            rings.push(ring);
        }
    }
    let rss1 = rss_bytes();
    let (b1, _) = live();
    let held = (events_total * symbols as usize) as f64;
    println!(
        "\n{symbols} symbols, rings full: {:.0} events; counted {:.1} MB ({:.0} B/event), \
         resident +{:.1} MB ({:.0} B/event)",
        held,
        (b1 - b0) as f64 / 1e6,
        (b1 - b0) as f64 / held,
        (rss1 - rss0) as f64 / 1e6,
        (rss1 - rss0) as f64 / held
    );
    let gauge: usize = rings.iter().map(Ring::bytes).sum();
    println!(
        "tickcast_ring_bytes would read {:.1} MB ({:.0} B/event)",
        gauge as f64 / 1e6,
        gauge as f64 / held
    );
    // A MessagePack connection asks for every held event once.
    let (m0, _) = live();
    let rss2 = rss_bytes();
    for ring in &rings {
        let held = ring.replay(ring.last_seq() - ring.len() as u64);
        for e in held.expect("every held event") {
            std::hint::black_box(e.wire.get(Encoding::Msgpack));
        }
    }
    let (m1, _) = live();
    println!(
        "every event's MessagePack made: +{:.1} MB counted ({:.0} B/event), resident +{:.1} MB; \
         tickcast_msgpack_made_bytes {:.1} MB",
        (m1 - m0) as f64 / 1e6,
        (m1 - m0) as f64 / held,
        (rss_bytes() - rss2) as f64 / 1e6,
        tickcast::model::msgpack_made_bytes() as f64 / 1e6
    );
    std::hint::black_box(&rings);
}
