//! `GET /api/v1/book/{symbol}?depth=N`: a symbol's current order book view, with the derived
//! top-of-book figures (mid, spread, imbalance) and the checksum its `book:` events carry.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::market::MarketState;
use super::params::{self, Params};
use crate::book::TopOfBook;
use crate::model::{ChannelId, Kind};
use crate::protocol::{Num, Problem, ProblemCode};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct BookQuery {
    /// Levels per side, 1..=`book.depth` (the default, 25); the document states the
    /// configured maximum.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 25)]
    depth: Option<String>,
}

/// A book as REST shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BookOut {
    symbol: String,
    /// The `seq` of the `book:` event this view follows.
    seq: u64,
    /// `[price, size]`, best (highest) first; whole numbers as integers, as on the socket.
    #[schema(value_type = Vec<Vec<f64>>)]
    bids: Vec<(Num, Num)>,
    /// `[price, size]`, best (lowest) first.
    #[schema(value_type = Vec<Vec<f64>>)]
    asks: Vec<(Num, Num)>,
    /// CRC-32 of the top 10 levels of these (docs/PROTOCOL.md "Order books").
    checksum: u32,
    /// The derived view: null while a side is empty.
    #[serde(flatten)]
    top: TopOfBook,
}

/// The symbol's current book, its top `depth` levels per side.
#[utoipa::path(get, path = "/api/v1/book/{symbol}", tag = "market",
    params(("symbol" = String, Path), BookQuery),
    responses((status = 200, body = BookOut),
        (status = 400, description = "bad_request (depth out of range)"),
        (status = 404, description = "unknown_symbol, or not_found: the symbol has no book")))]
pub(crate) async fn book(
    State(market): State<MarketState>,
    Path(symbol): Path<String>,
    q: Params<BookQuery>,
) -> Result<Response, Problem> {
    let q = params::params(q)?;
    let max = market.book_depth;
    let depth = match q.depth.as_deref() {
        None => max,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(Problem::new(
                    ProblemCode::BadRequest,
                    format!("depth must be an integer from 1 to {max} (book.depth), got {text:?}"),
                ));
            }
        },
    };
    let id = params::live_symbol(&market.symbols, &symbol)?;
    let ch = ChannelId {
        kind: Kind::Book,
        symbol: id,
    };
    let Some(published) = market.hub.book_view(ch) else {
        return Err(Problem::new(
            ProblemCode::NotFound,
            format!("{symbol} has no order book"),
        ));
    };
    let view = published.view.top(depth);
    Ok(Json(BookOut {
        symbol,
        seq: published.seq,
        checksum: view.checksum(),
        top: view.top_of_book(),
        bids: levels(&view.bids),
        asks: levels(&view.asks),
    })
    .into_response())
}

/// A side's levels written as the socket writes them (`[100,2]`, not `[100.0,2.0]`).
fn levels(side: &[(f64, f64)]) -> Vec<(Num, Num)> {
    side.iter().map(|&(p, s)| (Num(p), Num(s))).collect()
}
