//! The wire structs of the channels' events and their `type`s (name in JSON, kind code in
//! MessagePack): a leaf of `protocol`, written by `events.rs` and `msgpack.rs` and read back by
//! `decode.rs` (an edge node receives events encoded), so each field list exists once.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{BarEvent, Bbo, Side, Tick, TickerStats};

/// A number that prints as an integer when it is one (`"size":100`, not `100.0`): sizes and
/// volumes on the socket and in REST alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(Num)
    }
}

/// An event's `type`: its name in JSON (`"tick"`), its kind code in MessagePack (`1`), so one
/// wire struct writes both encodings (rmp_serde is not human-readable and writes structs as
/// positional arrays, in field order).
pub(super) struct EventType(pub(super) &'static str, pub(super) u8);

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.0)
        } else {
            s.serialize_u8(self.1)
        }
    }
}

pub(super) const TICK: EventType = EventType("tick", 1);
pub(super) const BAR: EventType = EventType("bar", 2);
pub(super) const INDICATORS: EventType = EventType("indicators", 3);
pub(super) const PORTFOLIO: EventType = EventType("portfolio", 4);
pub(super) const BOOK: EventType = EventType("book", 5);
pub(super) const TICKER: EventType = EventType("ticker", 6);
pub(super) const BBO: EventType = EventType("bbo", 7);
pub(super) const PREDICTION: EventType = EventType("prediction", 8);

#[derive(Serialize, Deserialize)]
pub(super) struct TickWire<'a> {
    #[serde(rename = "type", skip_deserializing, default = "tick_type")]
    pub(super) kind: EventType,
    pub(super) ch: &'a str,
    pub(super) seq: u64,
    pub(super) ts: i64,
    pub(super) price: f64,
    pub(super) size: Num,
    /// `null` when the source gave no side (a replay file without a `side` column).
    #[serde(borrow)]
    pub(super) side: Option<&'a str>,
    /// Extension: exchange time, ns since the epoch.
    pub(super) xts: i64,
}

fn tick_type() -> EventType {
    TICK
}

fn bar_type() -> EventType {
    BAR
}

fn ticker_type() -> EventType {
    TICKER
}

fn bbo_type() -> EventType {
    BBO
}

fn book_type() -> EventType {
    BOOK
}

pub(super) fn tick_wire<'a>(ch: &'a str, seq: u64, tick: &Tick) -> TickWire<'a> {
    TickWire {
        kind: TICK,
        ch,
        seq,
        ts: tick.ts,
        price: tick.price,
        size: Num(tick.size),
        side: tick.side.map(Side::as_str),
        xts: tick.exchange_ts,
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct BarWire<'a> {
    #[serde(rename = "type", skip_deserializing, default = "bar_type")]
    kind: EventType,
    ch: &'a str,
    pub(super) seq: u64,
    pub(super) ts: i64,
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

impl<'a> BarWire<'a> {
    pub(super) fn new(ch: &'a str, seq: u64, ts: i64, bar: &BarEvent) -> Self {
        BarWire {
            kind: BAR,
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
        }
    }

    /// The bar this wire form carries (the inverse of [`BarWire::new`]).
    pub(super) fn bar(&self) -> BarEvent {
        BarEvent {
            start_ms: self.start,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume.0,
            trades: self.trades,
            is_final: self.is_final,
        }
    }
}

/// `{"type":"ticker","ch","seq","ts","open","high","low","last","volume","quote_volume",
/// "change","change_pct","trades","open_time","close_time"}` (times in ms).
#[derive(Serialize, Deserialize)]
pub(super) struct TickerWire<'a> {
    #[serde(rename = "type", skip_deserializing, default = "ticker_type")]
    kind: EventType,
    ch: &'a str,
    pub(super) seq: u64,
    pub(super) ts: i64,
    open: f64,
    high: f64,
    low: f64,
    last: f64,
    volume: Num,
    quote_volume: f64,
    change: f64,
    change_pct: f64,
    trades: u64,
    open_time: i64,
    close_time: i64,
}

impl<'a> TickerWire<'a> {
    pub(super) fn new(ch: &'a str, seq: u64, ts: i64, t: &TickerStats) -> Self {
        TickerWire {
            kind: TICKER,
            ch,
            seq,
            ts,
            open: t.open,
            high: t.high,
            low: t.low,
            last: t.last,
            volume: Num(t.volume),
            quote_volume: t.quote_volume,
            change: t.change,
            change_pct: t.change_pct,
            trades: t.trades,
            open_time: t.open_time_ms,
            close_time: t.close_time_ms,
        }
    }

    /// The statistics this wire form carries (the inverse of [`TickerWire::new`]).
    pub(super) fn stats(&self) -> TickerStats {
        TickerStats {
            open: self.open,
            high: self.high,
            low: self.low,
            last: self.last,
            volume: self.volume.0,
            quote_volume: self.quote_volume,
            change: self.change,
            change_pct: self.change_pct,
            trades: self.trades,
            open_time_ms: self.open_time,
            close_time_ms: self.close_time,
        }
    }
}

/// `{"type":"bbo","ch","seq","ts","bid","bid_size","ask","ask_size"}`; a side's two fields are
/// `null` while it is empty.
#[derive(Serialize, Deserialize)]
pub(super) struct BboWire<'a> {
    #[serde(rename = "type", skip_deserializing, default = "bbo_type")]
    kind: EventType,
    ch: &'a str,
    pub(super) seq: u64,
    pub(super) ts: i64,
    bid: Option<f64>,
    bid_size: Option<Num>,
    ask: Option<f64>,
    ask_size: Option<Num>,
}

impl<'a> BboWire<'a> {
    pub(super) fn new(ch: &'a str, seq: u64, ts: i64, b: &Bbo) -> Self {
        BboWire {
            kind: BBO,
            ch,
            seq,
            ts,
            bid: b.bid.map(|l| l.0),
            bid_size: b.bid.map(|l| Num(l.1)),
            ask: b.ask.map(|l| l.0),
            ask_size: b.ask.map(|l| Num(l.1)),
        }
    }

    /// The best bid and offer this wire form carries (the inverse of [`BboWire::new`]).
    pub(super) fn bbo(&self) -> Bbo {
        let side = |p: Option<f64>, s: &Option<Num>| p.zip(s.as_ref().map(|s| s.0));
        Bbo {
            bid: side(self.bid, &self.bid_size),
            ask: side(self.ask, &self.ask_size),
        }
    }
}

/// A `book` event: changed levels (size 0: removed) or, with `reset`, the whole view.
#[derive(Serialize, Deserialize)]
pub(super) struct BookWire<'a> {
    #[serde(rename = "type", skip_deserializing, default = "book_type")]
    pub(super) kind: EventType,
    pub(super) ch: &'a str,
    pub(super) seq: u64,
    pub(super) ts: i64,
    /// True: replace your copy with these levels (the first event of a book, a venue resync).
    pub(super) reset: bool,
    pub(super) bids: Vec<(Num, Num)>,
    pub(super) asks: Vec<(Num, Num)>,
    /// CRC-32 of the top levels of the view after this event (`BookView::checksum`).
    pub(super) checksum: u32,
}
