//! Portfolio accounting: positions from fills by the average-cost method, and their value at
//! live prices. Pure functions: the store folds each fill into the stored position with
//! [`fold`]; the HTTP layer (`api/portfolio.rs`) fetches positions and prices and shapes the
//! response.
//!
//! A sell larger than the long position closes it and opens a short at the fill price (and a buy
//! larger than a short does the reverse): fills are facts reported after the event, so they are
//! recorded rather than refused. Reductions realize `closed quantity × (price − average cost)`
//! (sign-flipped for shorts); unrealized P&L is `quantity × (live price − average cost)`, unknown
//! while an open position's symbol has no live price.

#[cfg(test)]
use std::collections::BTreeMap;

use crate::model::Side;
#[cfg(test)]
use crate::store::Trade;
use crate::store::{Holding, PositionRow};

/// Quantities below this are a flat position (float residue of partial closes).
const FLAT: f64 = 1e-9;

/// One symbol's position.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Position {
    /// Signed: negative is short.
    pub quantity: f64,
    pub avg_cost: f64,
    pub realized: f64,
}

impl Position {
    /// Applies one fill (average-cost method).
    pub(crate) fn apply(&mut self, side: Side, quantity: f64, price: f64) {
        let d = match side {
            Side::Buy => quantity,
            Side::Sell => -quantity,
        };
        let q = self.quantity;
        if q.abs() < FLAT || q.signum() == d.signum() {
            let total = q.abs() + d.abs();
            self.avg_cost = (q.abs() * self.avg_cost + d.abs() * price) / total;
            self.quantity = q + d;
            return;
        }
        let closed = d.abs().min(q.abs());
        self.realized += closed * (price - self.avg_cost) * q.signum();
        self.quantity = q + d;
        if self.quantity.abs() < FLAT {
            self.quantity = 0.0;
            self.avg_cost = 0.0;
        } else if self.quantity.signum() != q.signum() {
            // Flipped through flat: the remainder opened at this fill's price.
            self.avg_cost = price;
        }
    }
}

/// The store's [`crate::store::Fold`]: one fill applied to a stored holding.
pub fn fold(h: &mut Holding, side: Side, quantity: f64, price: f64) {
    let mut p = Position {
        quantity: h.quantity,
        avg_cost: h.avg_cost,
        realized: h.realized,
    };
    p.apply(side, quantity, price);
    *h = Holding {
        quantity: p.quantity,
        avg_cost: p.avg_cost,
        realized: p.realized,
    };
}

/// Positions per symbol from fills in time order (the reference the stored positions match).
#[cfg(test)]
pub(crate) fn positions(trades: &[Trade]) -> BTreeMap<String, Position> {
    let mut out: BTreeMap<String, Position> = BTreeMap::new();
    for t in trades {
        out.entry(t.trade.symbol.clone()).or_default().apply(
            t.trade.side,
            t.trade.quantity,
            t.trade.price,
        );
    }
    out
}

/// One position valued at its symbol's live price.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValuedPosition {
    pub symbol: String,
    pub position: Position,
    /// `None` before the symbol's first tick.
    pub last_price: Option<f64>,
    pub market_value: Option<f64>,
    /// Zero for a flat position even without a price; otherwise `None` without a price.
    pub unrealized: Option<f64>,
}

/// Every position of a set of fills, valued, with the totals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Valuation {
    /// By symbol, in symbol order.
    pub positions: Vec<ValuedPosition>,
    pub realized: f64,
    /// `None` when any open position has no live price.
    pub unrealized: Option<f64>,
}

/// Values stored positions at the prices `last_price` reports.
pub(crate) fn value(
    positions: Vec<PositionRow>,
    mut last_price: impl FnMut(&str) -> Option<f64>,
) -> Valuation {
    let mut realized = 0.0;
    let mut unrealized = Some(0.0);
    let positions = positions
        .into_iter()
        .map(|row| {
            let symbol = row.symbol;
            let p = Position {
                quantity: row.holding.quantity,
                avg_cost: row.holding.avg_cost,
                realized: row.holding.realized,
            };
            let last = last_price(&symbol);
            let upnl = if p.quantity == 0.0 {
                Some(0.0)
            } else {
                last.map(|px| p.quantity * (px - p.avg_cost))
            };
            realized += p.realized;
            unrealized = match (unrealized, upnl) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            ValuedPosition {
                symbol,
                position: p,
                last_price: last,
                market_value: last.map(|px| px * p.quantity),
                unrealized: upnl,
            }
        })
        .collect();
    Valuation {
        positions,
        realized,
        unrealized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewTrade;

    fn run(fills: &[(Side, f64, f64)]) -> Position {
        let mut p = Position::default();
        for &(s, q, px) in fills {
            p.apply(s, q, px);
        }
        p
    }

    #[test]
    fn average_cost_and_realized_pnl() {
        use Side::*;
        // Table: fills, then (quantity, avg cost, realized).
        type Case<'a> = (&'a [(Side, f64, f64)], (f64, f64, f64));
        let cases: &[Case] = &[
            (&[(Buy, 10.0, 100.0)], (10.0, 100.0, 0.0)),
            (
                &[(Buy, 10.0, 100.0), (Buy, 10.0, 110.0)],
                (20.0, 105.0, 0.0),
            ),
            (
                &[(Buy, 10.0, 100.0), (Buy, 10.0, 110.0), (Sell, 5.0, 120.0)],
                (15.0, 105.0, 75.0),
            ),
            (
                &[(Buy, 10.0, 100.0), (Sell, 10.0, 90.0)],
                (0.0, 0.0, -100.0),
            ),
            // Oversell flips to a short at the fill price.
            (
                &[(Buy, 10.0, 100.0), (Sell, 15.0, 110.0)],
                (-5.0, 110.0, 100.0),
            ),
            // Covering a short realizes (avg - price) per unit.
            (&[(Sell, 10.0, 50.0), (Buy, 4.0, 40.0)], (-6.0, 50.0, 40.0)),
        ];
        for (fills, (q, avg, realized)) in cases {
            let p = run(fills);
            assert!((p.quantity - q).abs() < 1e-9, "{fills:?}: {p:?}");
            assert!((p.avg_cost - avg).abs() < 1e-9, "{fills:?}: {p:?}");
            assert!((p.realized - realized).abs() < 1e-9, "{fills:?}: {p:?}");
        }
    }

    fn fill(id: i64, symbol: &str, side: Side, quantity: f64, price: f64) -> Trade {
        Trade {
            id,
            trade: NewTrade {
                symbol: symbol.to_owned(),
                side,
                quantity,
                price,
                ts: id,
                time_sent: true,
            },
        }
    }

    #[test]
    fn valuation_sums_symbols_and_needs_a_price_for_open_positions() {
        use Side::*;
        let trades = [
            fill(1, "B", Buy, 10.0, 100.0),
            fill(2, "A", Buy, 2.0, 50.0),
            fill(3, "B", Sell, 4.0, 110.0),
            fill(4, "C", Buy, 1.0, 10.0),
            fill(5, "C", Sell, 1.0, 12.0),
        ];
        let rows = || -> Vec<PositionRow> {
            positions(&trades)
                .into_iter()
                .map(|(symbol, p)| PositionRow {
                    symbol,
                    holding: Holding {
                        quantity: p.quantity,
                        avg_cost: p.avg_cost,
                        realized: p.realized,
                    },
                    trades: 1,
                })
                .collect()
        };
        let priced = value(rows(), |s| match s {
            "A" => Some(55.0),
            "B" => Some(90.0),
            _ => None,
        });
        let symbols: Vec<&str> = priced.positions.iter().map(|p| p.symbol.as_str()).collect();
        assert_eq!(symbols, ["A", "B", "C"]);
        let b = &priced.positions[1];
        assert_eq!(b.market_value, Some(6.0 * 90.0));
        assert_eq!(b.unrealized, Some(6.0 * (90.0 - 100.0)));
        // C is flat: nothing unrealized even though it has no price.
        assert_eq!(priced.positions[2].unrealized, Some(0.0));
        assert_eq!(priced.positions[2].market_value, None);
        assert_eq!(priced.realized, 4.0 * 10.0 + 2.0);
        assert_eq!(priced.unrealized, Some(2.0 * 5.0 - 60.0));

        // B open without a price: its P&L and the total are unknown, the rest still valued.
        let partial = value(rows(), |s| (s == "A").then_some(55.0));
        assert_eq!(partial.positions[0].unrealized, Some(10.0));
        assert_eq!(partial.positions[1].unrealized, None);
        assert_eq!(partial.unrealized, None);
        assert_eq!(partial.realized, 42.0);
    }
}
