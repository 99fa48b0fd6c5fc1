//! Portfolio accounting: positions from fills by the average-cost method, and their value at
//! live prices, in exact decimal arithmetic. Pure functions: the store folds each fill into the
//! stored position with [`fold`]; REST (`api/portfolio.rs`) and the `portfolio` channel
//! (`super::live`) value the positions with [`value`].
//!
//! A sell larger than the long position closes it and opens a short at the fill price (and a buy
//! larger than a short does the reverse): fills are facts reported after the event, so they are
//! recorded rather than refused. Reductions realize `closed quantity × (price − average cost)`
//! (sign-flipped for shorts); unrealized P&L is `quantity × (live price − average cost)`, unknown
//! while an open position's symbol has no live price.

#[cfg(test)]
use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::model::Side;
#[cfg(test)]
use crate::store::Trade;
use crate::store::{Holding, OutOfRange, PositionRow};

/// One symbol's position, in exact decimal arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Position {
    /// Signed: negative is short.
    pub quantity: Decimal,
    pub avg_cost: Decimal,
    pub realized: Decimal,
}

impl Position {
    /// Applies one fill (average-cost method). Sums and products are exact; an average cost is
    /// rounded to the decimal's 28 significant digits (1/3 has no exact decimal). Refused, with
    /// the position unchanged, if a value would leave the decimal's range.
    pub(crate) fn apply(
        &mut self,
        side: Side,
        quantity: Decimal,
        price: Decimal,
    ) -> Result<(), OutOfRange> {
        let d = match side {
            Side::Buy => quantity,
            Side::Sell => -quantity,
        };
        let q = self.quantity;
        let mut next = *self;
        if q.is_zero() || q.is_sign_negative() == d.is_sign_negative() {
            let total = q.abs().checked_add(d.abs()).ok_or(OutOfRange)?;
            let cost = q
                .abs()
                .checked_mul(self.avg_cost)
                .and_then(|c| c.checked_add(d.abs().checked_mul(price)?))
                .ok_or(OutOfRange)?;
            next.avg_cost = cost.checked_div(total).ok_or(OutOfRange)?.normalize();
            next.quantity = q.checked_add(d).ok_or(OutOfRange)?;
        } else {
            let closed = d.abs().min(q.abs());
            let per_unit = price.checked_sub(self.avg_cost).ok_or(OutOfRange)?;
            let gain = closed
                .checked_mul(per_unit)
                .map(|g| if q.is_sign_negative() { -g } else { g })
                .ok_or(OutOfRange)?;
            next.realized = self
                .realized
                .checked_add(gain)
                .ok_or(OutOfRange)?
                .normalize();
            next.quantity = q.checked_add(d).ok_or(OutOfRange)?;
            if next.quantity.is_zero() {
                next.quantity = Decimal::ZERO;
                next.avg_cost = Decimal::ZERO;
            } else if next.quantity.is_sign_negative() != q.is_sign_negative() {
                // Flipped through flat: the remainder opened at this fill's price.
                next.avg_cost = price;
            }
        }
        next.quantity = next.quantity.normalize();
        *self = next;
        Ok(())
    }
}

/// The store's [`crate::store::Fold`]: one fill applied to a stored holding.
pub fn fold(
    h: &mut Holding,
    side: Side,
    quantity: Decimal,
    price: Decimal,
) -> Result<(), OutOfRange> {
    let mut p = Position {
        quantity: h.quantity,
        avg_cost: h.avg_cost,
        realized: h.realized,
    };
    p.apply(side, quantity, price)?;
    *h = Holding {
        quantity: p.quantity,
        avg_cost: p.avg_cost,
        realized: p.realized,
    };
    Ok(())
}

/// Positions per symbol from fills in time order (the reference the stored positions match).
#[cfg(test)]
pub(crate) fn positions(trades: &[Trade]) -> BTreeMap<String, Position> {
    let mut out: BTreeMap<String, Position> = BTreeMap::new();
    for t in trades {
        out.entry(t.trade.symbol.clone())
            .or_default()
            .apply(t.trade.side, t.trade.quantity, t.trade.price)
            .expect("test fills stay in range");
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
    /// Quantity times the live price as it prints (exact).
    pub market_value: Option<Decimal>,
    /// Zero for a flat position even without a price; otherwise `None` without a price.
    pub unrealized: Option<Decimal>,
}

/// Every position of a set of fills, valued, with the totals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Valuation {
    /// By symbol, in symbol order.
    pub positions: Vec<ValuedPosition>,
    pub realized: Decimal,
    /// `None` when any open position has no live price.
    pub unrealized: Option<Decimal>,
    /// Fills folded into the positions.
    pub trades: i64,
}

/// Values stored positions at the prices `last_price` reports. A live price enters as the
/// decimal it prints as on the wire ([`super::money::from_price`]), so the valuation is exact
/// arithmetic on what the client sees.
pub(crate) fn value(
    positions: &[PositionRow],
    mut last_price: impl FnMut(&str) -> Option<f64>,
) -> Valuation {
    let mut realized = Decimal::ZERO;
    let mut unrealized = Some(Decimal::ZERO);
    let mut trades = 0;
    let positions = positions
        .iter()
        .map(|row| {
            let symbol = row.symbol.clone();
            trades += row.trades;
            let p = Position {
                quantity: row.holding.quantity,
                avg_cost: row.holding.avg_cost,
                realized: row.holding.realized,
            };
            let last = last_price(&symbol);
            let px = last.and_then(super::money::from_price);
            let upnl = if p.quantity.is_zero() {
                Some(Decimal::ZERO)
            } else {
                px.and_then(|px| p.quantity.checked_mul(px.checked_sub(p.avg_cost)?))
            };
            realized = realized.saturating_add(p.realized);
            unrealized = match (unrealized, upnl) {
                (Some(a), Some(b)) => a.checked_add(b),
                _ => None,
            };
            ValuedPosition {
                symbol,
                position: p,
                last_price: last,
                market_value: px.and_then(|px| px.checked_mul(p.quantity)),
                unrealized: upnl.map(|u| u.normalize()),
            }
        })
        .collect();
    Valuation {
        positions,
        realized: realized.normalize(),
        unrealized: unrealized.map(|u| u.normalize()),
        trades,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewTrade;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn run(fills: &[(Side, &str, &str)]) -> Position {
        let mut p = Position::default();
        for &(s, q, px) in fills {
            p.apply(s, d(q), d(px)).unwrap();
        }
        p
    }

    #[test]
    fn average_cost_and_realized_pnl() {
        use Side::*;
        // Table: fills, then (quantity, avg cost, realized), all exact.
        type Case<'a> = (&'a [(Side, &'a str, &'a str)], (&'a str, &'a str, &'a str));
        let cases: &[Case] = &[
            (&[(Buy, "10", "100")], ("10", "100", "0")),
            (
                &[(Buy, "10", "100"), (Buy, "10", "110")],
                ("20", "105", "0"),
            ),
            (
                &[(Buy, "10", "100"), (Buy, "10", "110"), (Sell, "5", "120")],
                ("15", "105", "75"),
            ),
            (
                &[(Buy, "10", "100"), (Sell, "10", "90")],
                ("0", "0", "-100"),
            ),
            // Oversell flips to a short at the fill price.
            (
                &[(Buy, "10", "100"), (Sell, "15", "110")],
                ("-5", "110", "100"),
            ),
            // Covering a short realizes (avg - price) per unit.
            (&[(Sell, "10", "50"), (Buy, "4", "40")], ("-6", "50", "40")),
            // The binary-float trap: 0.1 + 0.2 is 0.3, and closing it leaves exactly nothing.
            (
                &[(Buy, "0.1", "1.1"), (Buy, "0.2", "1.1")],
                ("0.3", "1.1", "0"),
            ),
            (
                &[(Buy, "0.1", "3"), (Buy, "0.2", "3"), (Sell, "0.3", "3.1")],
                ("0", "0", "0.03"),
            ),
        ];
        for (fills, (q, avg, realized)) in cases {
            let p = run(fills);
            assert_eq!(
                (p.quantity, p.avg_cost, p.realized),
                (d(q), d(avg), d(realized)),
                "{fills:?}"
            );
        }
    }

    #[test]
    fn a_fill_past_the_decimal_range_is_refused_and_changes_nothing() {
        let mut p = run(&[(Side::Buy, "100000000000000", "100000000000000")]);
        let before = p;
        // A cost basis of 1e28 + 1e30 does not fit a 96-bit decimal.
        assert_eq!(
            p.apply(Side::Buy, d("1000000000000000"), d("1000000000000000")),
            Err(OutOfRange)
        );
        assert_eq!(p, before);
    }

    fn fill(id: i64, symbol: &str, side: Side, quantity: &str, price: &str) -> Trade {
        Trade {
            id,
            trade: NewTrade {
                symbol: symbol.to_owned(),
                side,
                quantity: d(quantity),
                price: d(price),
                ts: id,
                time_sent: true,
            },
        }
    }

    #[test]
    fn valuation_sums_symbols_and_needs_a_price_for_open_positions() {
        use Side::*;
        let trades = [
            fill(1, "B", Buy, "10", "100"),
            fill(2, "A", Buy, "2", "50"),
            fill(3, "B", Sell, "4", "110"),
            fill(4, "C", Buy, "1", "10"),
            fill(5, "C", Sell, "1", "12"),
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
        let priced = value(&rows(), |s| match s {
            "A" => Some(55.0),
            "B" => Some(90.0),
            _ => None,
        });
        let symbols: Vec<&str> = priced.positions.iter().map(|p| p.symbol.as_str()).collect();
        assert_eq!(symbols, ["A", "B", "C"]);
        assert_eq!(priced.trades, 3);
        let b = &priced.positions[1];
        assert_eq!(b.market_value, Some(d("540")));
        assert_eq!(b.unrealized, Some(d("-60")));
        // C is flat: nothing unrealized even though it has no price.
        assert_eq!(priced.positions[2].unrealized, Some(Decimal::ZERO));
        assert_eq!(priced.positions[2].market_value, None);
        assert_eq!(priced.realized, d("42"));
        assert_eq!(priced.unrealized, Some(d("-50")));

        // B open without a price: its P&L and the total are unknown, the rest still valued.
        let partial = value(&rows(), |s| (s == "A").then_some(55.0));
        assert_eq!(partial.positions[0].unrealized, Some(d("10")));
        assert_eq!(partial.positions[1].unrealized, None);
        assert_eq!(partial.unrealized, None);
        assert_eq!(partial.realized, d("42"));
    }

    #[test]
    fn live_prices_value_exactly_as_they_print() {
        // 3 × 0.1 is 0.3 (in f64 it is 0.30000000000000004).
        let rows = vec![PositionRow {
            symbol: "X".into(),
            holding: Holding {
                quantity: d("3"),
                avg_cost: d("0.05"),
                realized: Decimal::ZERO,
            },
            trades: 1,
        }];
        let v = value(&rows, |_| Some(0.1));
        assert_eq!(v.positions[0].market_value, Some(d("0.3")));
        assert_eq!(v.unrealized, Some(d("0.15")));
    }
}
