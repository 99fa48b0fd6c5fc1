//! The WebSocket wire format of `shared/PROTOCOL.md`: inbound ops and outbound events.
//!
//! Events are encoded here once, at ingest, into `Bytes` that every subscriber shares. Replies
//! (`ack`, `error`, `pong`, `list`, `snapshot`) are encoded per connection.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{BarEvent, Event, IndicatorValues, Kind, Tick};

/// Indicator periods, which name the wire fields (`sma_20`, `rsi_14`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndicatorPeriods {
    pub sma: usize,
    pub ema: usize,
    pub rsi: usize,
}

impl Default for IndicatorPeriods {
    fn default() -> Self {
        Self {
            sma: 20,
            ema: 20,
            rsi: 14,
        }
    }
}

/// Stable error codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownChannel,
    RateLimited,
    TooManySubscriptions,
    Unauthorized,
    NotSubscribed,
}

/// A client op, after JSON parsing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ClientOp {
    Subscribe {
        #[serde(default)]
        id: Option<i64>,
        channels: Vec<String>,
        #[serde(default)]
        from: Option<HashMap<String, u64>>,
        #[serde(default)]
        throttle_ms: Option<u64>,
        /// Extension: snapshot depth for this subscription.
        #[serde(default)]
        snapshot: Option<usize>,
        /// Extension: the server `epoch` (from an earlier `ack`) that the `from` seqs belong to.
        /// When it is not this server run's, no resume point is trusted (`reset: true`).
        #[serde(default)]
        epoch: Option<i64>,
    },
    Unsubscribe {
        #[serde(default)]
        id: Option<i64>,
        channels: Vec<String>,
    },
    Ping {
        #[serde(default)]
        id: Option<i64>,
    },
    List {
        #[serde(default)]
        id: Option<i64>,
    },
}

/// An inbound frame that is not a valid op; `id` is echoed when it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BadOp {
    pub id: Option<i64>,
    pub message: String,
}

/// Parses one inbound text frame.
pub fn parse_op(text: &str) -> Result<ClientOp, BadOp> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| BadOp {
        id: None,
        message: format!("malformed JSON: {e}"),
    })?;
    let id = value.get("id").and_then(serde_json::Value::as_i64);
    if !value.is_object() {
        return Err(BadOp {
            id,
            message: "an op must be a JSON object".into(),
        });
    }
    if let Some(raw) = value.get("id")
        && !raw.is_i64()
        && !raw.is_null()
    {
        return Err(BadOp {
            id: None,
            message: "`id` must be an integer".into(),
        });
    }
    ClientOp::deserialize(value).map_err(|e| BadOp {
        id,
        message: format!("invalid op: {e}"),
    })
}

/// A channel name as a client wrote it, checked for syntax only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelName<'a> {
    Concrete(Kind, &'a str),
    Wildcard(Kind),
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError {
    pub code: ErrorCode,
    pub message: String,
}

/// Parses `kind:SYMBOL` or `kind:*`.
pub fn parse_channel(name: &str) -> Result<ChannelName<'_>, ChannelError> {
    let Some((kind, symbol)) = name.split_once(':') else {
        return Err(ChannelError {
            code: ErrorCode::BadRequest,
            message: format!("channel {name:?} is not of the form kind:SYMBOL"),
        });
    };
    let Some(kind) = Kind::parse(kind) else {
        return Err(ChannelError {
            code: ErrorCode::UnknownChannel,
            message: format!("no such channel kind: {kind}"),
        });
    };
    if symbol == "*" {
        return Ok(ChannelName::Wildcard(kind));
    }
    if !crate::model::is_valid_symbol(symbol) {
        return Err(ChannelError {
            code: ErrorCode::BadRequest,
            message: format!("invalid symbol {symbol:?}: must match [A-Z0-9._-]{{1,32}}"),
        });
    }
    Ok(ChannelName::Concrete(kind, symbol))
}

// --- outbound -----------------------------------------------------------------------------

/// A number that prints as an integer when it is one (`"size":100`, not `100.0`).
struct Num(f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    // Serializing these plain structs into a Vec cannot fail (no maps with non-string keys, no
    // I/O); an empty object is a safe fallback if it ever did.
    Bytes::from(serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()))
}

#[derive(Serialize)]
struct TickWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ch: &'a str,
    seq: u64,
    ts: i64,
    price: f64,
    size: Num,
    side: &'static str,
    /// Extension: exchange time, ns since the epoch.
    xts: i64,
}

pub fn encode_tick(ch: &str, seq: u64, tick: &Tick) -> Bytes {
    to_bytes(&TickWire {
        kind: "tick",
        ch,
        seq,
        ts: tick.ts,
        price: tick.price,
        size: Num(tick.size),
        side: tick.side.as_str(),
        xts: tick.exchange_ts,
    })
}

#[derive(Serialize)]
struct BarWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ch: &'a str,
    seq: u64,
    ts: i64,
    start: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: Num,
    trades: u64,
    #[serde(rename = "final")]
    is_final: bool,
}

pub fn encode_bar(ch: &str, seq: u64, ts: i64, bar: &BarEvent) -> Bytes {
    to_bytes(&BarWire {
        kind: "bar",
        ch,
        seq,
        ts,
        start: bar.start_ms,
        open: bar.open,
        high: bar.high,
        low: bar.low,
        close: bar.close,
        volume: Num(bar.volume),
        trades: bar.trades,
        is_final: bar.is_final,
    })
}

pub fn encode_indicators(
    ch: &str,
    seq: u64,
    ts: i64,
    v: &IndicatorValues,
    periods: IndicatorPeriods,
) -> Bytes {
    let mut m = serde_json::Map::with_capacity(10);
    m.insert("type".into(), "indicators".into());
    m.insert("ch".into(), ch.into());
    m.insert("seq".into(), seq.into());
    m.insert("ts".into(), ts.into());
    let num = |x: Option<f64>| {
        x.and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)
    };
    m.insert(format!("sma_{}", periods.sma), num(v.sma));
    m.insert(format!("ema_{}", periods.ema), num(v.ema));
    m.insert(format!("rsi_{}", periods.rsi), num(v.rsi));
    m.insert("volatility".into(), num(v.volatility));
    m.insert("vwap".into(), num(v.vwap));
    to_bytes(&m)
}

/// `{"type":"snapshot","ch":..,"seq":..,"data":[..]}`, with `"reset":true` when a resume could
/// not be served.
pub fn encode_snapshot(ch: &str, seq: u64, events: &[&Event], reset: bool) -> Bytes {
    let data_len: usize = events.iter().map(|e| e.bytes.len() + 1).sum();
    let mut out = Vec::with_capacity(64 + ch.len() + data_len);
    out.extend_from_slice(b"{\"type\":\"snapshot\",\"ch\":");
    // Channel names are validated ASCII; serde_json still escapes for safety.
    let _ = serde_json::to_writer(&mut out, ch);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    if reset {
        out.extend_from_slice(b",\"reset\":true");
    }
    out.extend_from_slice(b",\"data\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.bytes);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

#[derive(Serialize)]
struct AckWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    op: &'a str,
    channels: &'a [String],
    /// Extension: identifies this server run; `seq`s of one epoch mean nothing in another.
    epoch: i64,
}

pub fn encode_ack(id: Option<i64>, op: &str, channels: &[String], epoch: i64) -> Bytes {
    to_bytes(&AckWire {
        kind: "ack",
        id,
        op,
        channels,
        epoch,
    })
}

#[derive(Serialize)]
struct ErrorWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    code: ErrorCode,
    message: &'a str,
}

pub fn encode_error(id: Option<i64>, code: ErrorCode, message: &str) -> Bytes {
    to_bytes(&ErrorWire {
        kind: "error",
        id,
        code,
        message,
    })
}

#[derive(Serialize)]
struct PongWire {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    ts: i64,
}

pub fn encode_pong(id: Option<i64>, ts: i64) -> Bytes {
    to_bytes(&PongWire {
        kind: "pong",
        id,
        ts,
    })
}

#[derive(Serialize)]
struct ListWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    symbols: &'a [&'a str],
    kinds: [&'static str; Kind::COUNT],
}

pub fn encode_list(id: Option<i64>, symbols: &[&str]) -> Bytes {
    to_bytes(&ListWire {
        kind: "list",
        id,
        symbols,
        kinds: Kind::ALL.map(Kind::as_str),
    })
}

/// Joins encoded objects into one frame: the object itself, or a JSON array of them.
pub fn join_frame<'a>(parts: impl ExactSizeIterator<Item = &'a Bytes>, total_len: usize) -> Bytes {
    let n = parts.len();
    if n == 1 {
        let mut parts = parts;
        return parts.next().cloned().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(total_len + n + 1);
    out.push(b'[');
    for (i, p) in parts.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    out.push(b']');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChannelId, Payload, Side, SymbolId};
    use serde_json::{Value, json};

    fn parse(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn tick_matches_the_contract() {
        let t = Tick {
            symbol: SymbolId(0),
            price: 189.23,
            size: 100.0,
            side: Side::Buy,
            exchange_ts: 5,
            ts: 1764070000123456789,
        };
        let v = parse(&encode_tick("ticks:AAPL", 102, &t));
        assert_eq!(
            v,
            json!({"type":"tick","ch":"ticks:AAPL","seq":102,"ts":1764070000123456789i64,
                   "price":189.23,"size":100,"side":"buy","xts":5})
        );
    }

    #[test]
    fn bar_and_indicators_match_the_contract() {
        let b = BarEvent {
            start_ms: 1764070000000,
            open: 1.0,
            high: 1.2,
            low: 0.9,
            close: 1.1,
            volume: 300.0,
            trades: 3,
            is_final: true,
        };
        let v = parse(&encode_bar("bars.1s:AAPL", 7, 1764070001000000000, &b));
        assert_eq!(
            v,
            json!({"type":"bar","ch":"bars.1s:AAPL","seq":7,"ts":1764070001000000000i64,
                "start":1764070000000i64,"open":1.0,"high":1.2,"low":0.9,"close":1.1,
                "volume":300,"trades":3,"final":true})
        );
        let iv = IndicatorValues {
            sma: Some(1.0),
            ema: None,
            rsi: Some(55.2),
            volatility: Some(0.012),
            vwap: Some(1.05),
        };
        let v = parse(&encode_indicators(
            "indicators:AAPL",
            7,
            9,
            &iv,
            IndicatorPeriods::default(),
        ));
        assert_eq!(
            v,
            json!({"type":"indicators","ch":"indicators:AAPL","seq":7,"ts":9,"sma_20":1.0,
                "ema_20":null,"rsi_14":55.2,"volatility":0.012,"vwap":1.05})
        );
    }

    #[test]
    fn snapshot_wraps_stored_events() {
        let t = Tick {
            symbol: SymbolId(0),
            price: 1.5,
            size: 2.5,
            side: Side::Sell,
            exchange_ts: 1,
            ts: 2,
        };
        let e = Event {
            channel: ChannelId {
                kind: Kind::Ticks,
                symbol: SymbolId(0),
            },
            seq: 4,
            ts: 2,
            payload: Payload::Tick(t),
            bytes: encode_tick("ticks:A", 4, &t),
        };
        let v = parse(&encode_snapshot("ticks:A", 4, &[&e], false));
        assert_eq!(v["type"], "snapshot");
        assert_eq!(v["seq"], 4);
        assert_eq!(v.get("reset"), None);
        assert_eq!(v["data"][0]["size"], 2.5);
        let v = parse(&encode_snapshot("ticks:A", 0, &[], true));
        assert_eq!(
            v,
            json!({"type":"snapshot","ch":"ticks:A","seq":0,"reset":true,"data":[]})
        );
    }

    #[test]
    fn replies_match_the_contract() {
        let ch = vec!["ticks:AAPL".to_string()];
        assert_eq!(
            parse(&encode_ack(Some(1), "subscribe", &ch, 7)),
            json!({"type":"ack","id":1,"op":"subscribe","channels":["ticks:AAPL"],"epoch":7})
        );
        assert_eq!(
            parse(&encode_error(
                Some(1),
                ErrorCode::UnknownChannel,
                "no such symbol: X"
            )),
            json!({"type":"error","id":1,"code":"unknown_channel","message":"no such symbol: X"})
        );
        assert_eq!(parse(&encode_pong(None, 5)), json!({"type":"pong","ts":5}));
        assert_eq!(
            parse(&encode_list(Some(4), &["A"])),
            json!({"type":"list","id":4,"symbols":["A"],"kinds":["ticks","bars.1s","bars.1m","indicators"]})
        );
    }

    #[test]
    fn frames_join_as_object_or_array() {
        let a = Bytes::from_static(b"{\"a\":1}");
        let b = Bytes::from_static(b"{\"b\":2}");
        assert_eq!(join_frame([&a].into_iter(), 7), a);
        assert_eq!(
            parse(&join_frame([&a, &b].into_iter(), 14)),
            json!([{"a":1},{"b":2}])
        );
    }

    #[test]
    fn ops_parse_or_explain() {
        let ok = parse_op(
            r#"{"op":"subscribe","id":1,"channels":["ticks:AAPL"],"from":{"ticks:AAPL":95},"throttle_ms":250}"#,
        );
        assert!(matches!(
            ok,
            Ok(ClientOp::Subscribe {
                id: Some(1),
                throttle_ms: Some(250),
                ..
            })
        ));
        assert_eq!(
            parse_op(r#"{"op":"ping"}"#),
            Ok(ClientOp::Ping { id: None })
        );
        let cases = [
            ("{nope", None, "malformed JSON"),
            ("[1,2]", None, "JSON object"),
            (r#"{"op":"dance","id":3}"#, Some(3), "invalid op"),
            (r#"{"op":"subscribe","id":4}"#, Some(4), "channels"),
            (r#"{"op":"ping","id":"x"}"#, None, "integer"),
            (
                r#"{"op":"subscribe","id":5,"channels":["a"],"throttle_ms":-1}"#,
                Some(5),
                "invalid op",
            ),
        ];
        for (text, id, needle) in cases {
            let err = parse_op(text).expect_err(text);
            assert_eq!(err.id, id, "{text}");
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        }
    }

    #[test]
    fn channel_names_parse_or_explain() {
        assert_eq!(
            parse_channel("ticks:AAPL"),
            Ok(ChannelName::Concrete(Kind::Ticks, "AAPL"))
        );
        assert_eq!(
            parse_channel("bars.1m:*"),
            Ok(ChannelName::Wildcard(Kind::Bars1m))
        );
        let cases = [
            ("ticks", ErrorCode::BadRequest),
            ("trades:AAPL", ErrorCode::UnknownChannel),
            ("ticks:aapl", ErrorCode::BadRequest),
            ("ticks:", ErrorCode::BadRequest),
        ];
        for (name, code) in cases {
            assert_eq!(parse_channel(name).map_err(|e| e.code), Err(code), "{name}");
        }
    }
}
