//! What ingest does per order book depth update (`ingest::book_event`), through the public API:
//! validate, `Book::apply`, the top `book.depth` view, the diff against the view last published,
//! the checksum, and `BookMessage::wire` (JSON and MessagePack); then each part alone, so the
//! reader sees where the time goes.
//!
//! The book: 1,000 levels per side on a cent grid (`book.max_levels` = 1,000), view depth 25 (the
//! default `book.depth`). The stream: 8,192 deltas generated from a fixed seed against the book as
//! it evolves: 1 to 3 levels per update, most near the touch (size changes, removals, new levels
//! in a free grid point), some inside the view below the top 10, some deeper than the view (which
//! ingest publishes nothing for). Each pass over the stream starts from the same book, cloned
//! outside the timed region.
//!
//! `cargo bench -j 1 --bench book`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickcast::book::{Book, BookUpdate, BookView, Level};
use tickcast::protocol::BookMessage;

const LEVELS: usize = 1_000;
const DEPTH: usize = 25;
const STREAM: usize = 8_192;
/// Prices are integer cents; the book starts with bids at 99.99 and below, asks at 100.01 and up.
const MID_CENTS: i64 = 10_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn price(cents: i64) -> f64 {
    cents as f64 / 100.0
}

fn size(rng: &mut Rng) -> f64 {
    // Whole units most of the time, a fraction sometimes (longer numbers on the wire).
    let whole = (1 + rng.below(500)) as f64;
    if rng.below(4) == 0 {
        whole + rng.below(1000) as f64 / 1000.0
    } else {
        whole
    }
}

fn initial_book(rng: &mut Rng) -> Book {
    let bids = (1..=LEVELS as i64)
        .map(|i| (price(MID_CENTS - i), size(rng)))
        .collect();
    let asks = (1..=LEVELS as i64)
        .map(|i| (price(MID_CENTS + i), size(rng)))
        .collect();
    let mut book = Book::default();
    book.apply(
        &BookUpdate {
            symbol: "BTC-USD".into(),
            snapshot: true,
            bids,
            asks,
            exchange_ts: 1_764_070_000_000_000_000,
        },
        LEVELS,
    );
    book
}

/// A level index on one side: 70% in the top 10, 20% from 10 to the view's depth, 10% deeper.
fn pick_index(rng: &mut Rng, len: usize) -> usize {
    let i = match rng.below(10) {
        0..=6 => rng.below(10),
        7 | 8 => 10 + rng.below((DEPTH - 10) as u64),
        _ => DEPTH as u64 + rng.below((LEVELS - DEPTH) as u64),
    } as usize;
    i.min(len.saturating_sub(1))
}

/// One level change on one side of `side_view` (best first; `dir` is -1 for bids, +1 for asks):
/// 60% a size change, 20% a removal, 20% a new level at a free grid point next to the picked one
/// (at the touch, half of those improve it). The caller drops what would cross the other side.
fn level_change(rng: &mut Rng, side_view: &[Level], dir: i64) -> Level {
    let i = pick_index(rng, side_view.len());
    let (p, _) = side_view[i];
    match rng.below(10) {
        0..=5 => (p, size(rng)),
        6 | 7 if side_view.len() > 2 * DEPTH => (p, 0.0),
        _ => {
            // The first free cent beyond level i (or on the touch's near side for i = 0).
            let cents = (p * 100.0).round() as i64;
            let taken = |c: i64| {
                side_view
                    .iter()
                    .any(|&(q, _)| (q * 100.0).round() as i64 == c)
            };
            let mut c = if i == 0 && rng.below(2) == 0 {
                cents - dir
            } else {
                cents + dir
            };
            while taken(c) {
                c += dir;
            }
            (price(c), size(rng))
        }
    }
}

/// The deterministic stream of deltas, generated against the book as it evolves from `book`.
fn stream(book: &Book, rng: &mut Rng) -> Vec<BookUpdate> {
    let mut book = book.clone();
    let mut out = Vec::with_capacity(STREAM);
    for n in 0..STREAM {
        let full = book.view(LEVELS);
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        // Levels per update: 1 (60%), 2 (30%) or 3 (10%).
        let changes = match rng.below(10) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        for _ in 0..changes {
            if rng.below(2) == 0 {
                let l = level_change(rng, &full.bids, -1);
                bids.retain(|x: &Level| x.0 != l.0);
                bids.push(l);
            } else {
                let l = level_change(rng, &full.asks, 1);
                asks.retain(|x: &Level| x.0 != l.0);
                asks.push(l);
            }
        }
        // Keep the touch from crossing: no bid at or above the best ask and vice versa.
        let best_ask = full.asks.first().map_or(f64::MAX, |l| l.0);
        let best_bid = full.bids.first().map_or(0.0, |l| l.0);
        bids.retain(|l| l.0 < best_ask);
        asks.retain(|l| l.0 > best_bid);
        let u = BookUpdate {
            symbol: "BTC-USD".into(),
            snapshot: false,
            bids,
            asks,
            exchange_ts: 1_764_070_000_000_000_000 + n as i64 * 1_000_000,
        };
        book.apply(&u, LEVELS);
        out.push(u);
    }
    out
}

/// What ingest keeps per symbol: the book and the view it last published.
#[derive(Clone)]
struct Symbol {
    book: Book,
    published: BookView,
    seq: u64,
}

/// `ingest::book_event` for one delta, minus the symbol interning and the metrics: the two
/// encodings and the view the hub keeps, or `None` when the view did not change.
fn book_event(s: &mut Symbol, u: &BookUpdate) -> Option<(tickcast::model::Wire, Arc<BookView>)> {
    u.validate().expect("valid update");
    s.book.apply(u, LEVELS);
    let view = s.book.view(DEPTH);
    let delta = s.published.diff(&view);
    if delta.is_empty() {
        return None;
    }
    let checksum = view.checksum();
    s.published = view.clone();
    s.seq += 1;
    let wire = BookMessage {
        ch: "book:BTC-USD",
        seq: s.seq,
        ts: u.exchange_ts,
        reset: false,
        levels: &delta,
        checksum,
    }
    .wire();
    Some((wire, Arc::new(view)))
}

/// A `book` event of these levels and checksum, as a channel's `seq` would number it.
fn message(d: &(BookView, u32), reset: bool) -> BookMessage<'_> {
    BookMessage {
        ch: "book:BTC-USD",
        seq: 1_234_567,
        ts: 1_764_070_000_123_456_789,
        reset,
        levels: &d.0,
        checksum: d.1,
    }
}

/// Times `iters` updates of `items`, cycling; `setup` runs before each pass, outside the timing.
fn timed_passes<T, S>(
    iters: u64,
    items: &[T],
    mut setup: impl FnMut() -> S,
    mut step: impl FnMut(&mut S, &T),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(items.len());
        let mut state = setup();
        let t = Instant::now();
        for item in &items[..n] {
            step(&mut state, item);
        }
        total += t.elapsed();
        left -= n;
    }
    total
}

fn book(c: &mut Criterion) {
    let mut rng = Rng(0x015b_00c5);
    let start = initial_book(&mut rng);
    let updates = stream(&start, &mut rng);

    // The views after each update, the deltas ingest publishes, and what the stream is made of.
    let mut replay = start.clone();
    let mut views = vec![replay.view(DEPTH)];
    for u in &updates {
        replay.apply(u, LEVELS);
        views.push(replay.view(DEPTH));
    }
    let deltas: Vec<(BookView, u32)> = views
        .windows(2)
        .map(|w| (w[0].diff(&w[1]), w[1].checksum()))
        .filter(|(d, _)| !d.is_empty())
        .collect();
    let levels_changed: usize = updates.iter().map(|u| u.bids.len() + u.asks.len()).sum();
    let delta_levels: usize = deltas
        .iter()
        .map(|(d, _)| d.bids.len() + d.asks.len())
        .sum();
    let bytes = |d: &(BookView, u32), reset: bool| {
        let w = message(d, reset).wire();
        (w.json().len(), w.msgpack().len())
    };
    let (json, mp) = deltas
        .iter()
        .map(|d| bytes(d, false))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let last = (views[views.len() - 1].clone(), 0);
    eprintln!(
        "book bench: {} updates ({:.2} levels each), {} change the top {DEPTH} ({:.1}%, \
         {:.2} levels per published delta, {:.0} bytes JSON / {:.0} MessagePack; a whole \
         {DEPTH}-level view {:?}); book keeps {} levels after the stream",
        updates.len(),
        levels_changed as f64 / updates.len() as f64,
        deltas.len(),
        100.0 * deltas.len() as f64 / updates.len() as f64,
        delta_levels as f64 / deltas.len() as f64,
        json as f64 / deltas.len() as f64,
        mp as f64 / deltas.len() as f64,
        bytes(&last, true),
        replay.len(),
    );

    let fresh = || Symbol {
        book: start.clone(),
        published: views[0].clone(),
        seq: 0,
    };

    let mut g = c.benchmark_group("book_update");
    g.throughput(Throughput::Elements(1));
    // The whole of ingest's per-update work (updates that leave the view alone included).
    g.bench_function("ingest_path_depth25", |b| {
        b.iter_custom(|iters| {
            timed_passes(iters, &updates, fresh, |s, u| {
                black_box(book_event(s, u));
            })
        });
    });
    // The parts.
    g.bench_function("apply_and_view25", |b| {
        b.iter_custom(|iters| {
            timed_passes(
                iters,
                &updates,
                || start.clone(),
                |book, u| {
                    book.apply(u, LEVELS);
                    black_box(book.view(DEPTH));
                },
            )
        });
    });
    let pairs: Vec<(&BookView, &BookView)> = views.windows(2).map(|w| (&w[0], &w[1])).collect();
    g.bench_function("diff25", |b| {
        b.iter_custom(|iters| {
            timed_passes(
                iters,
                &pairs,
                || (),
                |_, (prev, next)| {
                    black_box(prev.diff(next));
                },
            )
        });
    });
    let views25 = &views[1..];
    let views10: Vec<BookView> = views25.iter().map(|v| v.top(10)).collect();
    g.bench_function("checksum_view25", |b| {
        b.iter_custom(|iters| {
            timed_passes(
                iters,
                views25,
                || (),
                |_, v| {
                    black_box(v.checksum());
                },
            )
        });
    });
    g.bench_function("checksum_view10", |b| {
        b.iter_custom(|iters| {
            timed_passes(
                iters,
                &views10,
                || (),
                |_, v| {
                    black_box(v.checksum());
                },
            )
        });
    });
    // Per published delta (only updates that changed the view are encoded).
    g.bench_function("encode_delta_json_and_msgpack", |b| {
        b.iter_custom(|iters| {
            timed_passes(
                iters,
                &deltas,
                || (),
                |_, d| {
                    black_box(message(d, false).wire());
                },
            )
        });
    });
    let resets: Vec<(BookView, u32)> = views25.iter().map(|v| (v.clone(), v.checksum())).collect();
    // The whole 25-level view, as a reset or a snapshot carries it.
    g.bench_function("encode_reset25_json_and_msgpack", |b| {
        b.iter_custom(|iters| {
            timed_passes(
                iters,
                &resets,
                || (),
                |_, d| {
                    black_box(message(d, true).wire());
                },
            )
        });
    });
    g.finish();
}

criterion_group!(benches, book);
criterion_main!(benches);
