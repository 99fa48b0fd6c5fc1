//! Applies a [`Mapping`] to upstream messages.
//!
//! [`MessageParser`] parses each message with simd-json into a borrowed value (on a scratch
//! copy, since simd-json parses in place, with reused buffers so the steady state allocates
//! only each tick's symbol) and classifies it, in this order: the heartbeat text, a refused
//! subscription, a heartbeat, an `ignore` rule, trades (one, or a batch under `trades_field`), anything else
//! ignored. Trades are appended to the caller's batch.

use simd_json::prelude::*;

use super::{Expected, Mapping, Numbers, Rule, SideRule, TimeFormat};
use crate::ingest::TickError;
use crate::model::{RawTick, Side};
use crate::timestamp;

/// What one message was.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// `count` trades were appended to the batch; `rejected` are the unusable elements of a
    /// batch message (the usable ones are kept).
    Trades {
        count: usize,
        rejected: Vec<MessageError>,
    },
    /// The venue's own heartbeat: a sign of life.
    Heartbeat,
    /// The venue refused a subscription; `message` is its reason.
    SubscribeError { message: String },
    /// Not a trade (an ack, another channel); `kind` is its type field, if any.
    Ignored { kind: Option<String> },
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
    /// A trade for a symbol the feed did not subscribe to (dropped, not an error of the venue).
    #[error("symbol {symbol:?} is not one of this feed's symbols")]
    NotSubscribed { symbol: String },
}

impl MessageError {
    /// A well-formed trade for a symbol nobody asked for.
    pub fn is_not_subscribed(&self) -> bool {
        matches!(self, MessageError::NotSubscribed { .. })
    }
}

impl MessageError {
    fn field(field: &str, message: impl ToString) -> Self {
        MessageError::Field {
            field: field.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Which venue symbols a feed accepts, and the name each is published under.
#[derive(Debug, Clone, Default)]
pub struct SymbolMap {
    /// Venue symbol (after `symbol_case`) → published symbol; `None` accepts every symbol as is.
    accepted: Option<std::collections::HashMap<String, String>>,
}

impl SymbolMap {
    /// Every symbol, published as the venue spells it (tests, benches, recorded files).
    pub fn any() -> Self {
        Self { accepted: None }
    }

    /// Only `symbols` (the venue's spelling, normalised by the mapping's `symbol_case`), each
    /// published as `aliases[symbol]` when there is one.
    pub fn only(
        mapping: &Mapping,
        symbols: &[String],
        aliases: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        let accepted = symbols
            .iter()
            .map(|s| {
                let venue = mapping.normalise(s);
                let published = aliases.get(s).cloned().unwrap_or_else(|| venue.clone());
                (venue, published)
            })
            .collect();
        Self {
            accepted: Some(accepted),
        }
    }

    /// The published name of a venue symbol (already normalised by the mapping), or `None`
    /// when the feed is not configured for it.
    pub fn published(&self, venue: &str) -> Option<String> {
        match &self.accepted {
            None => Some(venue.to_owned()),
            Some(map) => map.get(venue).cloned(),
        }
    }

    fn resolve(&self, venue: String) -> Result<String, MessageError> {
        match &self.accepted {
            None => Ok(venue),
            Some(map) => map
                .get(&venue)
                .cloned()
                .ok_or(MessageError::NotSubscribed { symbol: venue }),
        }
    }
}

/// Parses upstream messages by a [`Mapping`], reusing its buffers between messages.
pub struct MessageParser {
    mapping: Mapping,
    symbols: SymbolMap,
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
    /// A parser that accepts every symbol (see [`MessageParser::with_symbols`]).
    pub fn new(mapping: Mapping) -> Self {
        Self::with_symbols(mapping, SymbolMap::any())
    }

    pub fn with_symbols(mapping: Mapping, symbols: SymbolMap) -> Self {
        Self {
            mapping,
            symbols,
            scratch: Vec::with_capacity(1024),
            buffers: simd_json::Buffers::default(),
        }
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Parses one message (the bytes of a text frame), appending its trades to `out`.
    pub fn parse(&mut self, msg: &[u8], out: &mut Vec<RawTick>) -> Result<Parsed, MessageError> {
        let text = &self.mapping.heartbeat_text;
        if !text.is_empty() && msg.trim_ascii() == text.as_bytes() {
            return Ok(Parsed::Heartbeat);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(msg);
        let v = simd_json::to_borrowed_value_with_buffers(&mut self.scratch, &mut self.buffers)
            .map_err(|e| MessageError::Json(e.to_string()))?;
        map_value(&self.mapping, &self.symbols, &v, out)
    }
}

/// The value at a dotted path (`arg.channel`).
fn at<'a, 'v>(v: &'a Value<'v>, path: &str) -> Option<&'a Value<'v>> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// Whether `v` matches `rule`: the field is there (not null), and equal when `equals` is set.
fn matches(v: &Value<'_>, rule: &Rule) -> bool {
    match (at(v, &rule.field), &rule.equals) {
        (None, _) => false,
        (Some(f), None) => !f.is_null(),
        (Some(f), Some(Expected::Bool(b))) => f.as_bool() == Some(*b),
        (Some(f), Some(Expected::Text(t))) => f.as_str() == Some(t.as_str()),
    }
}

/// Whether the message's type field names trades (`*` at the end: a prefix).
fn is_trade_type(m: &Mapping, kind: &str) -> bool {
    match m.type_value.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => kind == m.type_value,
    }
}

/// Maps a parsed message, appending its trades to `out` (public so benches and tests can map a
/// value they built).
pub fn map_value(
    m: &Mapping,
    symbols: &SymbolMap,
    v: &Value<'_>,
    out: &mut Vec<RawTick>,
) -> Result<Parsed, MessageError> {
    if !v.is_object() {
        return Ok(Parsed::Ignored { kind: None });
    }
    if let Some(rule) = m.subscribe_errors.iter().find(|r| matches(v, r)) {
        let reason = if rule.message.is_empty() {
            None
        } else {
            at(v, &rule.message)
        };
        let message = match reason {
            Some(r) => r.as_str().map_or_else(|| r.encode(), str::to_owned),
            None => v.encode(),
        };
        return Ok(Parsed::SubscribeError { message });
    }
    if m.heartbeats.iter().any(|r| matches(v, r)) {
        return Ok(Parsed::Heartbeat);
    }
    if let Some(rule) = m.ignore.iter().find(|r| matches(v, r)) {
        let kind = at(v, &rule.field)
            .and_then(|k| k.as_str())
            .map(str::to_owned);
        return Ok(Parsed::Ignored { kind });
    }
    match at(v, &m.type_field).and_then(|t| t.as_str()) {
        Some(t) if is_trade_type(m, t) => {}
        other => {
            return Ok(Parsed::Ignored {
                kind: other.map(str::to_owned),
            });
        }
    }
    if m.trades_field.is_empty() {
        out.push(trade(m, symbols, v)?);
        return Ok(Parsed::Trades {
            count: 1,
            rejected: Vec::new(),
        });
    }
    let batch = at(v, &m.trades_field).ok_or_else(|| MessageError::Missing {
        field: m.trades_field.clone(),
    })?;
    let (mut count, mut rejected) = (0, Vec::new());
    let mut one = |e: &Value<'_>| match trade(m, symbols, e) {
        Ok(t) => {
            out.push(t);
            count += 1;
        }
        Err(err) => rejected.push(err),
    };
    match batch.as_array() {
        Some(items) => items.iter().for_each(&mut one),
        None if batch.is_object() => one(batch),
        None => {
            return Err(MessageError::field(
                &m.trades_field,
                "expected an array of trades",
            ));
        }
    }
    Ok(Parsed::Trades { count, rejected })
}

/// One trade object.
fn trade(m: &Mapping, symbols: &SymbolMap, v: &Value<'_>) -> Result<RawTick, MessageError> {
    if !v.is_object() {
        return Err(MessageError::field(
            &m.trades_field,
            "a trade must be an object",
        ));
    }
    let field = |name: &str| {
        at(v, name).ok_or_else(|| MessageError::Missing {
            field: name.to_owned(),
        })
    };
    let symbol = field(&m.symbol_field)?
        .as_str()
        .ok_or_else(|| MessageError::field(&m.symbol_field, "expected a string"))?;
    let tick = RawTick {
        symbol: symbols.resolve(m.normalise(symbol))?,
        price: number(m, &m.price_field, field(&m.price_field)?)?,
        size: number(m, &m.size_field, field(&m.size_field)?)?,
        side: Some(side(m, field(&m.side_field)?)?),
        exchange_ts: time(m, field(&m.time_field)?)?,
    };
    crate::ingest::validate(&tick)?;
    Ok(tick)
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
mod tests;
