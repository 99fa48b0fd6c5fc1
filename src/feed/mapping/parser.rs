//! Applies a [`Mapping`] to upstream messages.
//!
//! [`MessageParser`] parses each message with simd-json into a borrowed value (on a scratch
//! copy, since simd-json parses in place, with reused buffers so the steady state allocates
//! only the tick's symbol) and maps it to a [`RawTick`], [`Parsed::Ignored`] or a
//! [`MessageError`].

use simd_json::prelude::*;

use super::{Mapping, Numbers, SideRule, SymbolCase, TimeFormat};
use crate::ingest::TickError;
use crate::model::{RawTick, Side};
use crate::timestamp;

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
        side: Some(side(m, field(&m.side_field)?)?),
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
    use std::path::Path;

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
                Ok(Parsed::Trade(t)) => t.side.ok_or(()),
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
    fn non_objects_and_other_types_are_ignored() {
        let m = Mapping::load("binance").unwrap();
        for msg in ["[]", "42", r#"{"result":null,"id":1}"#, r#"{"e":7}"#] {
            assert!(matches!(one(&m, msg), Ok(Parsed::Ignored { .. })), "{msg}");
        }
        assert!(matches!(one(&m, "{"), Err(MessageError::Json(_))));
    }
}
