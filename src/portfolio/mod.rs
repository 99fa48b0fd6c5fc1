//! Portfolios: the accounting of fills into positions (`accounting`) and the private
//! `portfolio` channel that streams a user's valued positions (`live`). Exact money at the
//! edges is the leaf `crate::money`, which the store uses too.

mod accounting;
mod live;
mod view;

use crate::model::Symbols;
use crate::rooms::Hub;

pub use live::{LivePortfolios, OpenError, PortfolioConfig};

pub use accounting::fold;
pub(crate) use accounting::{Valuation, ValuedPosition, value};
pub(crate) use view::{PortfolioOut, PositionOut};

/// The live price of `symbol` for valuing positions: its newest tick, if it has one.
pub(crate) fn live_price(symbols: &Symbols, hub: &Hub, symbol: &str) -> Option<f64> {
    symbols
        .get(symbol)
        .and_then(|id| hub.latest_tick(id))
        .map(|t| t.price)
}
