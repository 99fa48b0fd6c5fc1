//! An event's MessagePack form made from its JSON: the [`Transcode`] functions that `events.rs`
//! gives each [`Wire`], called the first time a MessagePack connection needs the event (not at
//! ingest, so a JSON-only deployment never makes one). Each reads the JSON back into the same
//! wire struct its encoder wrote and writes that struct positionally, so the bytes are those the
//! encoder would have made (the tests below hold every kind to it).
//!
//! [`Transcode`]: crate::encoding::Transcode
//! [`Wire`]: crate::model::Wire

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::msgpack;
use super::wire::{BarWire, BboWire, BookWire, TickWire, TickerWire};

/// What a form that cannot be made is sent as: MessagePack `nil`, one whole value, so a frame
/// holding it still reads (only an event whose JSON is not its kind's could get here: a bug).
const NIL: &[u8] = &[0xc0];

fn failed(kind: &'static str, e: &serde_json::Error) -> Bytes {
    tracing::error!(kind, error = %e, "an event's JSON does not read back; MessagePack nil sent");
    Bytes::from_static(NIL)
}

fn positional<'a, T: Deserialize<'a> + Serialize>(kind: &'static str, json: &'a [u8]) -> Bytes {
    match serde_json::from_slice::<T>(json) {
        Ok(v) => msgpack::positional(&v),
        Err(e) => failed(kind, &e),
    }
}

pub(super) fn tick(json: &[u8]) -> Bytes {
    positional::<TickWire>("tick", json)
}

pub(super) fn bar(json: &[u8]) -> Bytes {
    positional::<BarWire>("bar", json)
}

pub(super) fn ticker(json: &[u8]) -> Bytes {
    positional::<TickerWire>("ticker", json)
}

pub(super) fn bbo(json: &[u8]) -> Bytes {
    positional::<BboWire>("bbo", json)
}

pub(super) fn book(json: &[u8]) -> Bytes {
    positional::<BookWire>("book", json)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::book::BookView;
    use crate::model::{BarEvent, Bbo, Encoding, Side, SymbolId, Tick, TickerStats};
    use crate::protocol::events::{
        BookMessage, encode_bar, encode_bbo, encode_tick, encode_ticker,
    };
    use crate::protocol::wire::tick_wire;

    fn real() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            -1e12f64..1e12f64,
            (0u32..1_000_000).prop_map(|n| f64::from(n) / 100.0),
            (0i64..100_000).prop_map(|n| n as f64),
        ]
    }

    fn levels() -> impl Strategy<Value = Vec<(f64, f64)>> {
        proptest::collection::vec((real(), real()), 0..6)
    }

    proptest! {
        /// The form made on demand is, byte for byte, the one the encoder makes directly.
        #[test]
        fn transcoded_forms_are_the_encoders_bytes(
            p in proptest::collection::vec(real(), 11), side in 0u8..3,
            seq in 1u64..(u64::MAX >> 1), ts in any::<i64>(), xts in any::<i64>(),
            trades in any::<u64>(), is_final in any::<bool>(),
            bids in levels(), asks in levels(), reset in any::<bool>(), checksum in any::<u32>(),
            bid in proptest::option::of((real(), real())),
            ask in proptest::option::of((real(), real())),
        ) {
            let tick = Tick {
                symbol: SymbolId(0),
                price: p[0],
                size: p[1],
                side: [Some(Side::Buy), Some(Side::Sell), None][usize::from(side)],
                exchange_ts: xts,
                ts,
            };
            let w = encode_tick("ticks:X.Y-1", seq, &tick);
            prop_assert_eq!(
                w.msgpack(),
                &msgpack::positional(&tick_wire("ticks:X.Y-1", seq, &tick))
            );

            let b = BarEvent {
                start_ms: ts / 1_000_000,
                open: p[0],
                high: p[1],
                low: p[2],
                close: p[3],
                volume: p[4],
                trades,
                is_final,
            };
            let w = encode_bar("bars.1m:X", seq, ts, &b);
            prop_assert_eq!(w.msgpack(), &msgpack::positional(&BarWire::new("bars.1m:X", seq, ts, &b)));

            let t = TickerStats {
                open: p[0],
                high: p[1],
                low: p[2],
                last: p[3],
                volume: p[4],
                quote_volume: p[5],
                change: p[6],
                change_pct: p[7],
                trades,
                open_time_ms: xts,
                close_time_ms: ts,
            };
            let w = encode_ticker("ticker:X", seq, ts, &t);
            prop_assert_eq!(w.msgpack(), &msgpack::positional(&TickerWire::new("ticker:X", seq, ts, &t)));

            let q = Bbo { bid, ask };
            let w = encode_bbo("bbo:X", seq, ts, &q);
            prop_assert_eq!(w.msgpack(), &msgpack::positional(&BboWire::new("bbo:X", seq, ts, &q)));

            let view = BookView { bids, asks };
            let m = BookMessage { ch: "book:X", seq, ts, reset, levels: &view, checksum };
            let w = m.wire();
            prop_assert_eq!(w.msgpack(), &m.encoded(Encoding::Msgpack));
            prop_assert_eq!(w.book_seq(), Some((seq, reset)));
        }
    }

    #[test]
    fn json_that_is_not_the_kind_becomes_nil() {
        for f in [tick, bar, ticker, bbo, book] {
            assert_eq!(&f(b"{\"type\":\"tick\"}")[..], NIL);
            assert_eq!(&f(b"not json")[..], NIL);
        }
    }
}
