//! `/openapi.json`, generated from the handlers' `#[utoipa::path]` annotations; a test checks
//! that every REST route of the router appears in it.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{auth, book, market, portfolio, predictions};

#[derive(OpenApi)]
#[openapi(
    info(title = "tickcast REST API", version = "1"),
    paths(
        market::symbols,
        market::ticks,
        market::bars,
        market::indicators,
        book::book,
        predictions::predictions,
        portfolio::portfolio,
        portfolio::record_trade,
        auth::token,
    ),
    components(schemas(
        market::SymbolList,
        market::SymbolInfo,
        market::TickPage,
        market::TickOut,
        market::BarPage,
        market::BarOut,
        book::BookOut,
        crate::book::TopOfBook,
        predictions::PredictionOut,
        portfolio::TradeIn,
        portfolio::TradeOut,
        crate::portfolio::PortfolioOut,
        crate::portfolio::PositionOut,
        auth::TokenOut,
    )),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

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
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(crate) async fn serve() -> Response {
    Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query parameters each endpoint documents, from its typed query struct.
    #[test]
    fn query_parameters_come_from_the_query_types() {
        let doc = serde_json::to_value(document()).expect("the document serializes");
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "/api/v1/ticks/{symbol}",
                &["from", "to", "limit", "cursor"],
                &[],
            ),
            (
                "/api/v1/bars/{symbol}",
                &["interval", "from", "to", "limit"],
                &["interval"],
            ),
            ("/api/v1/predictions/{symbol}", &["horizon_s", "model"], &[]),
            ("/api/v1/book/{symbol}", &["depth"], &[]),
        ];
        for (path, names, required) in cases {
            let params = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{path} has no parameters"));
            let query: Vec<(&str, bool)> = params
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| (p["name"].as_str().unwrap_or(""), p["required"] == true))
                .collect();
            let want: Vec<(&str, bool)> =
                names.iter().map(|n| (*n, required.contains(n))).collect();
            assert_eq!(query, want, "{path}");
            assert!(
                params
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"] == "symbol"),
                "{path}"
            );
        }
    }
}
