//! The `prediction` event of `predictions:SYM` (docs/PROTOCOL.md "Predictions"): every model's
//! forecast at one 1 s bar, each with the fields `GET /api/v1/predictions/{symbol}` answers for
//! that model (`forecast`, `interval`, `fit`), or why it cannot be fitted yet.
//!
//! JSON: `{"type":"prediction","ch","seq","ts","as_of","horizon_s","last_close","models":{..}}`;
//! MessagePack: `[8, ch, seq, ts, {as_of, horizon_s, last_close, models}]` (nested maps, like
//! `portfolio`: the models are keyed).

use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::wire::{EventType, PREDICTION};
use super::{msgpack, to_bytes};
use crate::model::Wire;
use crate::predict::{Forecast, Model, PredictError, PredictionSet};

/// The level of every prediction interval.
const LEVEL: f64 = 0.95;

/// `{"level","low","high"}`.
#[derive(Serialize)]
struct IntervalWire {
    level: f64,
    low: f64,
    high: f64,
}

/// A model's fitted parameters as a map, in the model's order.
struct ParamsWire<'a>(&'a [(String, f64)]);

impl Serialize for ParamsWire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct FitWire<'a> {
    rmse_in_sample: f64,
    rmse_walk_forward: f64,
    rmse_naive_walk_forward: f64,
    /// `null` when the naive forecast made no error.
    skill: Option<f64>,
    points: usize,
    params: ParamsWire<'a>,
}

/// One model's entry: REST's fields for it, or the reason it has no forecast.
#[derive(Serialize)]
#[serde(untagged)]
enum ModelWire<'a> {
    Fitted {
        forecast: f64,
        interval: IntervalWire,
        fit: FitWire<'a>,
    },
    Unfitted {
        /// REST's problem code for the same case (`insufficient_data`).
        error: &'static str,
        message: String,
    },
}

impl<'a> ModelWire<'a> {
    fn new(result: &'a Result<Forecast, PredictError>) -> Self {
        match result {
            Ok(f) => ModelWire::Fitted {
                forecast: f.point,
                interval: IntervalWire {
                    level: LEVEL,
                    low: f.low,
                    high: f.high,
                },
                fit: FitWire {
                    rmse_in_sample: f.rmse_in_sample,
                    rmse_walk_forward: f.rmse_walk_forward,
                    rmse_naive_walk_forward: f.rmse_naive_walk_forward,
                    skill: f.skill(),
                    points: f.points,
                    params: ParamsWire(&f.params),
                },
            },
            Err(e) => ModelWire::Unfitted {
                error: "insufficient_data",
                message: e.to_string(),
            },
        }
    }
}

struct ModelsWire<'a>(&'a [(Model, Result<Forecast, PredictError>)]);

impl Serialize for ModelsWire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (model, result) in self.0 {
            m.serialize_entry(model.as_str(), &ModelWire::new(result))?;
        }
        m.end()
    }
}

/// The fields after `ts`.
#[derive(Serialize)]
struct PredictionFields<'a> {
    as_of: i64,
    horizon_s: u64,
    last_close: f64,
    models: ModelsWire<'a>,
}

#[derive(Serialize)]
struct PredictionWire<'a, F: Serialize> {
    #[serde(rename = "type")]
    kind: EventType,
    ch: &'a str,
    seq: u64,
    ts: i64,
    #[serde(flatten)]
    fields: &'a F,
}

/// A `prediction` event in both encodings.
pub fn encode_prediction(ch: &str, seq: u64, ts: i64, set: &PredictionSet) -> Wire {
    let fields = PredictionFields {
        as_of: set.as_of_ms,
        horizon_s: set.horizon_s,
        last_close: set.last_close,
        models: ModelsWire(&set.models),
    };
    wire(ch, seq, ts, &fields)
}

fn wire<F: Serialize>(ch: &str, seq: u64, ts: i64, fields: &F) -> Wire {
    let json = to_bytes(&PredictionWire {
        kind: PREDICTION,
        ch,
        seq,
        ts,
        fields,
    });
    Wire::new(json, msgpack::reply(&(PREDICTION, ch, seq, ts, fields)))
}

/// The sequencing of a `prediction` event read back, and its fields after `ts` as they came.
#[derive(Deserialize)]
pub(super) struct DecodedPrediction {
    pub(super) seq: u64,
    pub(super) ts: i64,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Reads a `prediction` event's JSON (an edge receives it from the stream).
pub(super) fn decode(bytes: &[u8]) -> Result<DecodedPrediction, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The MessagePack form of a `prediction` event received as JSON: its fields as they came (the
/// stream's JSON parses to the exact numbers: `float_roundtrip`).
pub(super) fn msgpack_of(ch: &str, json: &[u8]) -> Bytes {
    match decode(json) {
        Ok(mut d) => {
            for k in ["type", "ch"] {
                d.rest.remove(k);
            }
            msgpack::reply(&(PREDICTION, ch, d.seq, d.ts, &d.rest))
        }
        Err(_) => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn set() -> PredictionSet {
        let closes: Vec<f64> = (0..40)
            .map(|i| 100.0 + ((i * 7919) % 13) as f64 * 0.1 + i as f64 * 0.01)
            .collect();
        PredictionSet::compute(&closes, 1_700_000_039_000, 3, 60).unwrap()
    }

    #[test]
    fn json_carries_every_model_as_rest_names_it() {
        let s = set();
        let w = encode_prediction("predictions:A", 4, 9, &s);
        let v: Value = serde_json::from_slice(w.json()).unwrap();
        assert_eq!(v["type"], "prediction");
        assert_eq!(
            (&v["ch"], &v["seq"], &v["ts"]),
            (&json!("predictions:A"), &json!(4), &json!(9))
        );
        assert_eq!(v["as_of"], 1_700_000_039_000i64);
        assert_eq!(v["horizon_s"], 60);
        assert_eq!(v["last_close"], json!(s.last_close));
        let Ok(ar) = &s.models[0].1 else {
            panic!("AR fits 40 closes")
        };
        let got = &v["models"]["ar"];
        assert_eq!(got["forecast"], json!(ar.point));
        assert_eq!(
            got["interval"],
            json!({"level": 0.95, "low": ar.low, "high": ar.high})
        );
        assert_eq!(
            got["fit"]["rmse_naive_walk_forward"],
            json!(ar.rmse_naive_walk_forward)
        );
        assert_eq!(got["fit"]["skill"], json!(ar.skill()));
        assert_eq!(got["fit"]["points"], 40);
        assert_eq!(got["fit"]["params"]["phi_3"], json!(ar.params[3].1));
        assert!(v["models"]["ewma"]["forecast"].is_f64(), "{v}");
    }

    #[test]
    fn an_unfitted_model_says_why() {
        let s = PredictionSet::compute(&[1.0, 2.0, 3.0, 4.0], 5, 3, 1).unwrap();
        let v: Value =
            serde_json::from_slice(encode_prediction("predictions:A", 1, 2, &s).json()).unwrap();
        assert_eq!(
            v["models"]["ar"],
            json!({"error": "insufficient_data", "message": "need at least 16 closes, have 4"})
        );
        assert!(v["models"]["ewma"]["fit"].is_object(), "{v}");
    }

    #[test]
    fn msgpack_is_the_json_after_ts_and_an_edge_rebuilds_it() {
        let w = encode_prediction("predictions:A", 4, 9, &set());
        let json: Value = serde_json::from_slice(w.json()).unwrap();
        let packed: Value = rmp_serde::from_slice(w.msgpack()).unwrap();
        assert_eq!(packed[0], 8);
        assert_eq!(
            (&packed[1], &packed[2], &packed[3]),
            (&json!("predictions:A"), &json!(4), &json!(9))
        );
        for k in ["as_of", "horizon_s", "last_close", "models"] {
            assert_eq!(packed[4][k], json[k], "{k}");
        }
        assert_eq!(packed.as_array().map(Vec::len), Some(5));
        let rebuilt: Value = rmp_serde::from_slice(&msgpack_of("predictions:A", w.json())).unwrap();
        assert_eq!(rebuilt, packed);
    }
}
