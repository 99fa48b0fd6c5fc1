//! The `encoding=msgpack` form of the wire (docs/PROTOCOL.md "Encodings"): events as positional
//! arrays led by a kind code, replies and snapshots as maps with their JSON keys, and every
//! frame one array of messages. Events are encoded here once, at ingest, beside their JSON.

use bytes::Bytes;
use rmp::encode;
use serde::Serialize;

use super::indicators::IndicatorFields;
use super::wire::INDICATORS;
use crate::model::{IndicatorValues, Wire};

// Writing into a `Vec<u8>` cannot fail (rmp's writer errors are I/O errors); the results of the
// `encode::write_*` calls below are ignored for that reason.

/// A tick or bar from its wire struct (`events.rs`): rmp_serde writes a struct as an array of
/// its fields in order, and the struct's `type` as its kind code, so the positional form and
/// the JSON object come from one field list.
pub(super) fn positional<T: Serialize>(value: &T) -> Bytes {
    // Plain structs of numbers and strings: this cannot fail; an empty array is a safe fallback.
    Bytes::from(rmp_serde::to_vec(value).unwrap_or_else(|_| vec![0x90]))
}

fn write_opt_f64(out: &mut Vec<u8>, x: Option<f64>) {
    match x {
        Some(v) => {
            let _ = encode::write_f64(out, v);
        }
        None => {
            let _ = encode::write_nil(out);
        }
    }
}

/// `[3, ch, seq, ts, {name: value|nil, ...}]` (the names are configured, so a map).
pub(super) fn indicators(
    ch: &str,
    seq: u64,
    ts: i64,
    values: &IndicatorValues,
    fields: &IndicatorFields,
) -> Bytes {
    let mut out = Vec::with_capacity(128 + ch.len());
    let _ = encode::write_array_len(&mut out, 5);
    let _ = encode::write_uint(&mut out, u64::from(INDICATORS.1));
    let _ = encode::write_str(&mut out, ch);
    let _ = encode::write_uint(&mut out, seq);
    let _ = encode::write_sint(&mut out, ts);
    let _ = encode::write_map_len(&mut out, fields.len() as u32);
    for (name, value) in fields.pairs(values) {
        let _ = encode::write_str(&mut out, name);
        write_opt_f64(&mut out, value);
    }
    Bytes::from(out)
}

/// A reply (`ack`, `error`, `pong`, `list`) as a map with the keys of its JSON object.
pub(super) fn reply<T: Serialize>(value: &T) -> Bytes {
    // The reply structs are plain (no non-string keys, no I/O): this cannot fail; an empty map
    // is a safe fallback if it ever did.
    Bytes::from(rmp_serde::to_vec_named(value).unwrap_or_else(|_| vec![0x80]))
}

/// `{"type":"snapshot","ch":..,"seq":..,("reset":true,)"data":[..]}`, the events positional.
pub(super) fn snapshot(ch: &str, seq: u64, events: &[Wire], reset: bool) -> Bytes {
    let data_len: usize = events.iter().map(|e| e.msgpack().len()).sum();
    let mut out = Vec::with_capacity(48 + ch.len() + data_len);
    let _ = encode::write_map_len(&mut out, if reset { 5 } else { 4 });
    let _ = encode::write_str(&mut out, "type");
    let _ = encode::write_str(&mut out, "snapshot");
    let _ = encode::write_str(&mut out, "ch");
    let _ = encode::write_str(&mut out, ch);
    let _ = encode::write_str(&mut out, "seq");
    let _ = encode::write_uint(&mut out, seq);
    if reset {
        let _ = encode::write_str(&mut out, "reset");
        let _ = encode::write_bool(&mut out, true);
    }
    let _ = encode::write_str(&mut out, "data");
    let _ = encode::write_array_len(&mut out, events.len() as u32);
    for e in events {
        out.extend_from_slice(e.msgpack());
    }
    Bytes::from(out)
}

/// One frame: an array of the encoded messages (always an array, also of one).
pub(super) fn frame<'a>(
    parts: impl ExactSizeIterator<Item = &'a Bytes>,
    total_len: usize,
) -> Bytes {
    let mut out = Vec::with_capacity(total_len + 5);
    let _ = encode::write_array_len(&mut out, parts.len() as u32);
    for p in parts {
        out.extend_from_slice(p);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{BarEvent, Encoding, IndicatorPeriods, Side, SymbolId, Tick};
    use crate::protocol::{
        ErrorCode, encode_ack, encode_bar, encode_error, encode_frame, encode_indicators,
        encode_snapshot, encode_tick,
    };

    fn read(b: &[u8]) -> Value {
        rmp_serde::from_slice(b).expect("valid MessagePack")
    }

    fn contract_tick() -> Tick {
        Tick {
            symbol: SymbolId(0),
            price: 189.23,
            size: 100.0,
            side: Some(Side::Buy),
            exchange_ts: 1_764_070_000_120_000_000,
            ts: 1_764_070_000_123_456_789,
        }
    }

    #[test]
    fn events_are_positional_with_their_json_values() {
        let w = encode_tick("ticks:AAPL", 102, &contract_tick());
        assert_eq!(
            read(w.msgpack()),
            json!([
                1,
                "ticks:AAPL",
                102,
                1_764_070_000_123_456_789i64,
                189.23,
                100,
                "buy",
                1_764_070_000_120_000_000i64
            ])
        );
        let t = Tick {
            side: None,
            size: 0.5,
            ..contract_tick()
        };
        let v = read(encode_tick("ticks:AAPL", 1, &t).msgpack());
        assert_eq!((&v[5], &v[6]), (&json!(0.5), &Value::Null));

        let bar = BarEvent {
            start_ms: 1_764_070_000_000,
            open: 1.0,
            high: 1.2,
            low: 0.9,
            close: 1.1,
            volume: 300.0,
            trades: 3,
            is_final: true,
        };
        assert_eq!(
            read(encode_bar("bars.1s:AAPL", 7, 9, &bar).msgpack()),
            json!([
                2,
                "bars.1s:AAPL",
                7,
                9,
                1_764_070_000_000i64,
                1.0,
                1.2,
                0.9,
                1.1,
                300,
                3,
                true
            ])
        );

        let values = IndicatorValues {
            periodic: vec![Some(1.0), None, Some(55.2), Some(f64::NAN)],
            vwap: Some(1.05),
            book: Default::default(),
            ..Default::default()
        };
        let fields = IndicatorFields::new(&IndicatorPeriods::default());
        let w = encode_indicators("indicators:AAPL", 7, 9, &values, &fields);
        // The same values as the JSON event, `nil` where it has `null` (NaN included).
        let json: Value = serde_json::from_slice(w.json()).expect("json");
        let v = read(w.msgpack());
        let head = v.as_array().map(|a| a[..4].to_vec());
        assert_eq!(
            head,
            Some(
                json!([3, "indicators:AAPL", 7, 9])
                    .as_array()
                    .unwrap()
                    .clone()
            )
        );
        for (name, value) in v[4].as_object().expect("a map of fields") {
            assert_eq!(value, &json[name], "{name}");
        }
        assert_eq!(v[4].as_object().map(|m| m.len()), Some(8));
        assert_eq!(v[4]["volatility"], Value::Null);
    }

    #[test]
    fn a_tick_is_less_than_half_its_json() {
        // The PROTOCOL.md example (docs/PROTOCOL.md quotes these sizes).
        let w = encode_tick("ticks:AAPL", 102, &contract_tick());
        assert_eq!((w.json().len(), w.msgpack().len()), (133, 46));
    }

    #[test]
    fn replies_and_snapshots_are_maps_with_the_json_keys() {
        let m = Encoding::Msgpack;
        let ch = vec!["ticks:AAPL".to_string()];
        for (json, msgpack) in [
            (
                encode_ack(Encoding::Json, Some(1), "subscribe", &ch, 7),
                encode_ack(m, Some(1), "subscribe", &ch, 7),
            ),
            (
                encode_error(Encoding::Json, None, ErrorCode::BadRequest, "no"),
                encode_error(m, None, ErrorCode::BadRequest, "no"),
            ),
        ] {
            let json: Value = serde_json::from_slice(&json).expect("json");
            assert_eq!(read(&msgpack), json);
        }
        let e = encode_tick("ticks:AAPL", 102, &contract_tick());
        let v = read(&encode_snapshot(
            m,
            "ticks:AAPL",
            102,
            std::slice::from_ref(&e),
            true,
        ));
        assert_eq!(
            v,
            json!({"type":"snapshot","ch":"ticks:AAPL","seq":102,"reset":true,
                   "data":[read(e.msgpack())]})
        );
        let v = read(&encode_snapshot(m, "ticks:AAPL", 0, &[], false));
        assert_eq!(
            v,
            json!({"type":"snapshot","ch":"ticks:AAPL","seq":0,"data":[]})
        );
    }

    #[test]
    fn a_frame_is_always_an_array_of_messages() {
        let e = encode_tick("ticks:AAPL", 102, &contract_tick());
        let one = encode_frame(Encoding::Msgpack, [e.msgpack()].into_iter(), 0);
        assert_eq!(read(&one), json!([read(e.msgpack())]));
        let two = encode_frame(Encoding::Msgpack, [e.msgpack(), e.msgpack()].into_iter(), 0);
        assert_eq!(read(&two).as_array().map(Vec::len), Some(2));
        // Past 15 messages the array header grows (array16); still one array.
        let many: Vec<&Bytes> = std::iter::repeat_n(e.msgpack(), 40).collect();
        let frame = encode_frame(Encoding::Msgpack, many.into_iter(), 0);
        assert_eq!(read(&frame).as_array().map(Vec::len), Some(40));
    }

    /// A positional event in the shape of its JSON object (the names PROTOCOL.md gives them).
    fn as_json_shape(v: Value) -> Value {
        const TICK: [&str; 8] = ["type", "ch", "seq", "ts", "price", "size", "side", "xts"];
        const BAR: [&str; 12] = [
            "type", "ch", "seq", "ts", "start", "open", "high", "low", "close", "volume", "trades",
            "final",
        ];
        let fields = v.as_array().expect("positional").clone();
        let (kind, names): (&str, &[&str]) = match fields[0].as_u64() {
            Some(1) => ("tick", &TICK),
            Some(2) => ("bar", &BAR),
            _ => ("indicators", &["type", "ch", "seq", "ts"]),
        };
        let mut object = serde_json::Map::new();
        for (name, value) in names.iter().zip(fields.iter()).skip(1) {
            object.insert((*name).to_string(), value.clone());
        }
        object.insert("type".into(), kind.into());
        if let Some(Value::Object(values)) = fields.get(4).filter(|_| kind == "indicators") {
            object.extend(values.clone());
        }
        Value::Object(object)
    }

    fn real() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            -1e12f64..1e12f64,
            (0u32..1_000_000).prop_map(|n| f64::from(n) / 100.0),
            (0i64..100_000).prop_map(|n| n as f64),
        ]
    }

    fn maybe_real() -> impl proptest::strategy::Strategy<Value = Option<f64>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            Just(Some(f64::NAN)),
            Just(Some(f64::INFINITY)),
            real().prop_map(Some)
        ]
    }

    proptest::proptest! {
        /// Whatever ingest encodes, the MessagePack form carries exactly the JSON form's values.
        #[test]
        fn msgpack_events_carry_the_json_values(
            price in real(), size in real(), side in 0u8..3, seq in proptest::prelude::any::<u64>(),
            ts in proptest::prelude::any::<i64>(), xts in proptest::prelude::any::<i64>(),
            ohlc in proptest::collection::vec(real(), 4), volume in real(),
            trades in proptest::prelude::any::<u64>(), is_final in proptest::prelude::any::<bool>(),
            values in proptest::collection::vec(maybe_real(), 5),
        ) {
            let tick = Tick {
                symbol: SymbolId(0),
                price,
                size,
                side: [Some(Side::Buy), Some(Side::Sell), None][usize::from(side)],
                exchange_ts: xts,
                ts,
            };
            let bar = BarEvent {
                start_ms: ts / 1_000_000,
                open: ohlc[0],
                high: ohlc[1],
                low: ohlc[2],
                close: ohlc[3],
                volume,
                trades,
                is_final,
            };
            let values = IndicatorValues {
                periodic: vec![values[0], values[1], values[2], values[3]],
                vwap: values[4],
                book: Default::default(),
                ..Default::default()
            };
            let fields = IndicatorFields::new(&IndicatorPeriods::default());
            for w in [
                encode_tick("ticks:X", seq, &tick),
                encode_bar("bars.1m:X", seq, ts, &bar),
                encode_indicators("indicators:X", seq, ts, &values, &fields),
            ] {
                let json: Value = serde_json::from_slice(w.json()).expect("json");
                proptest::prop_assert_eq!(as_json_shape(read(w.msgpack())), json);
            }
        }
    }
}
