//! `/openapi.json`, generated from the handlers' `#[utoipa::path]` annotations; a test checks
//! that every REST route of the router appears in it.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::market::MarketState;
use super::params::TIME_PATTERN;
use super::{ApiConfig, auth, book, indicators, market, portfolio, predictions, ticker};

#[derive(OpenApi)]
#[openapi(
    info(title = "tickcast REST API", version = "1"),
    paths(
        market::symbols,
        market::ticks,
        market::bars,
        indicators::indicators,
        ticker::tickers,
        ticker::ticker,
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
        indicators::IndicatorHistory,
        indicators::LatestIndicators,
        indicators::IndicatorsAnswer,
        book::BookOut,
        ticker::TickerList,
        ticker::TickerOut,
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

/// The document as this server answers: the annotations, with the maximums that come from
/// its configuration and every error answer as problem+json. Built per request (it is small
/// and rarely fetched).
pub(crate) fn document(api: &ApiConfig, book_depth: usize) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let limits = [
        ("/api/v1/ticks/{symbol}", "limit", api.max_page_size as u64),
        ("/api/v1/bars/{symbol}", "limit", api.max_page_size as u64),
        ("/api/v1/book/{symbol}", "depth", book_depth as u64),
        (
            "/api/v1/predictions/{symbol}",
            "horizon_s",
            api.max_horizon_s,
        ),
    ];
    for (path, name, max) in limits {
        let params = doc["paths"][path]["get"]["parameters"].as_array_mut();
        for p in params.into_iter().flatten().filter(|p| p["name"] == name) {
            p["schema"]["maximum"] = json!(max);
        }
    }
    // One pattern for every time parameter and field (`utoipa` takes only literals).
    for path in ["/api/v1/ticks/{symbol}", "/api/v1/bars/{symbol}"] {
        let params = doc["paths"][path]["get"]["parameters"].as_array_mut();
        for p in params.into_iter().flatten() {
            if p["name"] == "from" || p["name"] == "to" {
                p["schema"]["pattern"] = json!(TIME_PATTERN);
            }
        }
    }
    doc["components"]["schemas"]["TradeIn"]["properties"]["time"]["pattern"] = json!(TIME_PATTERN);
    problems(&mut doc);
    doc
}

/// Every operation can also answer 400 (an unknown query parameter), 429 (the rate limit is in
/// front of all of them) and, when it reads or writes the database, 503; every error answer is a problem+json body.
fn problems(doc: &mut Value) {
    doc["components"]["schemas"]["Problem"] = json!({
        "type": "object",
        "description": "RFC 9457 problem details; `code` is stable (docs/PROTOCOL.md)",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
        },
    });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            responses.insert("429".into(), json!({"description": "rate_limited"}));
            // Every operation refuses a query parameter it does not take.
            responses.entry("400").or_insert_with(
                || json!({"description": "bad_request (an unknown query parameter)"}),
            );
            if STORE_PATHS.contains(&path.as_str()) {
                responses.insert("503".into(), json!({"description": "database_unavailable"}));
            }
            for (status, response) in responses.iter_mut() {
                if status.parse::<u16>().is_ok_and(|s| s >= 400) {
                    response["content"] = json!({"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}
                    }});
                }
            }
        }
    }
}

/// The operations that read or write the database.
const STORE_PATHS: &[&str] = &[
    "/api/v1/symbols",
    "/api/v1/ticks/{symbol}",
    "/api/v1/bars/{symbol}",
    "/api/v1/portfolio",
    "/api/v1/portfolio/trades",
    "/api/v1/auth/token",
];

pub(crate) async fn serve(State(market): State<MarketState>) -> Response {
    Json(document(&market.api, market.book_depth)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query parameters each endpoint documents, from its typed query struct.
    #[test]
    fn query_parameters_come_from_the_query_types() {
        let config = crate::config::Config::defaults().expect("the defaults load");
        let doc = document(&config.api, config.book.depth);
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "/api/v1/ticks/{symbol}",
                &["from", "to", "limit", "cursor", "order"],
                &[],
            ),
            (
                "/api/v1/bars/{symbol}",
                &["interval", "from", "to", "limit", "order"],
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

    /// What the server enforces is what the document states: the configured maximums, the
    /// time forms, a trade's ranges and patterns, and the error answers every operation has.
    #[test]
    fn the_document_states_the_constraints_the_server_enforces() {
        let mut config = crate::config::Config::defaults().expect("the defaults load");
        config.api.max_page_size = 500;
        config.api.max_horizon_s = 120;
        let doc = document(&config.api, 40);
        let param = |path: &str, name: &str| -> Value {
            let params = doc["paths"][path]["get"]["parameters"].as_array().cloned();
            let found = params.into_iter().flatten().find(|p| p["name"] == name);
            found.map(|p| p["schema"].clone()).unwrap_or_default()
        };
        let book = "/api/v1/book/{symbol}";
        assert_eq!(
            (
                &param(book, "depth")["minimum"],
                &param(book, "depth")["maximum"]
            ),
            (&json!(1), &json!(40)),
            "depth: 1..=book.depth"
        );
        for path in ["/api/v1/ticks/{symbol}", "/api/v1/bars/{symbol}"] {
            assert_eq!(param(path, "limit")["maximum"], json!(500), "{path}");
            for name in ["from", "to"] {
                assert_eq!(
                    param(path, name)["pattern"],
                    json!(TIME_PATTERN),
                    "{path} {name}"
                );
            }
        }
        let horizon = param("/api/v1/predictions/{symbol}", "horizon_s");
        assert_eq!(
            (&horizon["minimum"], &horizon["maximum"]),
            (&json!(1), &json!(120))
        );

        let trade = &doc["components"]["schemas"]["TradeIn"]["properties"];
        assert_eq!(trade["symbol"]["pattern"], "^[A-Z0-9._-]{1,32}$");
        assert_eq!(trade["side"]["pattern"], "^(buy|sell)$");
        assert_eq!(trade["time"]["pattern"], json!(TIME_PATTERN));
        for field in ["quantity", "price"] {
            assert_eq!(trade[field]["exclusiveMinimum"], json!(0), "{field}");
            assert_eq!(
                trade[field]["maximum"],
                json!(1_000_000_000_000_000u64),
                "{field}"
            );
        }

        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let responses = op["responses"].as_object().cloned().unwrap_or_default();
                assert!(responses.contains_key("429"), "{method} {path}: 429");
                let errors = responses.iter().filter(|(s, _)| s.as_str() >= "400");
                for (status, r) in errors {
                    let schema = &r["content"]["application/problem+json"]["schema"];
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/Problem",
                        "{path} {status}"
                    );
                }
            }
        }
    }
}
