//! Venue depth streams: one [`DepthDecoder`] per venue turns each inbound message into
//! [`BookUpdate`]s (venue symbols, before aliases), or says that a symbol's book lost sync and
//! the feed must resync it: [`DepthDecoder::resync_messages`] unsubscribes and subscribes that
//! symbol again on the open connection (the venue answers with a fresh snapshot), so the other
//! symbols' books and trades go on; Binance's partial book, which never loses sync, has none.
//!
//! | venue | stream | snapshot | sequence check |
//! | --- | --- | --- | --- |
//! | `binance` | spot `<symbol>@depth20@100ms` (partial book, REST-free) | every message (top 20) | a `lastUpdateId` below the previous one is stale: dropped, counted |
//! | `coinbase` | Exchange `level2_batch` (`snapshot`, `l2update`) | on subscribe | an `l2update` before its product's snapshot is a gap |
//! | `kraken` | WebSocket v2 `book`, depth 25 | on subscribe | the CRC-32 of the top 10 levels, from the message's own digits |
//! | `bybit` | v5 `orderbook.50.<SYMBOL>` | `snapshot` or `u == 1` | a delta whose `u` is not the previous `u + 1` is a gap |
//!
//! Decoders parse with serde_json into borrowed `&str`. A message that is not a depth message
//! (acks, errors, trades, heartbeats, malformed JSON) is [`Decoded::NotDepth`]: the feed offers
//! it to the trade mapping, whose rules already ignore the venues' acks and report their
//! errors as refused subscriptions (the venues answer depth subscriptions in the same forms).
//! A depth message that cannot be used loses its symbol's sync on the venues that send deltas
//! (the copy would be wrong from then on); on Binance, where every message is the whole top of
//! the book, it is only an error.
//!
//! Every decoder's state is per connection: [`DepthDecoder::reset`] on each new one.

mod binance;
mod bybit;
mod coinbase;
mod kraken;

use crate::book::{BookUpdate, Level};

/// A venue whose depth stream tickcast can follow (`feeds.upstream.depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Venue {
    Binance,
    Coinbase,
    Kraken,
    Bybit,
}

/// The names `feeds.upstream.depth` accepts besides `""` (off).
pub const VENUES: &[&str] = &["binance", "coinbase", "kraken", "bybit"];

impl Venue {
    pub fn parse(name: &str) -> Option<Venue> {
        Some(match name {
            "binance" => Venue::Binance,
            "coinbase" => Venue::Coinbase,
            "kraken" => Venue::Kraken,
            "bybit" => Venue::Bybit,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Coinbase => "coinbase",
            Venue::Kraken => "kraken",
            Venue::Bybit => "bybit",
        }
    }
}

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
    fn field(field: &'static str, message: impl ToString) -> Self {
        DepthError::Field {
            field,
            message: message.to_string(),
        }
    }
}

/// One venue's depth decoder, holding its per-connection sequence state.
#[derive(Debug)]
pub enum DepthDecoder {
    Binance(binance::Binance),
    Coinbase(coinbase::Coinbase),
    Kraken(kraken::Kraken),
    Bybit(bybit::Bybit),
}

impl DepthDecoder {
    /// A decoder for `symbols` (the venue's spelling, as configured).
    pub fn new(venue: Venue, symbols: &[String]) -> Result<Self, DepthError> {
        Ok(match venue {
            Venue::Binance => DepthDecoder::Binance(binance::Binance::new(symbols)?),
            Venue::Coinbase => DepthDecoder::Coinbase(coinbase::Coinbase::new(symbols)),
            Venue::Kraken => DepthDecoder::Kraken(kraken::Kraken::new(symbols)),
            Venue::Bybit => DepthDecoder::Bybit(bybit::Bybit::new(symbols)),
        })
    }

    /// The depth subscribe message(s), sent after the trade subscribe on every connection.
    pub fn subscribe_messages(&self) -> Vec<String> {
        match self {
            DepthDecoder::Binance(d) => d.subscribe_messages(),
            DepthDecoder::Coinbase(d) => d.subscribe_messages(),
            DepthDecoder::Kraken(d) => d.subscribe_messages(),
            DepthDecoder::Bybit(d) => d.subscribe_messages(),
        }
    }

    /// The messages that get one symbol's book again on the open connection (unsubscribe,
    /// subscribe: the venue answers with a fresh snapshot), forgetting its sequence state; `None`
    /// where a resync means a new connection (Binance's partial book never loses sync).
    pub fn resync_messages(&mut self, symbol: &str) -> Option<Vec<String>> {
        match self {
            DepthDecoder::Binance(_) => None,
            DepthDecoder::Coinbase(d) => Some(d.resync_messages(symbol)),
            DepthDecoder::Kraken(d) => Some(d.resync_messages(symbol)),
            DepthDecoder::Bybit(d) => Some(d.resync_messages(symbol)),
        }
    }

    /// Forgets every book's sequence state (a new connection).
    pub fn reset(&mut self) {
        match self {
            DepthDecoder::Binance(d) => d.reset(),
            DepthDecoder::Coinbase(d) => d.reset(),
            DepthDecoder::Kraken(d) => d.reset(),
            DepthDecoder::Bybit(d) => d.reset(),
        }
    }

    /// Decodes one message, appending its updates to `out`; `now_ns` dates updates whose
    /// message carries no time (Binance, a Coinbase snapshot).
    pub fn decode(
        &mut self,
        msg: &[u8],
        now_ns: i64,
        out: &mut Vec<BookUpdate>,
    ) -> Result<Decoded, DepthError> {
        match self {
            DepthDecoder::Binance(d) => d.decode(msg, now_ns, out),
            DepthDecoder::Coinbase(d) => d.decode(msg, now_ns, out),
            DepthDecoder::Kraken(d) => d.decode(msg, now_ns, out),
            DepthDecoder::Bybit(d) => d.decode(msg, out),
        }
    }
}

/// A price or size written as a decimal string.
fn number(field: &'static str, text: &str) -> Result<f64, DepthError> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| DepthError::field(field, format!("not a number: {text:?}")))
}

/// One level from its price and size text: price finite and > 0, size finite and >= 0.
fn level(price: &str, size: &str) -> Result<Level, DepthError> {
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
fn levels(pairs: &[[&str; 2]]) -> Result<Vec<Level>, DepthError> {
    pairs.iter().map(|[p, s]| level(p, s)).collect()
}

/// Integer milliseconds to nanoseconds, > 0.
fn ms_to_ns(field: &'static str, ms: i64) -> Result<i64, DepthError> {
    ms.checked_mul(1_000_000)
        .filter(|ns| *ns > 0)
        .ok_or_else(|| DepthError::field(field, format!("out of range: {ms}")))
}

/// An RFC 3339 time, or `now_ns` when the message has none.
fn rfc3339_or(field: &'static str, t: Option<&str>, now_ns: i64) -> Result<i64, DepthError> {
    match t {
        None => Ok(now_ns),
        Some(t) => crate::timestamp::parse_rfc3339(t).map_err(|e| DepthError::field(field, e)),
    }
}

/// The JSON array of `names`, for subscribe messages.
fn json_list(names: impl IntoIterator<Item = String>) -> String {
    let names: Vec<String> = names.into_iter().collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned())
}

/// A decoder's test: what `decode` makes of each line of a fixture, one word per line as
/// `outcome` writes it.
#[cfg(test)]
fn decode_fixture(
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
fn describe(u: &BookUpdate) -> String {
    let kind = if u.snapshot { "snapshot" } else { "delta" };
    format!("{kind} {} {}/{}", u.symbol, u.bids.len(), u.asks.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::mapping::{Mapping, MessageParser, Parsed};

    /// Depth subscriptions are refused in the venues' usual error forms, which the trade
    /// mappings already report: the decoders leave them (and the acks) to the mapping.
    #[test]
    fn depth_acks_and_refusals_are_left_to_the_trade_mapping() {
        let cases = [
            (
                Venue::Binance,
                "binance",
                r#"{"result":null,"id":2}"#,
                r#"{"error":{"code":2,"msg":"Invalid request: unknown stream xyzusdt@depth20@100ms"},"id":2}"#,
            ),
            (
                Venue::Coinbase,
                "coinbase",
                r#"{"type":"subscriptions","channels":[{"name":"level2_batch","product_ids":["BTC-USD"]}]}"#,
                r#"{"type":"error","message":"Failed to subscribe","reason":"XYZ-USD is not a valid product"}"#,
            ),
            (
                Venue::Kraken,
                "kraken",
                r#"{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2025-01-01T00:00:00.000000Z","time_out":"2025-01-01T00:00:00.000100Z"}"#,
                r#"{"error":"Currency pair not supported XYZ/USD","method":"subscribe","success":false,"symbol":"XYZ/USD","time_in":"2025-01-01T00:00:00.000000Z","time_out":"2025-01-01T00:00:00.000100Z"}"#,
            ),
            (
                Venue::Bybit,
                "bybit",
                r#"{"success":true,"ret_msg":"","conn_id":"c1","req_id":"","op":"subscribe"}"#,
                r#"{"success":false,"ret_msg":"error:handler not found","conn_id":"c1","req_id":"","op":"subscribe"}"#,
            ),
        ];
        for (venue, mapping, ack, refusal) in cases {
            let mut d = DepthDecoder::new(venue, &["BTCUSDT".to_owned()]).unwrap();
            let mut parser = MessageParser::new(Mapping::load(mapping).unwrap());
            let mut out = Vec::new();
            let mut ticks = Vec::new();
            for msg in [ack, refusal] {
                assert_eq!(
                    d.decode(msg.as_bytes(), 1, &mut out),
                    Ok(Decoded::NotDepth),
                    "{msg}"
                );
            }
            assert!(
                matches!(
                    parser.parse(ack.as_bytes(), &mut ticks),
                    Ok(Parsed::Ignored { .. })
                ),
                "{mapping} ack"
            );
            assert!(
                matches!(
                    parser.parse(refusal.as_bytes(), &mut ticks),
                    Ok(Parsed::SubscribeError { .. })
                ),
                "{mapping} refusal"
            );
            assert!(out.is_empty() && ticks.is_empty());
        }
    }

    #[test]
    fn venue_names() {
        for name in VENUES {
            assert_eq!(Venue::parse(name).map(Venue::name), Some(*name));
        }
        assert_eq!(Venue::parse("okx"), None);
        assert_eq!(Venue::parse(""), None);
    }

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
