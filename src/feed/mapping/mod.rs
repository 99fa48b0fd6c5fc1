//! Field mappings for the upstream WebSocket feed: which messages are trades, where the symbol,
//! price, size, side and time live, and how to subscribe. Data, not code: each exchange is a
//! TOML file in `feeds/mappings/` (the `binance` and `coinbase` ones are compiled in).
//! [`MessageParser`] (in `parser.rs`) applies a mapping to each message.
//!
//! Side rules, because exchanges disagree on whose side they report:
//! - `taker`: the field holds the taker's side (`buy`/`sell`), used as is;
//! - `maker`: the field holds the **maker's** side, so the taker is the opposite (Coinbase
//!   `match`: `"side":"sell"` means a resting sell order was lifted by a buyer: taker buy);
//! - `buyer_is_maker`: a boolean; `true` means the buyer was the maker, so the taker sold
//!   (Binance `trade`, field `m`).

mod parser;

use std::path::Path;

use serde::Deserialize;

pub use parser::{MessageError, MessageParser, Parsed, map_value};

/// The embedded Binance mapping (`feeds/mappings/binance.toml`).
pub(crate) const BINANCE_TOML: &str = include_str!("../../../feeds/mappings/binance.toml");
/// The embedded Coinbase mapping (`feeds/mappings/coinbase.toml`).
pub(crate) const COINBASE_TOML: &str = include_str!("../../../feeds/mappings/coinbase.toml");

/// Placeholder in `subscribe` for the JSON array of subscription names.
const SYMBOLS_PLACEHOLDER: &str = "{symbols}";

/// How the side field becomes the taker side (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideRule {
    Taker,
    Maker,
    BuyerIsMaker,
}

/// How the time field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Integer milliseconds since the epoch (number or string of digits).
    Ms,
    /// Integer microseconds since the epoch.
    Us,
    /// Integer nanoseconds since the epoch.
    Ns,
    /// An RFC 3339 string (strict; see [`crate::timestamp`]).
    Rfc3339,
}

/// How price and size are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Numbers {
    /// JSON strings holding decimals (`"0.001"`), so no precision is lost upstream.
    String,
    /// JSON numbers.
    Number,
    /// Either.
    Any,
}

/// What to do with the upstream symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolCase {
    /// ASCII-uppercase it (`btcusdt` → `BTCUSDT`); other characters are kept (`BTC-USD`).
    Upper,
    /// Use it as sent.
    Keep,
}

/// One exchange's message layout (the TOML file's keys; every key is required).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Field whose value says what kind of message this is.
    pub type_field: String,
    /// The value of `type_field` that marks a trade; every other message is ignored.
    pub type_value: String,
    pub symbol_field: String,
    pub price_field: String,
    pub size_field: String,
    pub side_field: String,
    pub side_rule: SideRule,
    pub time_field: String,
    pub time_format: TimeFormat,
    pub numbers: Numbers,
    pub symbol_case: SymbolCase,
    /// The subscribe message; `{symbols}` becomes a JSON array of `subscribe_symbol`s.
    pub subscribe: String,
    /// One subscription name; `{symbol}` is the configured symbol, `{symbol_lower}` lowercased.
    pub subscribe_symbol: String,
}

/// A mapping could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read mapping {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("mapping {name} is not valid: {message}")]
    Invalid { name: String, message: String },
}

// === impl Mapping ===

impl Mapping {
    /// `binance`, `coinbase`, or a path to a mapping TOML file.
    pub fn load(spec: &str) -> Result<Mapping, MappingError> {
        match spec {
            "binance" => Self::from_toml("binance", BINANCE_TOML),
            "coinbase" => Self::from_toml("coinbase", COINBASE_TOML),
            path => {
                let text = std::fs::read_to_string(Path::new(path)).map_err(|source| {
                    MappingError::Read {
                        path: path.to_owned(),
                        source,
                    }
                })?;
                Self::from_toml(path, &text)
            }
        }
    }

    /// Parses and checks a mapping.
    pub(crate) fn from_toml(name: &str, text: &str) -> Result<Mapping, MappingError> {
        let invalid = |message: String| MappingError::Invalid {
            name: name.to_owned(),
            message,
        };
        let m: Mapping = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (key, v) in [
            ("type_field", &m.type_field),
            ("type_value", &m.type_value),
            ("symbol_field", &m.symbol_field),
            ("price_field", &m.price_field),
            ("size_field", &m.size_field),
            ("side_field", &m.side_field),
            ("time_field", &m.time_field),
            ("subscribe_symbol", &m.subscribe_symbol),
        ] {
            if v.is_empty() {
                return Err(invalid(format!("`{key}` must not be empty")));
            }
        }
        if !m.subscribe.contains(SYMBOLS_PLACEHOLDER) {
            return Err(invalid(format!(
                "`subscribe` must contain {SYMBOLS_PLACEHOLDER}"
            )));
        }
        m.subscribe_message(&["X".to_owned()])
            .map_err(|e| invalid(format!("`subscribe`: {e}")))?;
        Ok(m)
    }

    /// The subscribe message for `symbols` (upstream spelling), checked to be JSON.
    pub(crate) fn subscribe_message(
        &self,
        symbols: &[String],
    ) -> Result<String, serde_json::Error> {
        let names: Vec<String> = symbols
            .iter()
            .map(|s| {
                self.subscribe_symbol
                    .replace("{symbol_lower}", &s.to_ascii_lowercase())
                    .replace("{symbol}", s)
            })
            .collect();
        let msg = self
            .subscribe
            .replace(SYMBOLS_PLACEHOLDER, &serde_json::to_string(&names)?);
        serde_json::from_str::<serde::de::IgnoredAny>(&msg)?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_messages() {
        let symbols = ["BTCUSDT".to_owned(), "ETHUSDT".to_owned()];
        let b = Mapping::load("binance").unwrap();
        assert_eq!(
            b.subscribe_message(&symbols).unwrap(),
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1}"#
        );
        let c = Mapping::load("coinbase").unwrap();
        assert_eq!(
            c.subscribe_message(&["BTC-USD".to_owned()]).unwrap(),
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channels":["matches"]}"#
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_a_reason() {
        let base = BINANCE_TOML;
        let cases = [
            (
                base.replace("type_field = \"e\"", "type_field = \"\""),
                "type_field",
            ),
            (base.replace("{symbols}", "[]"), "{symbols}"),
            (base.replace("\"id\":1}", "\"id\":1"), "subscribe"),
            (
                base.replace("side_rule = \"buyer_is_maker\"", "side_rule = \"x\""),
                "side_rule",
            ),
            (format!("{base}\nextra = 1\n"), "extra"),
        ];
        for (text, needle) in cases {
            let err = Mapping::from_toml("t", &text)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let err = Mapping::load("/no/such/mapping.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/mapping.toml"), "{err}");
    }
}
