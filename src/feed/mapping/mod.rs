//! Field mappings for the upstream WebSocket feed: which messages are trades, where the symbol,
//! price, size, side and time live, which messages are the venue's heartbeat or a refused
//! subscription, and how to subscribe. Data, not code: each exchange is a TOML file in
//! `feeds/mappings/`; the venues' own (`feed/venues/`) are compiled in. [`MessageParser`] (in
//! `parser.rs`) applies a mapping to each message.
//!
//! Field names are paths: `arg.channel` reads `{"arg":{"channel":..}}`. When `trades_field` is
//! set, the message carries a batch (`{"data":[trade, trade]}`) and the trade fields are read
//! from each element. A `type_value` ending in `*` matches by prefix (`publicTrade.*`).
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

pub use parser::{MessageError, MessageParser, Parsed, SymbolMap, map_value};

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

/// A value a [`Rule`] compares a field with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Expected {
    Bool(bool),
    Text(String),
}

/// Recognises a kind of message by one field: present (and not null), or equal to `equals`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub field: String,
    #[serde(default)]
    pub equals: Option<Expected>,
    /// Where the human-readable reason is (subscription errors); empty: the whole message.
    #[serde(default)]
    pub message: String,
}

/// One exchange's message layout (the TOML file's keys; the trade keys are required, the
/// health keys optional).
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
    /// When it starts with `{"` it is a JSON object template (OKX `{"channel":..,"instId":..}`),
    /// embedded as an object rather than a string.
    pub subscribe_symbol: String,
    /// Path of the array (or object) holding the trades; empty: the message is the trade.
    #[serde(default)]
    pub trades_field: String,
    /// Messages that report a refused subscription (checked before anything else).
    #[serde(default)]
    pub subscribe_errors: Vec<Rule>,
    /// Messages that are the venue's own heartbeat: signs of life, like trades.
    #[serde(default)]
    pub heartbeats: Vec<Rule>,
    /// Messages that are never trades even though their type field says so (OKX acks
    /// `{"event":"subscribe","arg":{"channel":"trades"}}`).
    #[serde(default)]
    pub ignore: Vec<Rule>,
    /// A text message, not JSON, that is a heartbeat (OKX answers `ping` with `pong`).
    #[serde(default)]
    pub heartbeat_text: String,
    /// Text the feed sends every `ping_interval_ms` so the venue answers with a heartbeat
    /// (Bybit `{"op":"ping"}`, OKX `ping`); empty: none.
    #[serde(default)]
    pub ping_text: String,
    #[serde(default)]
    pub ping_interval_ms: u64,
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
    /// A venue's name (see [`crate::feed::venues::VENUES`]), or a path to a mapping TOML file.
    pub fn load(spec: &str) -> Result<Mapping, MappingError> {
        match crate::feed::venues::find(spec) {
            Some(venue) => Self::from_toml(venue.name, venue.mapping),
            None => {
                let path = spec;
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
        for (key, rules) in [
            ("subscribe_errors", &m.subscribe_errors),
            ("heartbeats", &m.heartbeats),
            ("ignore", &m.ignore),
        ] {
            if rules.iter().any(|r| r.field.is_empty()) {
                return Err(invalid(format!("`{key}`: every rule needs a `field`")));
            }
        }
        if m.ping_text.is_empty() != (m.ping_interval_ms == 0) {
            return Err(invalid(
                "`ping_text` and `ping_interval_ms` (>= 1) go together".to_owned(),
            ));
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

    /// A venue symbol as this mapping compares and publishes it (`symbol_case`).
    pub(crate) fn normalise(&self, symbol: &str) -> String {
        match self.symbol_case {
            SymbolCase::Upper => symbol.to_ascii_uppercase(),
            SymbolCase::Keep => symbol.to_owned(),
        }
    }

    /// The subscribe message for `symbols` (upstream spelling), checked to be JSON.
    pub(crate) fn subscribe_message(
        &self,
        symbols: &[String],
    ) -> Result<String, serde_json::Error> {
        let template = self.subscribe_symbol.trim_start().starts_with("{\"");
        let names = symbols
            .iter()
            .map(|s| {
                if template {
                    // Inside a JSON template the symbol goes in as JSON string content.
                    let quoted =
                        |s: &str| serde_json::to_string(s).map(|q| q[1..q.len() - 1].to_owned());
                    let named = self
                        .subscribe_symbol
                        .replace("{symbol_lower}", &quoted(&s.to_ascii_lowercase())?)
                        .replace("{symbol}", &quoted(s)?);
                    serde_json::from_str::<serde_json::Value>(&named)
                } else {
                    Ok(serde_json::Value::String(
                        self.subscribe_symbol
                            .replace("{symbol_lower}", &s.to_ascii_lowercase())
                            .replace("{symbol}", s),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
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
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channels":["matches","heartbeat"]}"#
        );
        let k = Mapping::load("kraken").unwrap();
        assert_eq!(
            k.subscribe_message(&["BTC/USD".to_owned()]).unwrap(),
            r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"],"snapshot":false}}"#
        );
        let y = Mapping::load("bybit").unwrap();
        assert_eq!(
            y.subscribe_message(&symbols).unwrap(),
            r#"{"op":"subscribe","args":["publicTrade.BTCUSDT","publicTrade.ETHUSDT"]}"#
        );
        let o = Mapping::load("okx").unwrap();
        assert_eq!(
            o.subscribe_message(&["BTC-USDT".to_owned(), "a\"b".to_owned()])
                .unwrap(),
            r#"{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"trades","instId":"a\"b"}]}"#
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_a_reason() {
        let base = crate::feed::venues::find("binance")
            .expect("a venue")
            .mapping;
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
            (
                format!("{base}\nping_text = \"ping\"\n"),
                "ping_interval_ms",
            ),
            (
                format!("{base}\nheartbeats = [{{ field = \"\" }}]\n"),
                "heartbeats",
            ),
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
