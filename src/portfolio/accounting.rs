//! Portfolio accounting: positions from fills by the average-cost method, and their value at
//! live prices, in exact decimal arithmetic. Pure functions: the store folds each fill into the
//! stored position with [`fold`]; REST (`api/portfolio.rs`) and the `portfolio` channel
//! (`super::live`) value the positions with [`value`].
//!
//! A sell larger than the long position closes it and opens a short at the fill price (and a buy
//! larger than a short does the reverse): fills are facts reported after the event, so they are
//! recorded rather than refused. A position keeps its cost basis as a total (the sum of its
//! open fills' quantity × price), never as a rounded average, so P&L stays exact: a reduction
//! realizes `closed quantity × price − its share of the cost basis` (sign-flipped for shorts),
//! and unrealized P&L is `quantity × live price − cost basis`, unknown while an open position's
//! symbol has no live price. The average cost is only printed ([`average_cost`]).

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
    /// What the open quantity cost, in total (never negative; zero when flat).
    pub cost: Decimal,
    pub realized: Decimal,
}

/// Significant digits an average cost is printed with (docs/PROTOCOL.md says 28).
const AVERAGE_DIGITS: u32 = 28;

/// The average cost of `quantity` (signed) bought for `cost` in total: for display only,
/// rounded to [`AVERAGE_DIGITS`] significant digits (1/3 has no exact decimal); 0 when flat.
pub(crate) fn average_cost(quantity: Decimal, cost: Decimal) -> Decimal {
    if quantity.is_zero() {
        return Decimal::ZERO;
    }
    cost.checked_div(quantity.abs())
        .and_then(|avg| avg.round_sf(AVERAGE_DIGITS))
        .unwrap_or_default()
        .normalize()
}

impl Position {
    /// Applies one fill (average-cost method). Sums and products are exact; the one rounding is
    /// a partial close's share of the cost basis (`cost × closed / quantity`, to the decimal's
    /// precision), which is then both realized and removed, so nothing leaks between the two.
    /// Refused, with the position unchanged, if a value would leave the decimal's range.
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
            next.cost = d
                .abs()
                .checked_mul(price)
                .and_then(|c| c.checked_add(self.cost))
                .ok_or(OutOfRange)?
                .normalize();
            next.quantity = q.checked_add(d).ok_or(OutOfRange)?;
        } else {
            let closed = d.abs().min(q.abs());
            let closed_cost = if closed == q.abs() {
                self.cost
            } else {
                self.cost
                    .checked_mul(closed)
                    .and_then(|c| c.checked_div(q.abs()))
                    .ok_or(OutOfRange)?
            };
            let proceeds = closed.checked_mul(price).ok_or(OutOfRange)?;
            let gain = proceeds
                .checked_sub(closed_cost)
                .map(|g| if q.is_sign_negative() { -g } else { g })
                .ok_or(OutOfRange)?;
            next.cost = self
                .cost
                .checked_sub(closed_cost)
                .ok_or(OutOfRange)?
                .normalize();
            next.realized = self
                .realized
                .checked_add(gain)
                .ok_or(OutOfRange)?
                .normalize();
            next.quantity = q.checked_add(d).ok_or(OutOfRange)?;
            if next.quantity.is_zero() {
                next.quantity = Decimal::ZERO;
                next.cost = Decimal::ZERO;
            } else if next.quantity.is_sign_negative() != q.is_sign_negative() {
                // Flipped through flat: the remainder opened at this fill's price.
                next.cost = next
                    .quantity
                    .abs()
                    .checked_mul(price)
                    .ok_or(OutOfRange)?
                    .normalize();
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
        cost: h.cost,
        realized: h.realized,
    };
    p.apply(side, quantity, price)?;
    *h = Holding {
        quantity: p.quantity,
        cost: p.cost,
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
/// decimal it prints as on the wire ([`crate::money::from_price`]), so the valuation is exact
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
                cost: row.holding.cost,
                realized: row.holding.realized,
            };
            let last = last_price(&symbol);
            let px = last.and_then(crate::money::from_price);
            // quantity × price − cost basis (a short's basis is what it was sold for).
            let signed_cost = if p.quantity.is_sign_negative() {
                -p.cost
            } else {
                p.cost
            };
            let market_value = px.and_then(|px| px.checked_mul(p.quantity));
            let upnl = if p.quantity.is_zero() {
                Some(Decimal::ZERO)
            } else {
                market_value.and_then(|mv| mv.checked_sub(signed_cost))
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
                market_value,
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
                (p.quantity, average_cost(p.quantity, p.cost), p.realized),
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
                        cost: p.cost,
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
                cost: d("0.15"),
                realized: Decimal::ZERO,
            },
            trades: 1,
        }];
        let v = value(&rows, |_| Some(0.1));
        assert_eq!(v.positions[0].market_value, Some(d("0.3")));
        assert_eq!(v.unrealized, Some(d("0.15")));
    }

    #[test]
    fn pnl_comes_from_the_exact_cost_basis_not_the_rounded_average() {
        use Side::*;
        // 0.1 @ 0.1 and 0.2 @ 0.2 cost 0.05 for 0.3: the average 0.1666… has no exact decimal.
        let p = run(&[(Buy, "0.1", "0.1"), (Buy, "0.2", "0.2")]);
        assert_eq!((p.quantity, p.cost), (d("0.3"), d("0.05")));
        assert_eq!(
            average_cost(p.quantity, p.cost),
            d("0.1666666666666666666666666667")
        );
        let rows = vec![PositionRow {
            symbol: "X".into(),
            holding: Holding {
                quantity: p.quantity,
                cost: p.cost,
                realized: p.realized,
            },
            trades: 2,
        }];
        // 0.3 × 85.6 − 0.05 = 25.63 exactly (through the average: 25.629999…).
        let v = value(&rows, |_| Some(85.6));
        assert_eq!(v.positions[0].unrealized, Some(d("25.63")));
        assert_eq!(v.unrealized, Some(d("25.63")));
        // The same for a short: sold for 0.05, bought back at market.
        let short = run(&[(Sell, "0.1", "0.1"), (Sell, "0.2", "0.2")]);
        let rows = vec![PositionRow {
            holding: Holding {
                quantity: short.quantity,
                cost: short.cost,
                realized: short.realized,
            },
            ..rows[0].clone()
        }];
        assert_eq!(value(&rows, |_| Some(85.6)).unrealized, Some(d("-25.63")));
        // Closing it all realizes exactly what it showed.
        let closed = run(&[
            (Buy, "0.1", "0.1"),
            (Buy, "0.2", "0.2"),
            (Sell, "0.3", "85.6"),
        ]);
        assert_eq!(
            (closed.quantity, closed.realized),
            (Decimal::ZERO, d("25.63"))
        );
    }

    #[test]
    fn an_average_cost_prints_at_most_28_significant_digits() {
        // 86.4 / 7: the decimal's quotient holds 29 digits here; the printed one holds 28.
        let raw = d("86.4") / d("7");
        assert_eq!(raw.to_string().len() - 1, 29, "{raw}");
        let avg = average_cost(d("7"), d("86.4"));
        assert_eq!(avg, d("12.34285714285714285714285714"));
        assert_eq!(average_cost(d("-7"), d("86.4")), avg, "a short's too");
        assert_eq!(average_cost(Decimal::ZERO, d("5")), Decimal::ZERO);
    }
}
