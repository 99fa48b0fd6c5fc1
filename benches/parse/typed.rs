//! Typed decoders for the five built-in venues' trade messages: what a feed written for one venue
//! would do instead of the generic TOML mapping. Each is one `serde_json::from_slice` into a
//! borrowed `#[derive(Deserialize)]` struct of the venue's documented message shape (the fields a
//! tick needs; the rest are skipped by serde), then the same rules as the venue's mapping in
//! `feeds/mappings/`: the type field, the symbol filter and aliases, decimal strings parsed with
//! `str::parse::<f64>`, the side rule, the time unit, and `tickcast::ingest::validate`. A batch
//! keeps its usable trades and drops the others, as the mapping path does; a message whose shape
//! does not decode gives no ticks.
//!
//! The bench setup holds every fixture line to the same ticks through both paths, so the timed
//! comparison is like for like.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use tickcast::model::{RawTick, Side};

/// Appends the usable trades of one message to `out`, returning how many.
pub type Decode = fn(&[u8], &Symbols, &mut Vec<RawTick>) -> usize;

/// The typed decoder for a built-in mapping's name.
pub fn decoder(venue: &str) -> Option<Decode> {
    Some(match venue {
        "binance" => binance,
        "coinbase" => coinbase,
        "kraken" => kraken,
        "bybit" => bybit,
        "okx" => okx,
        _ => return None,
    })
}

/// The feed's symbols: venue spelling → published symbol, as `SymbolMap::only` builds it.
pub struct Symbols {
    accepted: HashMap<String, String>,
    /// The mapping's `symbol_case = "upper"`.
    upper: bool,
}

impl Symbols {
    pub fn new(symbols: &[String], aliases: &BTreeMap<String, String>, upper: bool) -> Self {
        let accepted = symbols
            .iter()
            .map(|s| {
                let venue = if upper {
                    s.to_ascii_uppercase()
                } else {
                    s.clone()
                };
                let published = aliases.get(s).cloned().unwrap_or_else(|| venue.clone());
                (venue, published)
            })
            .collect();
        Self { accepted, upper }
    }

    fn resolve(&self, venue: &str) -> Option<String> {
        if self.upper && venue.bytes().any(|b| b.is_ascii_lowercase()) {
            self.accepted.get(&venue.to_ascii_uppercase()).cloned()
        } else {
            self.accepted.get(venue).cloned()
        }
    }
}

/// Validates and appends; 1 if the tick was usable.
fn push(out: &mut Vec<RawTick>, tick: Option<RawTick>) -> usize {
    match tick {
        Some(t) if tickcast::ingest::validate(&t).is_ok() => {
            out.push(t);
            1
        }
        _ => 0,
    }
}

/// Integer milliseconds after the epoch, in nanoseconds.
fn ms_ns(ms: i64) -> Option<i64> {
    if ms <= 0 {
        return None;
    }
    ms.checked_mul(1_000_000)
}

/// Milliseconds as a string of digits (OKX).
fn ms_text_ns(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ms_ns(s.parse().ok()?)
}

/// An RFC 3339 time after the epoch, in nanoseconds.
fn rfc3339_ns(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos())
        .ok()
        .filter(|ns| *ns > 0)
}

fn decimal(s: &str) -> Option<f64> {
    s.parse().ok()
}

/// A taker side as the venues spell it (`buy`, `Buy`, ...).
fn taker(s: &str) -> Option<Side> {
    match s {
        "buy" | "Buy" | "BUY" => Some(Side::Buy),
        "sell" | "Sell" | "SELL" => Some(Side::Sell),
        _ => None,
    }
}

// --- Binance spot `<symbol>@trade` ---

#[derive(Deserialize)]
struct BinanceTrade<'a> {
    #[serde(rename = "e")]
    event: &'a str,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "p")]
    price: &'a str,
    #[serde(rename = "q")]
    size: &'a str,
    /// Trade time, ms.
    #[serde(rename = "T")]
    time_ms: i64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
}

pub fn binance(msg: &[u8], symbols: &Symbols, out: &mut Vec<RawTick>) -> usize {
    let Ok(t) = serde_json::from_slice::<BinanceTrade<'_>>(msg) else {
        return 0;
    };
    if t.event != "trade" {
        return 0;
    }
    let tick = (|| {
        Some(RawTick {
            symbol: symbols.resolve(t.symbol)?,
            price: decimal(t.price)?,
            size: decimal(t.size)?,
            side: Some(if t.buyer_is_maker {
                Side::Sell
            } else {
                Side::Buy
            }),
            exchange_ts: ms_ns(t.time_ms)?,
        })
    })();
    push(out, tick)
}

// --- Coinbase Exchange `matches` channel ---

#[derive(Deserialize)]
struct CoinbaseMatch<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    product_id: &'a str,
    price: &'a str,
    size: &'a str,
    /// The maker's side: the taker did the opposite.
    side: &'a str,
    time: &'a str,
}

pub fn coinbase(msg: &[u8], symbols: &Symbols, out: &mut Vec<RawTick>) -> usize {
    let Ok(t) = serde_json::from_slice::<CoinbaseMatch<'_>>(msg) else {
        return 0;
    };
    if t.kind != "match" {
        return 0;
    }
    let tick = (|| {
        let side = match taker(t.side)? {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        };
        Some(RawTick {
            symbol: symbols.resolve(t.product_id)?,
            price: decimal(t.price)?,
            size: decimal(t.size)?,
            side: Some(side),
            exchange_ts: rfc3339_ns(t.time)?,
        })
    })();
    push(out, tick)
}

// --- Kraken Spot v2 `trade` channel: a batch under `data`, numbers as JSON numbers ---

#[derive(Deserialize)]
struct KrakenMessage<'a> {
    channel: &'a str,
    #[serde(borrow)]
    data: Vec<KrakenTrade<'a>>,
}

#[derive(Deserialize)]
struct KrakenTrade<'a> {
    symbol: &'a str,
    side: &'a str,
    price: f64,
    qty: f64,
    timestamp: &'a str,
}

pub fn kraken(msg: &[u8], symbols: &Symbols, out: &mut Vec<RawTick>) -> usize {
    let Ok(m) = serde_json::from_slice::<KrakenMessage<'_>>(msg) else {
        return 0;
    };
    if m.channel != "trade" {
        return 0;
    }
    m.data
        .iter()
        .map(|t| {
            let tick = (|| {
                Some(RawTick {
                    symbol: symbols.resolve(t.symbol)?,
                    price: t.price,
                    size: t.qty,
                    side: Some(taker(t.side)?),
                    exchange_ts: rfc3339_ns(t.timestamp)?,
                })
            })();
            push(out, tick)
        })
        .sum()
}

// --- Bybit v5 `publicTrade.<symbol>`: a batch under `data` ---

#[derive(Deserialize)]
struct BybitMessage<'a> {
    topic: &'a str,
    #[serde(borrow)]
    data: Vec<BybitTrade<'a>>,
}

#[derive(Deserialize)]
struct BybitTrade<'a> {
    /// Trade time, ms.
    #[serde(rename = "T")]
    time_ms: i64,
    #[serde(rename = "s")]
    symbol: &'a str,
    /// The taker's side, `Buy`/`Sell`.
    #[serde(rename = "S")]
    side: &'a str,
    #[serde(rename = "v")]
    size: &'a str,
    #[serde(rename = "p")]
    price: &'a str,
}

pub fn bybit(msg: &[u8], symbols: &Symbols, out: &mut Vec<RawTick>) -> usize {
    let Ok(m) = serde_json::from_slice::<BybitMessage<'_>>(msg) else {
        return 0;
    };
    if !m.topic.starts_with("publicTrade.") {
        return 0;
    }
    m.data
        .iter()
        .map(|t| {
            let tick = (|| {
                Some(RawTick {
                    symbol: symbols.resolve(t.symbol)?,
                    price: decimal(t.price)?,
                    size: decimal(t.size)?,
                    side: Some(taker(t.side)?),
                    exchange_ts: ms_ns(t.time_ms)?,
                })
            })();
            push(out, tick)
        })
        .sum()
}

// --- OKX v5 `trades` channel: `arg.channel`, a batch under `data`, everything as strings ---

#[derive(Deserialize)]
struct OkxMessage<'a> {
    /// Acks and errors carry `event`; trades do not.
    #[serde(default)]
    event: Option<&'a str>,
    #[serde(borrow)]
    arg: OkxArg<'a>,
    #[serde(borrow)]
    data: Vec<OkxTrade<'a>>,
}

#[derive(Deserialize)]
struct OkxArg<'a> {
    channel: &'a str,
}

#[derive(Deserialize)]
struct OkxTrade<'a> {
    #[serde(rename = "instId")]
    inst_id: &'a str,
    px: &'a str,
    sz: &'a str,
    /// The taker's side.
    side: &'a str,
    /// Trade time, ms as a string of digits.
    ts: &'a str,
}

pub fn okx(msg: &[u8], symbols: &Symbols, out: &mut Vec<RawTick>) -> usize {
    let Ok(m) = serde_json::from_slice::<OkxMessage<'_>>(msg) else {
        return 0;
    };
    if m.event.is_some() || m.arg.channel != "trades" {
        return 0;
    }
    m.data
        .iter()
        .map(|t| {
            let tick = (|| {
                Some(RawTick {
                    symbol: symbols.resolve(t.inst_id)?,
                    price: decimal(t.px)?,
                    size: decimal(t.sz)?,
                    side: Some(taker(t.side)?),
                    exchange_ts: ms_text_ns(t.ts)?,
                })
            })();
            push(out, tick)
        })
        .sum()
}
