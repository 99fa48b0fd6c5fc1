//! Synthetic feed: seeded geometric Brownian motion per symbol. The embedded default source.
//!
//! Same seed, same ticks: the generator is a pure function of its config and seed (symbols,
//! prices, sizes, sides and batch sizes); only the exchange timestamps come from the clock.
//! The PRNG is SplitMix64, written out here so the sequence never changes with a dependency.

mod book;
mod config;

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Feed, FeedContext, FeedError};
use crate::book::BookUpdate;
use crate::model::{RawTick, Side, now_ns};
use book::Ladder;
pub use config::SyntheticConfig;

/// Ticker names for the first symbols; beyond them, `SYM0100`, `SYM0101`, ...
const TICKERS: [&str; 100] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "AVGO", "JPM", "LLY", "V",
    "UNH", "XOM", "MA", "JNJ", "PG", "HD", "COST", "MRK", "ABBV", "CVX", "CRM", "BAC", "NFLX",
    "AMD", "PEP", "KO", "TMO", "WMT", "ADBE", "LIN", "MCD", "ACN", "CSCO", "ABT", "ORCL", "DHR",
    "INTC", "WFC", "DIS", "TXN", "VZ", "PM", "CMCSA", "INTU", "NEE", "AMGN", "IBM", "QCOM", "UNP",
    "CAT", "HON", "GE", "SPGI", "BA", "AMAT", "LOW", "RTX", "PFE", "NOW", "GS", "BKNG", "ISRG",
    "ELV", "PLD", "SBUX", "MDT", "BLK", "T", "DE", "LMT", "SYK", "TJX", "AXP", "MDLZ", "GILD",
    "ADP", "CVS", "VRTX", "MMC", "C", "ADI", "LRCX", "REGN", "CB", "SCHW", "MO", "ZTS", "PGR",
    "CI", "SO", "BSX", "ETN", "BDX", "DUK", "SLB", "EQIX", "MU", "BTC-USD",
];

/// The symbol names a synthetic config produces.
pub(crate) fn symbol_names(cfg: &SyntheticConfig) -> Vec<String> {
    if !cfg.symbol_names.is_empty() {
        return cfg.symbol_names.clone();
    }
    (0..cfg.symbols)
        .map(|i| match TICKERS.get(i) {
            Some(t) => (*t).to_owned(),
            None => format!("SYM{i:04}"),
        })
        .collect()
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and fixed forever.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }

    /// Standard normal by Box-Muller.
    fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Deterministic tick generator behind the synthetic feed.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    rng: SplitMix64,
    symbols: Vec<String>,
    prices: Vec<f64>,
    /// Expected ticks per batch.
    per_batch: f64,
    /// Fractional ticks carried to the next batch so the mean rate is exact.
    carry: f64,
    burstiness: f64,
    drift: f64,
    vol: f64,
    /// Seconds of simulated time per tick of a symbol, for the GBM step.
    dt: f64,
    /// Each symbol's order book, when `book_levels` > 0.
    ladders: Vec<Ladder>,
    /// The books' snapshots are still to be sent (the first batch).
    books_announced: bool,
}

/// One interval's output: trades, and the book updates that go with them (in order: a trade's
/// book update is sent before the trade).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Batch {
    pub ticks: Vec<RawTick>,
    pub books: Vec<BookUpdate>,
}

impl Generator {
    pub fn new(cfg: &SyntheticConfig) -> Self {
        let mut rng = SplitMix64(cfg.seed);
        let symbols = symbol_names(cfg);
        let prices: Vec<f64> = symbols
            .iter()
            .map(|_| (10.0 + rng.next_f64() * 490.0).round())
            .collect();
        let interval = cfg.interval_ms as f64 / 1000.0;
        let n = symbols.len().max(1) as f64;
        let dt = n / cfg.rate;
        let ladders = if cfg.book_levels == 0 {
            Vec::new()
        } else {
            prices
                .iter()
                .map(|&p| {
                    // The walk's step per trade of this symbol sets its grid.
                    let tick = book::tick_size(p * cfg.volatility_per_sqrt_s * dt.sqrt());
                    Ladder::new(p, cfg.book_levels, tick, &mut rng)
                })
                .collect()
        };
        Self {
            ladders,
            books_announced: false,
            rng,
            prices,
            per_batch: cfg.rate * interval,
            carry: 0.0,
            burstiness: cfg.burstiness,
            drift: cfg.drift_per_s,
            vol: cfg.volatility_per_sqrt_s,
            dt,
            symbols,
        }
    }

    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// The next batch (one interval's worth), stamped with `exchange_ts`.
    pub(crate) fn next_batch(&mut self, exchange_ts: i64) -> Batch {
        let mut batch = Batch::default();
        if !self.books_announced && !self.ladders.is_empty() {
            self.books_announced = true;
            batch.books = (self.ladders.iter().zip(&self.symbols))
                .map(|(l, s)| l.snapshot(s, exchange_ts))
                .collect();
        }
        // Steady part plus, with burstiness b, a burst of 10x the mean with probability 1/10:
        // the expected count stays `per_batch`.
        let mut want = self.per_batch * (1.0 - self.burstiness);
        if self.burstiness > 0.0 && self.rng.next_f64() < 0.1 {
            want += self.per_batch * self.burstiness * 10.0;
        }
        want += self.carry;
        let n = want.floor();
        self.carry = want - n;
        for _ in 0..n as usize {
            let (tick, book) = self.next_tick(exchange_ts);
            batch.ticks.push(tick);
            batch.books.extend(book);
        }
        batch
    }

    fn next_tick(&mut self, exchange_ts: i64) -> (RawTick, Option<BookUpdate>) {
        let i = self.rng.below(self.symbols.len());
        let z = self.rng.normal();
        let step =
            (self.drift - 0.5 * self.vol * self.vol) * self.dt + self.vol * self.dt.sqrt() * z;
        // Keep prices on a cent grid and away from zero.
        let p = (self.prices[i] * step.exp() * 100.0).round() / 100.0;
        self.prices[i] = p.max(0.01);
        let size = 1 + self.rng.below(100) as u64 * if self.rng.next_f64() < 0.05 { 10 } else { 1 };
        let side = if self.rng.next_f64() < 0.5 {
            Side::Buy
        } else {
            Side::Sell
        };
        let mut tick = RawTick {
            symbol: self.symbols[i].clone(),
            price: self.prices[i],
            size: size as f64,
            side: Some(side),
            exchange_ts,
        };
        let Some(ladder) = self.ladders.get_mut(i) else {
            return (tick, None);
        };
        // With a book, the trade is at its touch, for what the touch holds.
        let ((price, traded), update) = ladder.step(
            self.prices[i],
            side,
            tick.size,
            &mut self.rng,
            &self.symbols[i],
            exchange_ts,
        );
        tick.price = price;
        tick.size = traded;
        (tick, Some(update))
    }
}

/// The synthetic feed: a [`Generator`] on a timer.
#[derive(Debug)]
pub struct SyntheticFeed {
    generator: Generator,
    interval: Duration,
}

impl SyntheticFeed {
    pub fn new(cfg: &SyntheticConfig) -> Self {
        Self {
            generator: Generator::new(cfg),
            interval: Duration::from_millis(cfg.interval_ms),
        }
    }
}

impl Feed for SyntheticFeed {
    fn name(&self) -> &'static str {
        "synthetic"
    }

    fn run(self: Box<Self>, ctx: FeedContext) -> BoxFuture<'static, Result<(), FeedError>> {
        Box::pin(async move {
            let SyntheticFeed {
                mut generator,
                interval,
            } = *self;
            let mut timer = tokio::time::interval(interval);
            // A late tick (a busy runtime) is made up at once: the feed's rate is the configured
            // one however loaded the server is, as a market's would be.
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            tracing::info!(
                symbols = generator.symbols().len(),
                ?interval,
                "synthetic feed started"
            );
            let source: std::sync::Arc<str> = "synthetic".into();
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = timer.tick() => {}
                }
                let Batch { ticks, books } = generator.next_batch(now_ns());
                // The book first: a trade is never published before the book it traded against.
                ctx.ingest.send_books(&source, books).await?;
                ctx.ingest.send(ticks).await?;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64, burstiness: f64) -> SyntheticConfig {
        SyntheticConfig {
            enabled: true,
            symbols: 5,
            symbol_names: vec![],
            rate: 1000.0,
            burstiness,
            seed,
            interval_ms: 10,
            drift_per_s: 0.0,
            volatility_per_sqrt_s: 0.002,
            book_levels: 0,
        }
    }

    fn run(g: &mut Generator, batches: usize) -> Vec<RawTick> {
        (0..batches).flat_map(|_| g.next_batch(1).ticks).collect()
    }

    #[test]
    fn with_books_every_trade_is_at_its_books_touch_and_the_books_replay_exactly() {
        let c = SyntheticConfig {
            book_levels: 10,
            ..cfg(5, 0.0)
        };
        let mut g = Generator::new(&c);
        let mut h = Generator::new(&c);
        let mut books: std::collections::HashMap<String, crate::book::Book> = Default::default();
        for n in 0..300 {
            let batch = g.next_batch(1);
            assert_eq!(batch, h.next_batch(1), "same seed, same ticks and books");
            if n == 0 {
                assert_eq!(batch.books.iter().filter(|u| u.snapshot).count(), 5);
            }
            for u in &batch.books {
                assert_eq!(u.validate(), Ok(()));
                books.entry(u.symbol.clone()).or_default().apply(u, 100);
            }
            // Each trade is at a touch (the ladder's own test follows one trade at a time): on
            // a grid of whole cents, and the book it leaves is two-sided and uncrossed.
            for t in &batch.ticks {
                assert_eq!(crate::ingest::validate(t), Ok(()), "{t:?}");
                assert!(
                    ((t.price * 100.0).round() - t.price * 100.0).abs() < 1e-6,
                    "{t:?}"
                );
                let ((bid, _), (ask, _)) = books[&t.symbol].view(1).touch().expect("two-sided");
                assert!(bid < ask);
            }
        }
    }

    #[test]
    fn a_book_update_changes_a_handful_of_levels_as_a_venues_does() {
        // The shipped market: 100 symbols, 1,000 trades/s, 20 levels per side.
        let c = SyntheticConfig {
            symbols: 100,
            book_levels: 20,
            ..cfg(42, 0.0)
        };
        let mut g = Generator::new(&c);
        let (mut updates, mut levels) = (0usize, 0usize);
        for _ in 0..1_000 {
            for u in g.next_batch(1).books.iter().filter(|u| !u.snapshot) {
                updates += 1;
                levels += u.bids.len() + u.asks.len();
            }
        }
        let mean = levels as f64 / updates as f64;
        // Moving the whole ladder would be 80 (40 levels in, 40 out).
        assert!(updates > 9_000 && (1.0..=6.0).contains(&mean), "{mean}");
    }

    #[test]
    fn same_seed_same_ticks() {
        let a = run(&mut Generator::new(&cfg(7, 0.5)), 100);
        let b = run(&mut Generator::new(&cfg(7, 0.5)), 100);
        let c = run(&mut Generator::new(&cfg(8, 0.5)), 100);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn mean_rate_holds_with_and_without_bursts() {
        for b in [0.0, 0.3, 0.9] {
            // 10,000 batches of 10 ms = 100 s at 1,000 ticks/s.
            let n = run(&mut Generator::new(&cfg(1, b)), 10_000).len() as f64;
            assert!(
                (n - 100_000.0).abs() / 100_000.0 < 0.1,
                "burstiness {b}: {n} ticks"
            );
        }
    }

    #[test]
    fn ticks_are_valid_and_use_configured_symbols() {
        let mut g = Generator::new(&cfg(3, 0.0));
        assert_eq!(g.symbols(), ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL"]);
        for t in run(&mut g, 200) {
            assert_eq!(crate::ingest::validate(&t), Ok(()), "{t:?}");
        }
        let many = SyntheticConfig {
            symbols: 102,
            ..cfg(1, 0.0)
        };
        assert_eq!(symbol_names(&many)[101], "SYM0101");
        assert!(
            symbol_names(&many)
                .iter()
                .all(|s| crate::model::is_valid_symbol(s))
        );
    }
}
