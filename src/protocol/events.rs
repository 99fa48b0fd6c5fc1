//! The events of the channels (`tick`, `bar`, `indicators`, `book`, `ticker`, `bbo`,
//! `portfolio`): ingest encodes each one here, once, into the [`Wire`] that every subscriber and
//! every snapshot shares: the JSON, and the function that makes the MessagePack form from it
//! when a connection first asks (`transcode.rs`; a portfolio's is made now). Their wire structs live in `wire.rs`, which `decode.rs` reads them back with (an edge
//! node receives them encoded), so each field list exists once.

use bytes::Bytes;
use serde::Serialize;

use super::decode::{Decoded, DecodedBook};
use super::indicators::IndicatorFields;
use super::wire::{
    BOOK, BarWire, BboWire, BookWire, EventType, Num, PORTFOLIO, TickerWire, tick_wire,
};
use super::{msgpack, to_bytes, transcode};
use crate::book::BookView;
use crate::model::{
    BarEvent, Bbo, Encoding, IndicatorValues, Payload, Tick, TickerStats, Transcode, Wire,
};

/// A wire struct's JSON, its MessagePack form made from it by `transcode` when first needed.
fn wire<T: Serialize>(v: &T, transcode: Transcode) -> Wire {
    Wire::transcoded(to_bytes(v), transcode)
}

pub fn encode_tick(ch: &str, seq: u64, tick: &Tick) -> Wire {
    wire(&tick_wire(ch, seq, tick), transcode::tick)
}

pub fn encode_bar(ch: &str, seq: u64, ts: i64, bar: &BarEvent) -> Wire {
    wire(&BarWire::new(ch, seq, ts, bar), transcode::bar)
}

/// A `ticker` event: the symbol's rolling 24 h statistics.
pub fn encode_ticker(ch: &str, seq: u64, ts: i64, stats: &TickerStats) -> Wire {
    wire(&TickerWire::new(ch, seq, ts, stats), transcode::ticker)
}

/// A `bbo` event: the symbol's best bid and offer with their sizes.
pub fn encode_bbo(ch: &str, seq: u64, ts: i64, bbo: &Bbo) -> Wire {
    wire(&BboWire::new(ch, seq, ts, bbo), transcode::bbo)
}

/// `{"type":"indicators","ch":..,"seq":..,"ts":..}` plus the indicator fields named by `fields`.
pub fn encode_indicators(
    ch: &str,
    seq: u64,
    ts: i64,
    values: &IndicatorValues,
    fields: &IndicatorFields,
) -> Wire {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), "indicators".into());
    m.insert("ch".into(), ch.into());
    m.insert("seq".into(), seq.into());
    m.insert("ts".into(), ts.into());
    fields.insert(&mut m, values);
    Wire::new(
        to_bytes(&m),
        msgpack::indicators(ch, seq, ts, values, fields),
    )
}

/// A `book` event to encode: `levels` holds the changed levels, or the whole view when `reset`;
/// `checksum` is that of the view after it (`BookView::checksum`).
#[derive(Debug, Clone, Copy)]
pub struct BookMessage<'a> {
    pub ch: &'a str,
    pub seq: u64,
    pub ts: i64,
    pub reset: bool,
    pub levels: &'a BookView,
    pub checksum: u32,
}

impl BookMessage<'_> {
    fn wire_struct(&self) -> BookWire<'_> {
        let pairs = |side: &[(f64, f64)]| side.iter().map(|&(p, s)| (Num(p), Num(s))).collect();
        BookWire {
            kind: BOOK,
            ch: self.ch,
            seq: self.seq,
            ts: self.ts,
            reset: self.reset,
            bids: pairs(&self.levels.bids),
            asks: pairs(&self.levels.asks),
            checksum: self.checksum,
        }
    }

    /// `{"type":"book","ch":"book:SYM","seq":..,"ts":..,"reset":false,"bids":[[price,size],..],
    /// "asks":[..],"checksum":..}`; MessagePack `[5, ch, seq, ts, reset, bids, asks, checksum]`.
    pub fn wire(&self) -> Wire {
        let json = to_bytes(&self.wire_struct());
        Wire::book_transcoded(json, transcode::book, self.seq, self.reset)
    }

    /// In one encoding only: what a connection's writer sends when it makes a book event of its
    /// own (a narrower depth, a throttle, a reset after a gap).
    pub fn encoded(&self, encoding: Encoding) -> Bytes {
        let w = self.wire_struct();
        match encoding {
            Encoding::Json => to_bytes(&w),
            Encoding::Msgpack => msgpack::positional(&w),
        }
    }
}

/// A `portfolio` event's fields after `ts`: why it was published, then the portfolio body.
#[derive(Serialize)]
struct PortfolioFields<'a, B: Serialize> {
    reason: &'a str,
    #[serde(flatten)]
    body: &'a B,
}

#[derive(Serialize)]
struct PortfolioWire<'a, B: Serialize> {
    #[serde(rename = "type")]
    kind: EventType,
    ch: &'a str,
    seq: u64,
    ts: i64,
    #[serde(flatten)]
    fields: &'a PortfolioFields<'a, B>,
}

/// `{"type":"portfolio","ch":"portfolio","seq":..,"ts":..,"reason":..}` plus the portfolio's
/// fields (the body of `GET /api/v1/portfolio`); in MessagePack `[4, "portfolio", seq, ts,
/// {reason, ...}]` with its exact decimals as strings.
pub fn encode_portfolio<B: Serialize>(seq: u64, ts: i64, reason: &str, body: &B) -> Wire {
    let ch = crate::model::Kind::Portfolio.as_str();
    let fields = PortfolioFields { reason, body };
    let json = to_bytes(&PortfolioWire {
        kind: PORTFOLIO,
        ch,
        seq,
        ts,
        fields: &fields,
    });
    Wire::new(json, msgpack::reply(&(PORTFOLIO, ch, seq, ts, &fields)))
}

/// The wire forms of an event received as JSON (an edge reads the stream's events, which carry
/// the JSON only): the JSON bytes as they came, copied into a block of their own (a message's
/// payload shares its read buffer with every message read with it, which a ring would keep
/// alive for as long as it holds any of them), the MessagePack made from them on demand.
pub fn rewire(json: &[u8], decoded: &Decoded, fields: &IndicatorFields) -> Wire {
    let make: Transcode = match &decoded.payload {
        Payload::Tick(_) => transcode::tick,
        Payload::Bar(_) => transcode::bar,
        // Made at once: the map's order is the configured periods', which the JSON (its keys
        // sorted) does not keep. One event a second per symbol.
        Payload::Indicators(v) => {
            let ch = channel_of(json);
            let msgpack = msgpack::indicators(ch, decoded.seq, decoded.ts, v, fields);
            return Wire::new(Bytes::copy_from_slice(json), msgpack);
        }
        Payload::Ticker(_) => transcode::ticker,
        Payload::Bbo(_) => transcode::bbo,
        // Never on the cluster stream: portfolio events stay on the node that made them.
        Payload::Portfolio => return Wire::new(Bytes::copy_from_slice(json), Bytes::new()),
        // The forecasts are not in the payload: the fields after `ts` as the JSON has them.
        Payload::Prediction => {
            let ch = channel_of(json);
            let msgpack = super::prediction::msgpack_of(ch, json);
            return Wire::new(Bytes::copy_from_slice(json), msgpack);
        }
        Payload::Book => {
            return match super::decode::decode_book(json) {
                Ok(b) => rewire_book(json, &b),
                Err(_) => Wire::new(Bytes::copy_from_slice(json), Bytes::new()),
            };
        }
    };
    Wire::transcoded(Bytes::copy_from_slice(json), make)
}

/// The `ch` of an event's JSON ("" when it has none: the encoder always writes one).
fn channel_of(json: &[u8]) -> &str {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        ch: &'a str,
    }
    serde_json::from_slice::<Head>(json).map_or("", |h| h.ch)
}

/// [`rewire`] for a `book` event already read back (`decode_book`).
pub fn rewire_book(json: &[u8], b: &DecodedBook) -> Wire {
    Wire::book_transcoded(
        Bytes::copy_from_slice(json),
        transcode::book,
        b.seq,
        b.reset,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IndicatorPeriods, Side, SymbolId};
    use serde_json::{Value, json};

    fn parse(w: &Wire) -> Value {
        serde_json::from_slice(w.json()).unwrap()
    }

    #[test]
    fn a_tick_without_a_side_has_side_null() {
        let t = Tick {
            symbol: SymbolId(0),
            price: 1.5,
            size: 2.0,
            side: None,
            exchange_ts: 5,
            ts: 7,
        };
        let v = parse(&encode_tick("ticks:X", 1, &t));
        assert_eq!(
            v,
            json!({"type":"tick","ch":"ticks:X","seq":1,"ts":7,"price":1.5,"size":2,
                   "side":null,"xts":5})
        );
    }

    #[test]
    fn tick_matches_the_contract() {
        let t = Tick {
            symbol: SymbolId(0),
            price: 189.23,
            size: 100.0,
            side: Some(Side::Buy),
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
            periodic: vec![Some(1.0), None, Some(55.2), Some(0.012)],
            vwap: Some(1.05),
            book: Default::default(),
            ..Default::default()
        };
        let v = parse(&encode_indicators(
            "indicators:AAPL",
            7,
            9,
            &iv,
            &IndicatorFields::new(&IndicatorPeriods::default()),
        ));
        assert_eq!(
            v,
            json!({"type":"indicators","ch":"indicators:AAPL","seq":7,"ts":9,"sma_20":1.0,
                "ema_20":null,"rsi_14":55.2,"volatility":0.012,"vwap":1.05,
                "mid":null,"spread":null,"imbalance":null})
        );
    }

    #[test]
    fn ticker_and_bbo_match_the_contract_and_decode_back() {
        let t = TickerStats {
            open: 10.0,
            high: 12.5,
            low: 9.0,
            last: 11.0,
            volume: 8.0,
            quote_volume: 79.5,
            change: 1.0,
            change_pct: 10.0,
            trades: 4,
            open_time_ms: 1_000,
            close_time_ms: 90_000_000,
        };
        let w = encode_ticker("ticker:A", 3, 9, &t);
        assert_eq!(
            parse(&w),
            json!({"type":"ticker","ch":"ticker:A","seq":3,"ts":9,"open":10.0,"high":12.5,
                "low":9.0,"last":11.0,"volume":8,"quote_volume":79.5,"change":1.0,
                "change_pct":10.0,"trades":4,"open_time":1000,"close_time":90000000})
        );
        let fields = IndicatorFields::new(&IndicatorPeriods::default());
        let back = crate::protocol::decode_event(
            crate::model::Kind::Ticker,
            SymbolId(0),
            w.json(),
            &fields,
        )
        .unwrap();
        assert_eq!(
            (back.seq, back.ts, back.payload.clone()),
            (3, 9, Payload::Ticker(t.into()))
        );
        // An edge re-encodes it to the same MessagePack.
        let re = rewire(w.json(), &back, &fields);
        assert_eq!(re.get(Encoding::Msgpack), w.get(Encoding::Msgpack));

        let b = Bbo {
            bid: Some((99.5, 5.0)),
            ask: None,
        };
        let w = encode_bbo("bbo:A", 2, 7, &b);
        assert_eq!(
            parse(&w),
            json!({"type":"bbo","ch":"bbo:A","seq":2,"ts":7,"bid":99.5,"bid_size":5,
                "ask":null,"ask_size":null})
        );
        let back =
            crate::protocol::decode_event(crate::model::Kind::Bbo, SymbolId(0), w.json(), &fields)
                .unwrap();
        assert_eq!(back.payload, Payload::Bbo(b));
    }
}
