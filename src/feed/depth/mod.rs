//! Venue depth streams: each venue's [`DepthStream`] (in its folder under `feed/venues/`, where
//! it is registered) turns each inbound message into [`BookUpdate`]s (venue symbols, before
//! aliases), or says that a symbol's book lost sync and the feed must resync it:
//! [`DepthStream::resync_messages`] unsubscribes and subscribes that symbol again on the open
//! connection (the venue answers with a fresh snapshot), so the other symbols' books and trades
//! go on; Binance's partial book, which never loses sync, has none. This module holds what the
//! venues share: the trait, what a message decoded to, the errors, and the level parsing.
//!
//! Decoders parse with serde_json into borrowed `&str`. A message that is not a depth message
//! (acks, errors, trades, heartbeats, malformed JSON) is [`Decoded::NotDepth`]: the feed offers
//! it to the trade mapping, whose rules already ignore the venues' acks and report their
//! errors as refused subscriptions (the venues answer depth subscriptions in the same forms).
//! A depth message that cannot be used loses its symbol's sync on the venues that send deltas
//! (the copy would be wrong from then on); on Binance, where every message is the whole top of
//! the book, it is only an error.
//!
//! Every decoder's state is per connection: [`DepthStream::reset`] on each new one.

use crate::book::{BookUpdate, Level};

/// What one inbound message was, for the depth stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Not a depth message: offer it to the trade mapping.
    NotDepth,
    /// A depth message; `updates` book updates were appended (0 for one that changed nothing).
    Book { updates: usize },
    /// An older book than the last one for this symbol (Binance): dropped.
    Stale { symbol: String },
    /// The symbol's book lost sync (a gap, a checksum mismatch, an unusable delta): resync.
    Lost { symbol: String, reason: String },
}

/// A depth message that could not be used, when no symbol's sync depends on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DepthError {
    #[error("malformed {venue} depth message: {message}")]
    Malformed {
        venue: &'static str,
        message: String,
    },
    #[error("field `{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error(
        "binance partial depth messages do not name their symbol: one symbol per feed \
         (got {0}; add a [[feeds.upstreams]] entry per symbol)"
    )]
    BinanceSymbols(usize),
}

impl DepthError {
    pub(crate) fn field(field: &'static str, message: impl ToString) -> Self {
        DepthError::Field {
            field,
            message: message.to_string(),
        }
    }
}

/// One venue's depth stream decoder, holding its per-connection sequence state.
pub trait DepthStream: Send + std::fmt::Debug {
    /// The depth subscribe message(s), sent after the trade subscribe on every connection.
    fn subscribe_messages(&self) -> Vec<String>;

    /// The messages that get one symbol's book again on the open connection (unsubscribe,
    /// subscribe: the venue answers with a fresh snapshot), forgetting its sequence state;
    /// `None` where a resync means a new connection (Binance's partial book never loses sync).
    fn resync_messages(&mut self, _symbol: &str) -> Option<Vec<String>> {
        None
    }

    /// Forgets every book's sequence state (a new connection).
    fn reset(&mut self);

    /// Decodes one message, appending its updates to `out`; `now_ns` dates updates whose
    /// message carries no time (Binance, a Coinbase snapshot).
    fn decode(
        &mut self,
        msg: &[u8],
        now_ns: i64,
        out: &mut Vec<BookUpdate>,
    ) -> Result<Decoded, DepthError>;
}

/// A price or size written as a decimal string.
pub(crate) fn number(field: &'static str, text: &str) -> Result<f64, DepthError> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| DepthError::field(field, format!("not a number: {text:?}")))
}

/// One level from its price and size text: price finite and > 0, size finite and >= 0.
pub(crate) fn level(price: &str, size: &str) -> Result<Level, DepthError> {
    let p = number("price", price)?;
    let s = number("size", size)?;
    if !(p.is_finite() && p > 0.0) {
        return Err(DepthError::field(
            "price",
            format!("must be > 0, got {price}"),
        ));
    }
    if !(s.is_finite() && s >= 0.0) {
        return Err(DepthError::field(
            "size",
            format!("must be >= 0, got {size}"),
        ));
    }
    Ok((p, s))
}

/// Levels from `[price, size]` string pairs.
pub(crate) fn levels(pairs: &[[&str; 2]]) -> Result<Vec<Level>, DepthError> {
    pairs.iter().map(|[p, s]| level(p, s)).collect()
}

/// Integer milliseconds to nanoseconds, > 0.
pub(crate) fn ms_to_ns(field: &'static str, ms: i64) -> Result<i64, DepthError> {
    ms.checked_mul(1_000_000)
        .filter(|ns| *ns > 0)
        .ok_or_else(|| DepthError::field(field, format!("out of range: {ms}")))
}

/// An RFC 3339 time, or `now_ns` when the message has none.
pub(crate) fn rfc3339_or(
    field: &'static str,
    t: Option<&str>,
    now_ns: i64,
) -> Result<i64, DepthError> {
    match t {
        None => Ok(now_ns),
        Some(t) => crate::timestamp::parse_rfc3339(t).map_err(|e| DepthError::field(field, e)),
    }
}

/// The JSON array of `names`, for subscribe messages.
pub(crate) fn json_list(names: impl IntoIterator<Item = String>) -> String {
    let names: Vec<String> = names.into_iter().collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned())
}

/// A decoder's test: what `decode` makes of each line of a fixture, one word per line as
/// `outcome` writes it.
#[cfg(test)]
pub(crate) fn decode_fixture(
    text: &str,
    mut decode: impl FnMut(&[u8], &mut Vec<BookUpdate>) -> Result<Decoded, DepthError>,
    outcome: impl Fn(Result<Decoded, DepthError>, &[BookUpdate]) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            out.clear();
            let r = decode(line.as_bytes(), &mut out);
            outcome(r, &out)
        })
        .collect()
}

/// `snapshot SYMBOL bids/asks` or `delta ...` of a decoded update, for the decoders' tests.
#[cfg(test)]
pub(crate) fn describe(u: &BookUpdate) -> String {
    let kind = if u.snapshot { "snapshot" } else { "delta" };
    format!("{kind} {} {}/{}", u.symbol, u.bids.len(), u.asks.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked() {
        assert_eq!(level("1.5", "0"), Ok((1.5, 0.0)));
        for (p, s) in [
            ("0", "1"),
            ("-1", "1"),
            ("abc", "1"),
            ("1", "-1"),
            ("1", "NaN"),
        ] {
            assert!(level(p, s).is_err(), "{p} {s}");
        }
        assert!(ms_to_ns("ts", i64::MAX).is_err());
        assert!(ms_to_ns("ts", 0).is_err());
    }
}
