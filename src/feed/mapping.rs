//! Field mappings for the upstream WebSocket feed: which messages are trades, where the symbol,
//! price, size, side and time live, and how to subscribe. Data, not code: each exchange is a
//! TOML file in `feeds/mappings/` (the `binance` and `coinbase` ones are compiled in).
//!
//! [`MessageParser`] parses each message with simd-json into a borrowed value (on a scratch
//! copy, since simd-json parses in place, with reused buffers so the steady state allocates
//! only the tick's symbol) and maps it to a [`RawTick`], [`Parsed::Ignored`] or a
//! [`MessageError`].
//!
//! Side rules, because exchanges disagree on whose side they report:
//! - `taker`: the field holds the taker's side (`buy`/`sell`), used as is;
//! - `maker`: the field holds the **maker's** side, so the taker is the opposite (Coinbase
//!   `match`: `"side":"sell"` means a resting sell order was lifted by a buyer: taker buy);
//! - `buyer_is_maker`: a boolean; `true` means the buyer was the maker, so the taker sold
//!   (Binance `trade`, field `m`).

use std::path::Path;

use serde::Deserialize;
use simd_json::prelude::*;

use crate::ingest::TickError;
use crate::model::{RawTick, Side};
use crate::timestamp;

/// The embedded Binance mapping (`feeds/mappings/binance.toml`).
pub const BINANCE_TOML: &str = include_str!("../../feeds/mappings/binance.toml");
/// The embedded Coinbase mapping (`feeds/mappings/coinbase.toml`).
pub const COINBASE_TOML: &str = include_str!("../../feeds/mappings/coinbase.toml");

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
    /// An RFC 3339 string (strict; see [`timestamp`]).
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
    pub fn from_toml(name: &str, text: &str) -> Result<Mapping, MappingError> {
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
    pub fn subscribe_message(&self, symbols: &[String]) -> Result<String, serde_json::Error> {
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

/// The result of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Trade(RawTick),
    /// Not a trade (an ack, a heartbeat, another channel); `kind` is its type field, if any.
    Ignored {
        kind: Option<String>,
    },
}

/// A message that should have been a trade and was not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("field `{field}` is missing")]
    Missing { field: String },
    #[error("field `{field}`: {message}")]
    Field { field: String, message: String },
    #[error(transparent)]
    Tick(#[from] TickError),
}

impl MessageError {
    fn field(field: &str, message: impl ToString) -> Self {
        MessageError::Field {
            field: field.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Parses upstream messages by a [`Mapping`], reusing its buffers between messages.
pub struct MessageParser {
    mapping: Mapping,
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
}

impl std::fmt::Debug for MessageParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageParser")
            .field("mapping", &self.mapping)
            .finish_non_exhaustive()
    }
}

type Value<'v> = simd_json::BorrowedValue<'v>;

// === impl MessageParser ===

impl MessageParser {
    pub fn new(mapping: Mapping) -> Self {
        Self {
            mapping,
            scratch: Vec::with_capacity(1024),
            buffers: simd_json::Buffers::default(),
        }
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Parses one message (the bytes of a text frame).
    pub fn parse(&mut self, msg: &[u8]) -> Result<Parsed, MessageError> {
        self.scratch.clear();
        self.scratch.extend_from_slice(msg);
        let v = simd_json::to_borrowed_value_with_buffers(&mut self.scratch, &mut self.buffers)
            .map_err(|e| MessageError::Json(e.to_string()))?;
        map_value(&self.mapping, &v)
    }
}

/// Maps a parsed message (public so benches and tests can map a value they built).
pub fn map_value(m: &Mapping, v: &Value<'_>) -> Result<Parsed, MessageError> {
    if !v.is_object() {
        return Ok(Parsed::Ignored { kind: None });
    }
    match v.get(m.type_field.as_str()).and_then(|t| t.as_str()) {
        Some(t) if t == m.type_value => {}
        other => {
            return Ok(Parsed::Ignored {
                kind: other.map(str::to_owned),
            });
        }
    }
    let field = |name: &str| {
        v.get(name).ok_or_else(|| MessageError::Missing {
            field: name.to_owned(),
        })
    };
    let symbol = field(&m.symbol_field)?
        .as_str()
        .ok_or_else(|| MessageError::field(&m.symbol_field, "expected a string"))?;
    let symbol = match m.symbol_case {
        SymbolCase::Upper => symbol.to_ascii_uppercase(),
        SymbolCase::Keep => symbol.to_owned(),
    };
    let tick = RawTick {
        symbol,
        price: number(m, &m.price_field, field(&m.price_field)?)?,
        size: number(m, &m.size_field, field(&m.size_field)?)?,
        side: side(m, field(&m.side_field)?)?,
        exchange_ts: time(m, field(&m.time_field)?)?,
    };
    crate::ingest::validate(&tick)?;
    Ok(Parsed::Trade(tick))
}

fn number(m: &Mapping, name: &str, v: &Value<'_>) -> Result<f64, MessageError> {
    let from_str = |s: &str| {
        s.parse::<f64>()
            .map_err(|_| MessageError::field(name, format!("not a number: {s:?}")))
    };
    match (m.numbers, v.as_str()) {
        (Numbers::String | Numbers::Any, Some(s)) => from_str(s),
        (Numbers::String, None) => Err(MessageError::field(name, "expected a number as a string")),
        (Numbers::Number | Numbers::Any, None) => v
            .cast_f64()
            .ok_or_else(|| MessageError::field(name, "expected a number")),
        (Numbers::Number, Some(_)) => Err(MessageError::field(name, "expected a JSON number")),
    }
}

fn side(m: &Mapping, v: &Value<'_>) -> Result<Side, MessageError> {
    let name = m.side_field.as_str();
    let named = || {
        v.as_str()
            .and_then(Side::parse_lenient)
            .ok_or_else(|| MessageError::field(name, "expected buy or sell"))
    };
    Ok(match m.side_rule {
        SideRule::Taker => named()?,
        SideRule::Maker => match named()? {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        },
        SideRule::BuyerIsMaker => match v.as_bool() {
            Some(true) => Side::Sell,
            Some(false) => Side::Buy,
            None => return Err(MessageError::field(name, "expected a boolean")),
        },
    })
}

fn time(m: &Mapping, v: &Value<'_>) -> Result<i64, MessageError> {
    let name = m.time_field.as_str();
    let bad = |e: &dyn std::fmt::Display| MessageError::field(name, e);
    let integer = || -> Result<i64, MessageError> {
        let n = match v.as_str() {
            Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<i64>().map_err(|_| bad(&"integer out of range"))?
            }
            Some(_) => return Err(bad(&"expected an integer")),
            None => v.as_i64().ok_or_else(|| bad(&"expected an integer"))?,
        };
        if n <= 0 {
            return Err(bad(&"must be > 0"));
        }
        Ok(n)
    };
    let scaled = |factor: i64| {
        integer()?
            .checked_mul(factor)
            .ok_or_else(|| bad(&"out of range"))
    };
    match m.time_format {
        TimeFormat::Ms => scaled(1_000_000),
        TimeFormat::Us => scaled(1_000),
        TimeFormat::Ns => scaled(1),
        TimeFormat::Rfc3339 => {
            let s = v
                .as_str()
                .ok_or_else(|| bad(&"expected an RFC 3339 string"))?;
            timestamp::parse_rfc3339(s).map_err(|e| bad(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("feeds/fixtures")
            .join(name);
        std::fs::read_to_string(path)
            .expect("fixture exists")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn tick(sym: &str, price: f64, size: f64, side: Side, ts: i64) -> RawTick {
        RawTick::new(sym, price, size, side, ts)
    }

    /// What a fixture maps to: trades, the ignored kinds, and the error count.
    fn check(mapping: &str, fixture_name: &str) -> (Vec<RawTick>, Vec<Option<String>>, usize) {
        let mut p = MessageParser::new(Mapping::load(mapping).expect("mapping loads"));
        let (mut trades, mut ignored, mut errors) = (vec![], vec![], 0);
        for line in fixture(fixture_name) {
            match p.parse(line.as_bytes()) {
                Ok(Parsed::Trade(t)) => trades.push(t),
                Ok(Parsed::Ignored { kind }) => ignored.push(kind),
                Err(_) => errors += 1,
            }
        }
        (trades, ignored, errors)
    }

    #[test]
    fn binance_fixture_maps_exactly() {
        let (trades, ignored, errors) = check("binance", "binance_trades.jsonl");
        let ms = 1_000_000;
        assert_eq!(
            trades,
            vec![
                tick("BNBBTC", 0.001, 100.0, Side::Sell, 123_456_785 * ms),
                tick(
                    "BTCUSDT",
                    97250.01,
                    0.0015,
                    Side::Buy,
                    1_735_689_600_123 * ms
                ),
                tick("BTCUSDT", 97250.5, 0.25, Side::Sell, 1_735_689_600_250 * ms),
                tick("ETHUSDT", 3401.27, 1.2, Side::Buy, 1_735_689_600_301 * ms),
                tick("BTCUSDT", 97249.99, 0.01, Side::Buy, 1_735_689_601_002 * ms),
                tick("ETHUSDT", 3401.3, 0.5, Side::Sell, 1_735_689_601_480 * ms),
            ]
        );
        assert_eq!(
            ignored,
            vec![
                None,
                Some("aggTrade".to_owned()),
                Some("24hrTicker".to_owned())
            ]
        );
        assert_eq!(errors, 3, "malformed JSON, bad price, missing quantity");
    }

    #[test]
    fn coinbase_fixture_maps_exactly() {
        let (trades, ignored, errors) = check("coinbase", "coinbase_matches.jsonl");
        assert_eq!(
            trades,
            vec![
                // "side":"sell" is the maker's side: the taker bought.
                tick(
                    "BTC-USD",
                    400.23,
                    5.23512,
                    Side::Buy,
                    1_415_348_367_028_459_000
                ),
                tick(
                    "BTC-USD",
                    97251.1,
                    0.0042,
                    Side::Sell,
                    1_735_689_600_500_000_000
                ),
                tick(
                    "ETH-USD",
                    3401.05,
                    2.0,
                    Side::Buy,
                    1_735_689_600_750_123_000
                ),
                tick(
                    "BTC-USD",
                    97251.11,
                    0.1,
                    Side::Buy,
                    1_735_689_601_000_000_000
                ),
            ]
        );
        assert_eq!(
            ignored,
            vec![
                Some("subscriptions".to_owned()),
                Some("heartbeat".to_owned()),
                Some("last_match".to_owned()),
            ]
        );
        assert_eq!(errors, 3, "malformed JSON, bad price, bad time");
    }

    fn custom(side_rule: &str, numbers: &str, time_format: &str) -> Mapping {
        let text = format!(
            r#"
type_field = "t"
type_value = "x"
symbol_field = "s"
price_field = "p"
size_field = "q"
side_field = "d"
side_rule = "{side_rule}"
time_field = "ts"
time_format = "{time_format}"
numbers = "{numbers}"
symbol_case = "keep"
subscribe = '{{"sub":{{symbols}}}}'
subscribe_symbol = "{{symbol}}"
"#
        );
        Mapping::from_toml("custom", &text).expect("valid mapping")
    }

    fn one(m: &Mapping, msg: &str) -> Result<Parsed, MessageError> {
        MessageParser::new(m.clone()).parse(msg.as_bytes())
    }

    #[test]
    fn side_rules() {
        let cases = [
            ("taker", r#""buy""#, Ok(Side::Buy)),
            ("taker", r#""sell""#, Ok(Side::Sell)),
            ("maker", r#""buy""#, Ok(Side::Sell)),
            ("maker", r#""sell""#, Ok(Side::Buy)),
            ("buyer_is_maker", "true", Ok(Side::Sell)),
            ("buyer_is_maker", "false", Ok(Side::Buy)),
            ("buyer_is_maker", r#""true""#, Err(())),
            ("taker", r#""hold""#, Err(())),
            ("maker", "1", Err(())),
        ];
        for (rule, value, want) in cases {
            let m = custom(rule, "any", "ms");
            let msg = format!(r#"{{"t":"x","s":"A","p":1,"q":1,"d":{value},"ts":5}}"#);
            let got = match one(&m, &msg) {
                Ok(Parsed::Trade(t)) => Ok(t.side),
                Ok(other) => panic!("{rule} {value}: {other:?}"),
                Err(_) => Err(()),
            };
            assert_eq!(got, want, "{rule} {value}");
        }
    }

    #[test]
    fn numbers_and_times_follow_the_mapping() {
        let ok = |numbers, fmt, p: &str, ts: &str| -> Result<(f64, i64), String> {
            let m = custom("taker", numbers, fmt);
            let msg = format!(r#"{{"t":"x","s":"A","p":{p},"q":"2","d":"buy","ts":{ts}}}"#);
            match one(&m, &msg) {
                Ok(Parsed::Trade(t)) => Ok((t.price, t.exchange_ts)),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(ok("string", "ms", r#""1.5""#, "7"), Ok((1.5, 7_000_000)));
        assert_eq!(ok("any", "us", "2", r#""7""#), Ok((2.0, 7_000)));
        assert_eq!(ok("any", "ns", "2.25", "7"), Ok((2.25, 7)));
        assert_eq!(
            ok("any", "rfc3339", "3", r#""1970-01-01T00:00:01.5Z""#),
            Ok((3.0, 1_500_000_000))
        );
        // "number" mapping refuses the string size "2".
        assert!(ok("number", "ms", "1", "7").unwrap_err().contains("`q`"));
        assert!(ok("string", "ms", "1", "7").unwrap_err().contains("`p`"));
        assert!(
            ok("string", "ms", r#""x1""#, "7")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(ok("any", "ms", "0", "7").unwrap_err().contains("price"));
        assert!(ok("any", "ms", "1", "-7").unwrap_err().contains("`ts`"));
        assert!(
            ok("any", "ms", "1", "9999999999999999")
                .unwrap_err()
                .contains("range")
        );
        assert!(ok("any", "rfc3339", "1", "7").unwrap_err().contains("`ts`"));
        assert!(ok("any", "ms", "1", "1.5").unwrap_err().contains("`ts`"));
    }

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

    #[test]
    fn non_objects_and_other_types_are_ignored() {
        let m = Mapping::load("binance").unwrap();
        for msg in ["[]", "42", r#"{"result":null,"id":1}"#, r#"{"e":7}"#] {
            assert!(matches!(one(&m, msg), Ok(Parsed::Ignored { .. })), "{msg}");
        }
        assert!(matches!(one(&m, "{"), Err(MessageError::Json(_))));
    }
}
