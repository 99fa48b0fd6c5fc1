//! The synthetic market's order books: a ladder of levels on a price grid around each symbol's
//! random-walk price, whose trades are consistent with it. A buy trades at the best ask and a
//! sell at the best bid, taking size from that level (a level taken whole is removed); the
//! ladder then follows the random walk (levels that would cross it are taken off, new ones
//! join at the far end), and now and then a level's size changes (orders added or cancelled).
//!
//! Each symbol's grid step (its tick size) is a 1-2-5 multiple of a cent that the walk crosses
//! about once in a few trades, as a venue's tick size is set against its price: an update then
//! changes a handful of levels, as real depth updates do, instead of moving the whole ladder.

use super::SplitMix64;
use crate::book::{BookUpdate, Level};
use crate::model::Side;

/// The finest grid: prices are whole cents.
const CENT: f64 = 0.01;

/// One symbol's ladder: bids from the best down, asks from the best up, `levels` per side, on a
/// grid of `tick`.
#[derive(Debug, Clone)]
pub(super) struct Ladder {
    bids: Vec<Level>,
    asks: Vec<Level>,
    levels: usize,
    tick: f64,
}

/// The grid step for a walk that moves `sigma` (one standard deviation) per trade of the
/// symbol: the smallest of 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, ... that is at least twice it,
/// so the touch moves on about one trade in three.
pub(super) fn tick_size(sigma: f64) -> f64 {
    let mut cents = 1.0_f64;
    loop {
        for m in [1.0, 2.0, 5.0] {
            let step = cents * m / 100.0;
            if step >= 2.0 * sigma || !step.is_finite() || step >= 1e9 {
                return step;
            }
        }
        cents *= 10.0;
    }
}

/// Rounds to the cent grid: the float nearest the two-decimal number, so a price prints as its
/// cents (`371.28`), never with residue (`(x / 0.01).round() * 0.01` gives 371.28000000000003).
fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn level_size(rng: &mut SplitMix64) -> f64 {
    (1 + rng.below(500)) as f64
}

impl Ladder {
    /// A full ladder around `mid`, on a grid of `tick` (a whole number of cents).
    pub(super) fn new(mid: f64, levels: usize, tick: f64, rng: &mut SplitMix64) -> Self {
        let mut l = Ladder {
            bids: Vec::new(),
            asks: Vec::new(),
            levels,
            tick: cents(tick).max(CENT),
        };
        l.recenter(mid, rng, &mut Vec::new(), &mut Vec::new());
        l
    }

    /// The whole ladder, as a snapshot update.
    pub(super) fn snapshot(&self, symbol: &str, exchange_ts: i64) -> BookUpdate {
        BookUpdate {
            symbol: symbol.to_owned(),
            snapshot: true,
            bids: self.bids.clone(),
            asks: self.asks.clone(),
            exchange_ts,
        }
    }

    /// One trade against the ladder, then the ladder following `mid`: the trade's price and
    /// size, and the levels that changed.
    pub(super) fn step(
        &mut self,
        mid: f64,
        side: Side,
        size: f64,
        rng: &mut SplitMix64,
        symbol: &str,
        exchange_ts: i64,
    ) -> ((f64, f64), BookUpdate) {
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        // Trade at the touch, at most the level's size.
        let (touch, changed) = match side {
            Side::Buy => (&mut self.asks, &mut asks),
            Side::Sell => (&mut self.bids, &mut bids),
        };
        let (price, left) = touch[0];
        let traded = size.min(left);
        if traded >= left {
            touch.remove(0);
            changed.push((price, 0.0));
        } else {
            touch[0].1 = left - traded;
            changed.push(touch[0]);
        }
        // Orders come and go somewhere in the ladder.
        if rng.next_f64() < 0.5 {
            let (ladder, changed) = if rng.next_f64() < 0.5 {
                (&mut self.bids, &mut bids)
            } else {
                (&mut self.asks, &mut asks)
            };
            if !ladder.is_empty() {
                let i = rng.below(ladder.len());
                ladder[i].1 = level_size(rng);
                changed.retain(|(p, _)| *p != ladder[i].0);
                changed.push(ladder[i]);
            }
        }
        self.recenter(mid, rng, &mut bids, &mut asks);
        let update = BookUpdate {
            symbol: symbol.to_owned(),
            snapshot: false,
            bids,
            asks,
            exchange_ts,
        };
        ((price, traded), update)
    }

    /// Moves the touch to straddle `mid` and refills each side to `levels`, recording changes.
    fn recenter(
        &mut self,
        mid: f64,
        rng: &mut SplitMix64,
        bids: &mut Vec<Level>,
        asks: &mut Vec<Level>,
    ) {
        let tick = self.tick;
        // The grid point nearest `mid - tick / 2`: the touch straddles the walk.
        let best_bid = cents((((mid - tick / 2.0) / tick).round() * tick).max(tick));
        let best_ask = cents(best_bid + tick);
        // Levels on the wrong side of the new touch are taken off.
        while self
            .bids
            .first()
            .is_some_and(|l| l.0 > best_bid + CENT / 2.0)
        {
            let (p, _) = self.bids.remove(0);
            record(bids, (p, 0.0));
        }
        while self
            .asks
            .first()
            .is_some_and(|l| l.0 < best_ask - CENT / 2.0)
        {
            let (p, _) = self.asks.remove(0);
            record(asks, (p, 0.0));
        }
        // Fill from the touch outwards: missing grid points get a level.
        fill(&mut self.bids, best_bid, -tick, self.levels, rng, bids);
        fill(&mut self.asks, best_ask, tick, self.levels, rng, asks);
    }

    /// The best bid and ask.
    #[cfg(test)]
    pub(super) fn touch(&self) -> (Level, Level) {
        (self.bids[0], self.asks[0])
    }
}

/// Records a change of a level, replacing an earlier change of the same price in this update.
fn record(changes: &mut Vec<Level>, level: Level) {
    changes.retain(|(p, _)| *p != level.0);
    changes.push(level);
}

/// Makes `side` hold exactly the `levels` grid points from `best` stepping by `step` (keeping the
/// sizes of those it has), recording every level added or removed.
fn fill(
    side: &mut Vec<Level>,
    best: f64,
    step: f64,
    levels: usize,
    rng: &mut SplitMix64,
    changes: &mut Vec<Level>,
) {
    let mut next: Vec<Level> = Vec::with_capacity(levels);
    for k in 0..levels {
        let price = cents(best + step * k as f64);
        if price <= 0.0 {
            break;
        }
        match side.iter().find(|(p, _)| (*p - price).abs() < CENT / 2.0) {
            Some(&l) => next.push(l),
            None => {
                let l = (price, level_size(rng));
                record(changes, l);
                next.push(l);
            }
        }
    }
    for &(p, _) in side.iter() {
        if !next.iter().any(|(q, _)| (*q - p).abs() < CENT / 2.0) {
            record(changes, (p, 0.0));
        }
    }
    *side = next;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::Book;

    #[test]
    fn the_grid_step_is_a_one_two_five_multiple_of_a_cent_at_least_twice_the_walks_step() {
        for (sigma, tick) in [
            (0.0, 0.01),
            (0.004, 0.01),
            (0.006, 0.02),
            (0.02, 0.05),
            (0.237, 0.5),
            (0.26, 1.0),
            (3.0, 10.0),
        ] {
            assert_eq!(tick_size(sigma), tick, "sigma {sigma}");
        }
        assert!(tick_size(f64::INFINITY).is_finite());
    }

    #[test]
    fn prices_print_as_their_cents() {
        let mut rng = SplitMix64(3);
        let ladder = Ladder::new(371.283, 20, 0.05, &mut rng);
        for (p, _) in ladder.bids.iter().chain(&ladder.asks) {
            let text = p.to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 2, "{text}");
        }
    }

    #[test]
    fn trades_happen_at_the_touch_and_the_updates_keep_a_book_equal_to_the_ladder() {
        let mut rng = SplitMix64(9);
        let mut ladder = Ladder::new(100.0, 5, 0.02, &mut rng);
        let mut book = Book::default();
        book.apply(&ladder.snapshot("X", 1), 100);
        let mut mid = 100.0;
        for i in 0..2000 {
            mid = cents((mid + (rng.next_f64() - 0.5) * 0.05).max(1.0));
            let side = if i % 3 == 0 { Side::Sell } else { Side::Buy };
            let (bid, ask) = ladder.touch();
            let ((price, size), update) = ladder.step(mid, side, 7.0, &mut rng, "X", 1);
            let want = if side == Side::Buy { ask } else { bid };
            assert_eq!(price, want.0, "a trade is at the touch");
            assert!(size > 0.0 && size <= want.1, "and takes at most its size");
            assert_eq!(update.validate(), Ok(()));
            book.apply(&update, 100);
            let v = book.view(5);
            assert_eq!(v.bids, ladder.bids, "step {i}");
            assert_eq!(v.asks, ladder.asks, "step {i}");
            let (b, a) = ladder.touch();
            assert!(b.0 < a.0, "never crossed: {b:?} {a:?}");
            assert!(((a.0 + b.0) / 2.0 - mid).abs() <= 0.02, "follows the walk");
            assert_eq!(cents(a.0 - b.0), 0.02, "one grid step wide: {b:?} {a:?}");
        }
    }
}
