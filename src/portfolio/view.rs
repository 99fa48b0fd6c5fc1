//! The portfolio as clients see it: one body for `GET /api/v1/portfolio` and the `portfolio`
//! channel's events, so the two never disagree. Every field but `last_price` is exact.

use serde::Serialize;

use super::{Valuation, ValuedPosition};
use crate::money::Exact;

/// One position as REST and the `portfolio` channel show it. Every field but `last_price` is
/// exact decimal arithmetic.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PositionOut {
    symbol: String,
    /// Exact; negative when short.
    #[schema(value_type = f64)]
    quantity: Exact,
    /// The cost basis over the quantity, rounded to at most 28 significant digits (1/3 has no
    /// exact decimal); display only: P&L is computed from the exact cost basis.
    #[schema(value_type = f64)]
    avg_cost: Exact,
    /// Live price from the ring (market data: a binary float, printed as on the ticks
    /// channel); null before the symbol's first tick.
    last_price: Option<f64>,
    /// Exact: quantity × last_price as printed.
    #[schema(value_type = Option<f64>)]
    market_value: Option<Exact>,
    /// Exact: quantity × last_price − the position's exact cost basis (not via avg_cost).
    #[schema(value_type = Option<f64>)]
    unrealized_pnl: Option<Exact>,
    /// Exact.
    #[schema(value_type = f64)]
    realized_pnl: Exact,
}

impl From<ValuedPosition> for PositionOut {
    fn from(v: ValuedPosition) -> Self {
        PositionOut {
            symbol: v.symbol,
            quantity: Exact(v.position.quantity),
            avg_cost: Exact(super::accounting::average_cost(
                v.position.quantity,
                v.position.cost,
            )),
            last_price: v.last_price,
            market_value: v.market_value.map(Exact),
            unrealized_pnl: v.unrealized.map(Exact),
            realized_pnl: Exact(v.position.realized),
        }
    }
}

/// A user's portfolio as REST and the `portfolio` channel show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PortfolioOut {
    positions: Vec<PositionOut>,
    /// Exact.
    #[schema(value_type = f64)]
    realized_pnl: Exact,
    /// Exact; null when an open position has no live price yet.
    #[schema(value_type = Option<f64>)]
    unrealized_pnl: Option<Exact>,
    trades: i64,
}

impl From<Valuation> for PortfolioOut {
    fn from(v: Valuation) -> Self {
        PortfolioOut {
            positions: v.positions.into_iter().map(Into::into).collect(),
            realized_pnl: Exact(v.realized),
            unrealized_pnl: v.unrealized.map(Exact),
            trades: v.trades,
        }
    }
}
