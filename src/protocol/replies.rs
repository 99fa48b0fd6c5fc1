//! Replies to one connection's ops (`ack`, `error`, `pong`, `list`) and the `snapshot` that
//! follows an `ack`; encoded per connection, unlike events.

use bytes::Bytes;
use serde::Serialize;

use super::{ErrorCode, msgpack, to_bytes};
use crate::model::{BarIntervals, Encoding, Kind, Wire};

/// A reply in the connection's encoding: the JSON object, or a map with its keys.
fn encode<T: Serialize>(encoding: Encoding, value: &T) -> Bytes {
    match encoding {
        Encoding::Json => to_bytes(value),
        Encoding::Msgpack => msgpack::reply(value),
    }
}

/// `{"type":"snapshot","ch":..,"seq":..,"data":[..]}`, with `"reset":true` when a resume could
/// not be served.
pub fn encode_snapshot(
    encoding: Encoding,
    ch: &str,
    seq: u64,
    events: &[Wire],
    reset: bool,
) -> Bytes {
    if encoding == Encoding::Msgpack {
        return msgpack::snapshot(ch, seq, events, reset);
    }
    let data_len: usize = events.iter().map(|e| e.json().len() + 1).sum();
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
        out.extend_from_slice(e.json());
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

#[derive(Serialize)]
struct ReplayDoneWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ch: &'a str,
    seq: u64,
    more: bool,
}

/// `{"type":"replay_done","ch":..,"seq":..,"more":..}`: the end of a `from_ts` replay of one
/// channel; `seq` is the last event replayed (or the channel's latest when none was), and
/// `more` says the snapshot budget stopped the replay there (the channel is then not
/// subscribed: continue with `from`).
pub fn encode_replay_done(encoding: Encoding, ch: &str, seq: u64, more: bool) -> Bytes {
    encode(
        encoding,
        &ReplayDoneWire {
            kind: "replay_done",
            ch,
            seq,
            more,
        },
    )
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
    /// Extension: the op's fields this server does not know (a typo such as `throttle`), left
    /// out when there are none.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ignored: &'a [String],
}

pub fn encode_ack(
    encoding: Encoding,
    id: Option<i64>,
    op: &str,
    channels: &[String],
    epoch: i64,
) -> Bytes {
    encode_ack_ignoring(encoding, id, op, channels, epoch, &[])
}

/// [`encode_ack`] naming the fields of the op that were ignored (`"ignored":["throttle"]`).
pub fn encode_ack_ignoring(
    encoding: Encoding,
    id: Option<i64>,
    op: &str,
    channels: &[String],
    epoch: i64,
    ignored: &[String],
) -> Bytes {
    encode(
        encoding,
        &AckWire {
            kind: "ack",
            id,
            op,
            channels,
            epoch,
            ignored,
        },
    )
}

#[derive(Serialize)]
struct AuthAckWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    op: &'static str,
    channels: [&'static str; 0],
    epoch: i64,
    /// The token's `sub` and `exp` (seconds since the epoch).
    user: &'a str,
    exp: u64,
}

/// The `ack` of an `auth` op: who the connection now is, and until when.
pub fn encode_auth_ack(
    encoding: Encoding,
    id: Option<i64>,
    epoch: i64,
    user: &str,
    exp: u64,
) -> Bytes {
    encode(
        encoding,
        &AuthAckWire {
            kind: "ack",
            id,
            op: "auth",
            channels: [],
            epoch,
            user,
            exp,
        },
    )
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

pub fn encode_error(encoding: Encoding, id: Option<i64>, code: ErrorCode, message: &str) -> Bytes {
    encode(
        encoding,
        &ErrorWire {
            kind: "error",
            id,
            code,
            message,
        },
    )
}

#[derive(Serialize)]
struct PongWire {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    ts: i64,
}

pub fn encode_pong(encoding: Encoding, id: Option<i64>, ts: i64) -> Bytes {
    encode(
        encoding,
        &PongWire {
            kind: "pong",
            id,
            ts,
        },
    )
}

#[derive(Serialize)]
struct NoticeWire {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    reconnect_after_ms: u64,
}

/// **Extension**: `{"type":"notice","code":"draining","reconnect_after_ms":N}`, sent unasked
/// when the node starts to drain (docs/PROTOCOL.md "Draining").
pub fn encode_draining_notice(encoding: Encoding, reconnect_after_ms: u64) -> Bytes {
    encode(
        encoding,
        &NoticeWire {
            kind: "notice",
            code: "draining",
            reconnect_after_ms,
        },
    )
}

#[derive(Serialize)]
struct ListWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    symbols: &'a [&'a str],
    /// The `kind:SYMBOL` kinds (`portfolio` is a channel of its own).
    kinds: Vec<&'static str>,
}

/// The `list` reply: the symbols, and the market kinds this server streams (bar kinds of the
/// configured intervals only).
pub fn encode_list(
    encoding: Encoding,
    id: Option<i64>,
    symbols: &[&str],
    intervals: BarIntervals,
) -> Bytes {
    let kinds = Kind::MARKET
        .into_iter()
        .filter(|k| match k {
            Kind::Bars(iv) => intervals.contains(*iv),
            _ => true,
        })
        .map(Kind::as_str)
        .collect();
    encode(
        encoding,
        &ListWire {
            kind: "list",
            id,
            symbols,
            kinds,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Side, SymbolId, Tick};
    use crate::protocol::encode_tick;
    use serde_json::{Value, json};

    fn parse(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn draining_notice_in_both_encodings() {
        let want = json!({"type":"notice","code":"draining","reconnect_after_ms":1234});
        assert_eq!(parse(&encode_draining_notice(Encoding::Json, 1234)), want);
        let mp = encode_draining_notice(Encoding::Msgpack, 1234);
        let back: Value = rmp_serde::from_slice(&mp).unwrap();
        assert_eq!(back, want);
    }

    #[test]
    fn snapshot_wraps_stored_events() {
        let t = Tick {
            symbol: SymbolId(0),
            price: 1.5,
            size: 2.5,
            side: Some(Side::Sell),
            exchange_ts: 1,
            ts: 2,
        };
        let e = encode_tick("ticks:A", 4, &t);
        let v = parse(&encode_snapshot(Encoding::Json, "ticks:A", 4, &[e], false));
        assert_eq!(v["type"], "snapshot");
        assert_eq!(v["seq"], 4);
        assert_eq!(v.get("reset"), None);
        assert_eq!(v["data"][0]["size"], 2.5);
        let v = parse(&encode_snapshot(Encoding::Json, "ticks:A", 0, &[], true));
        assert_eq!(
            v,
            json!({"type":"snapshot","ch":"ticks:A","seq":0,"reset":true,"data":[]})
        );
    }

    #[test]
    fn replies_match_the_contract() {
        let ch = vec!["ticks:AAPL".to_string()];
        assert_eq!(
            parse(&encode_ack(Encoding::Json, Some(1), "subscribe", &ch, 7)),
            json!({"type":"ack","id":1,"op":"subscribe","channels":["ticks:AAPL"],"epoch":7})
        );
        assert_eq!(
            parse(&encode_error(
                Encoding::Json,
                Some(1),
                ErrorCode::UnknownChannel,
                "no such symbol: X"
            )),
            json!({"type":"error","id":1,"code":"unknown_channel","message":"no such symbol: X"})
        );
        assert_eq!(
            parse(&encode_pong(Encoding::Json, None, 5)),
            json!({"type":"pong","ts":5})
        );
        assert_eq!(
            parse(&encode_replay_done(Encoding::Json, "ticks:A", 9, false)),
            json!({"type":"replay_done","ch":"ticks:A","seq":9,"more":false})
        );
        assert_eq!(
            parse(&encode_list(
                Encoding::Json,
                Some(4),
                &["A"],
                BarIntervals::V1
            )),
            json!({"type":"list","id":4,"symbols":["A"],
                "kinds":["ticks","bars.1s","bars.1m","indicators","book","ticker","bbo","predictions"]})
        );
    }
}
