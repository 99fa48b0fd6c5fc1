//! Reading the channel events back: an edge node receives each event from the stream exactly as
//! ingest encoded it (the wire bytes, shared with every socket unchanged) and needs its typed
//! payload too (REST reads the latest tick, bar and indicators). The inverse of `events.rs`.

use serde_json::Value;

use super::indicators::IndicatorFields;
use super::wire::{BarWire, BboWire, TickWire, TickerWire};
use crate::model::{Kind, Payload, Side, SymbolId, Tick};

/// An event the stream carried that does not read as its channel's event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a {kind} event: {message}")]
    Json { kind: Kind, message: String },
    #[error("unknown side {0:?}")]
    Side(String),
}

/// The sequencing fields and the typed payload of one encoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub seq: u64,
    pub ts: i64,
    pub payload: Payload,
}

/// A `book` event read back: its sequencing, whether it is a reset, its levels and checksum.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct DecodedBook {
    pub seq: u64,
    pub ts: i64,
    pub reset: bool,
    pub bids: Vec<(f64, f64)>,
    pub asks: Vec<(f64, f64)>,
    pub checksum: u32,
}

impl DecodedBook {
    /// The levels, as the view (a reset) or the delta they are.
    pub fn levels(&self) -> crate::book::BookView {
        crate::book::BookView {
            bids: self.bids.clone(),
            asks: self.asks.clone(),
        }
    }
}

/// Reads a `book` event's JSON (`events.rs`'s `BookMessage`).
pub fn decode_book(bytes: &[u8]) -> Result<DecodedBook, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Json {
        kind: Kind::Book,
        message: e.to_string(),
    })
}

/// Decodes an event of `kind` for `symbol` (the receiver's own id for it).
pub fn decode_event(
    kind: Kind,
    symbol: SymbolId,
    bytes: &[u8],
    fields: &IndicatorFields,
) -> Result<Decoded, DecodeError> {
    let json = |e: serde_json::Error| DecodeError::Json {
        kind,
        message: e.to_string(),
    };
    match kind {
        Kind::Ticks => {
            let t: TickWire = serde_json::from_slice(bytes).map_err(json)?;
            let side = match t.side {
                None => None,
                Some(s) => Some(Side::parse_strict(s).ok_or_else(|| DecodeError::Side(s.into()))?),
            };
            Ok(Decoded {
                seq: t.seq,
                ts: t.ts,
                payload: Payload::Tick(Tick {
                    symbol,
                    price: t.price,
                    size: t.size.0,
                    side,
                    exchange_ts: t.xts,
                    ts: t.ts,
                }),
            })
        }
        Kind::Bars(_) => {
            let b: BarWire = serde_json::from_slice(bytes).map_err(json)?;
            Ok(Decoded {
                seq: b.seq,
                ts: b.ts,
                payload: Payload::Bar(b.bar()),
            })
        }
        Kind::Ticker => {
            let t: TickerWire = serde_json::from_slice(bytes).map_err(json)?;
            Ok(Decoded {
                seq: t.seq,
                ts: t.ts,
                payload: Payload::Ticker(t.stats().into()),
            })
        }
        Kind::Bbo => {
            let b: BboWire = serde_json::from_slice(bytes).map_err(json)?;
            Ok(Decoded {
                seq: b.seq,
                ts: b.ts,
                payload: Payload::Bbo(b.bbo()),
            })
        }
        Kind::Predictions => {
            let p = super::prediction::decode(bytes).map_err(json)?;
            Ok(Decoded {
                seq: p.seq,
                ts: p.ts,
                payload: Payload::Prediction,
            })
        }
        Kind::Portfolio => Err(DecodeError::Json {
            kind,
            message: "portfolio events are never on the stream".into(),
        }),
        Kind::Book => {
            let b = decode_book(bytes)?;
            Ok(Decoded {
                seq: b.seq,
                ts: b.ts,
                payload: Payload::Book,
            })
        }
        Kind::Indicators => {
            let v: serde_json::Map<String, Value> = serde_json::from_slice(bytes).map_err(json)?;
            let int = |k: &str| v.get(k).and_then(Value::as_i64);
            let (Some(seq), Some(ts)) = (int("seq"), int("ts")) else {
                return Err(DecodeError::Json {
                    kind,
                    message: "no integer `seq` and `ts`".into(),
                });
            };
            Ok(Decoded {
                seq: seq.max(0) as u64,
                ts,
                payload: Payload::Indicators(fields.read(&v).into()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BarEvent, BarInterval, IndicatorPeriods, IndicatorValues};
    use crate::protocol::{encode_bar, encode_indicators, encode_tick};

    fn fields() -> IndicatorFields {
        IndicatorFields::new(&IndicatorPeriods::default())
    }

    #[test]
    fn a_price_of_seventeen_digits_reads_back_to_the_same_f64() {
        // serde_json's default parser missed this one by an ulp (`float_roundtrip` fixes it):
        // an edge would have shown a price that prints differently from ingest's.
        let tick = Tick {
            symbol: SymbolId(1),
            price: -461_755_599_321.581_24,
            size: 0.1 + 0.2,
            side: None,
            exchange_ts: 1,
            ts: 2,
        };
        let got = decode_event(
            Kind::Ticks,
            SymbolId(1),
            encode_tick("ticks:X", 1, &tick).json(),
            &fields(),
        )
        .unwrap();
        assert_eq!(got.payload, Payload::Tick(tick));
    }

    #[test]
    fn every_encoded_event_decodes_to_what_was_encoded() {
        let s = SymbolId(3);
        for side in [Some(Side::Buy), Some(Side::Sell), None] {
            let tick = Tick {
                symbol: s,
                price: 189.23,
                size: 100.0,
                side,
                exchange_ts: 1_764_070_000_120_000_000,
                ts: 1_764_070_000_123_456_789,
            };
            let got = decode_event(
                Kind::Ticks,
                s,
                encode_tick("ticks:X", 7, &tick).json(),
                &fields(),
            )
            .unwrap();
            assert_eq!((got.seq, got.ts), (7, tick.ts));
            assert_eq!(got.payload, Payload::Tick(tick));
        }
        let bar = BarEvent {
            start_ms: 1_764_070_000_000,
            open: 1.0,
            high: 1.25,
            low: 0.5,
            close: 1.125,
            volume: 300.0,
            trades: 3,
            is_final: false,
        };
        let got = decode_event(
            Kind::Bars(BarInterval::M1),
            s,
            encode_bar("bars.1m:X", 9, 42, &bar).json(),
            &fields(),
        )
        .unwrap();
        assert_eq!((got.seq, got.ts, got.payload), (9, 42, Payload::Bar(bar)));
        let values = IndicatorValues {
            periodic: vec![Some(1.5), None, Some(55.25), Some(0.01)],
            vwap: Some(1.05),
            book: Default::default(),
            ..Default::default()
        };
        let got = decode_event(
            Kind::Indicators,
            s,
            encode_indicators("indicators:X", 4, 43, &values, &fields()).json(),
            &fields(),
        )
        .unwrap();
        assert_eq!(
            (got.seq, got.ts, got.payload),
            (4, 43, Payload::Indicators(values.into()))
        );
    }

    #[test]
    fn garbage_is_an_error_naming_the_kind() {
        for (kind, bytes) in [
            (Kind::Ticks, &b"{\"seq\":1}"[..]),
            (Kind::Bars(BarInterval::S1), b"not json"),
            (Kind::Indicators, b"{\"seq\":\"x\",\"ts\":1}"),
            (
                Kind::Ticks,
                b"{\"seq\":1,\"ts\":1,\"price\":1,\"size\":1,\"side\":\"up\",\"xts\":1}",
            ),
        ] {
            let err = decode_event(kind, SymbolId(0), bytes, &fields()).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
    }
}
