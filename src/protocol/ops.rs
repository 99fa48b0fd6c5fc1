//! Inbound: the ops a client sends, and the syntax of channel names.

use std::collections::HashMap;

use serde::Deserialize;

use super::ErrorCode;
use crate::model::Kind;

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
        /// Extension: levels per side of the `book:` channels of this subscribe (at most
        /// `book.depth`, the default).
        #[serde(default)]
        depth: Option<usize>,
        /// Extension: replay from a time (an integer by the magnitude rule, or RFC 3339): the
        /// events from then are replayed, then `replay_done`, then live ones.
        #[serde(default)]
        from_ts: Option<serde_json::Value>,
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
    /// Extension: authenticate (or refresh the token of) this connection.
    Auth {
        #[serde(default)]
        id: Option<i64>,
        token: String,
    },
}

/// An inbound frame that is not a valid op; `id` is echoed when it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BadOp {
    pub id: Option<i64>,
    pub message: String,
}

impl ClientOp {
    /// The client's `id`, echoed in the reply.
    pub(crate) fn id(&self) -> Option<i64> {
        match self {
            ClientOp::Subscribe { id, .. }
            | ClientOp::Unsubscribe { id, .. }
            | ClientOp::Ping { id }
            | ClientOp::List { id }
            | ClientOp::Auth { id, .. } => *id,
        }
    }
}

/// Parses one inbound text frame.
pub fn parse_op(text: &str) -> Result<ClientOp, BadOp> {
    parse_op_ignoring(text).map(|(op, _)| op)
}

/// The fields each op reads; any other is ignored (and named in the op's `ack`).
fn known_fields(op: &ClientOp) -> &'static [&'static str] {
    match op {
        ClientOp::Subscribe { .. } => &[
            "op",
            "id",
            "channels",
            "from",
            "throttle_ms",
            "snapshot",
            "epoch",
            "depth",
        ],
        ClientOp::Unsubscribe { .. } => &["op", "id", "channels"],
        ClientOp::Ping { .. } | ClientOp::List { .. } => &["op", "id"],
        ClientOp::Auth { .. } => &["op", "id", "token"],
    }
}

/// Parses one inbound text frame, and names the fields it has that the op does not read, by
/// name (v1 ignores unknown fields; the `ack` says which it ignored).
pub fn parse_op_ignoring(text: &str) -> Result<(ClientOp, Vec<String>), BadOp> {
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
    let fields: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let op = ClientOp::deserialize(value).map_err(|e| BadOp {
        id,
        message: format!("invalid op: {e}"),
    })?;
    let known = known_fields(&op);
    let ignored = fields
        .into_iter()
        .filter(|f| !known.contains(&f.as_str()))
        .collect();
    Ok((op, ignored))
}

/// A channel name as a client wrote it, checked for syntax only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelName<'a> {
    Concrete(Kind, &'a str),
    Wildcard(Kind),
    /// `portfolio`: the connection's own user's portfolio.
    Portfolio,
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError {
    pub code: ErrorCode,
    pub message: String,
}

/// Parses `kind:SYMBOL`, `kind:*` or `portfolio`.
pub fn parse_channel(name: &str) -> Result<ChannelName<'_>, ChannelError> {
    let portfolio = Kind::Portfolio.as_str();
    if name == portfolio {
        return Ok(ChannelName::Portfolio);
    }
    let Some((kind, symbol)) = name.split_once(':') else {
        return Err(ChannelError {
            code: ErrorCode::BadRequest,
            message: format!("channel {name:?} is not of the form kind:SYMBOL"),
        });
    };
    if kind == portfolio {
        return Err(ChannelError {
            code: ErrorCode::BadRequest,
            message: format!("{portfolio} takes no symbol: subscribe to \"{portfolio}\""),
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BarInterval;

    #[test]
    fn the_fields_an_op_does_not_read_are_named() {
        let (op, ignored) = parse_op_ignoring(
            r#"{"op":"subscribe","channels":["ticks:A"],"throttle":250,"depth":1,"Id":2}"#,
        )
        .expect("parses");
        assert!(matches!(op, ClientOp::Subscribe { .. }));
        assert_eq!(ignored, ["Id", "throttle"]);
        let (_, ignored) = parse_op_ignoring(r#"{"op":"ping","id":1}"#).expect("parses");
        assert!(ignored.is_empty());
        let (_, ignored) =
            parse_op_ignoring(r#"{"op":"unsubscribe","channels":[],"depth":1}"#).expect("parses");
        assert_eq!(ignored, ["depth"]);
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
            Ok(ChannelName::Wildcard(Kind::Bars(BarInterval::M1)))
        );
        assert_eq!(parse_channel("portfolio"), Ok(ChannelName::Portfolio));
        let cases = [
            ("ticks", ErrorCode::BadRequest),
            ("trades:AAPL", ErrorCode::UnknownChannel),
            ("ticks:aapl", ErrorCode::BadRequest),
            ("ticks:", ErrorCode::BadRequest),
            ("portfolio:AAPL", ErrorCode::BadRequest),
            ("portfolio:*", ErrorCode::BadRequest),
            ("Portfolio", ErrorCode::BadRequest),
        ];
        for (name, code) in cases {
            assert_eq!(parse_channel(name).map_err(|e| e.code), Err(code), "{name}");
        }
    }
}
