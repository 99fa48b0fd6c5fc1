//! `/openapi.json`, generated from the handlers' `#[utoipa::path]` annotations; a test checks
//! that every REST route of the router appears in it.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{market, portfolio, predictions};

#[derive(OpenApi)]
#[openapi(
    info(title = "tickcast REST API", version = "1"),
    paths(
        market::symbols,
        market::ticks,
        market::bars,
        market::indicators,
        predictions::predictions,
        portfolio::portfolio,
        portfolio::record_trade,
    ),
    components(schemas(
        market::SymbolList,
        market::SymbolInfo,
        market::TickPage,
        market::TickOut,
        market::BarPage,
        market::BarOut,
        predictions::PredictionOut,
        portfolio::TradeIn,
        portfolio::TradeOut,
        portfolio::PortfolioOut,
        portfolio::PositionOut,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document, built once per request (it is small and rarely fetched).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn serve() -> Response {
    Json(document()).into_response()
}
