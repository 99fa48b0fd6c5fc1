//! The indicator fields of the wire: `sma_N`, `ema_N` and `rsi_N`, named after the configured
//! periods (`sma_20` by default), then `volatility` and `vwap`, then the order book's `mid`,
//! `spread` and `imbalance`. The `indicators` event and
//! `GET /api/v1/indicators/{symbol}` both build their fields here, so the two cannot drift.

use serde_json::{Map, Number, Value};

use crate::model::{IndicatorPeriods, IndicatorValues};

/// The wire names of one server run's indicator fields, made once: ingest encodes every
/// `indicators` event with them, so the names are not formatted per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorFields {
    sma: String,
    ema: String,
    rsi: String,
}

impl IndicatorFields {
    pub fn new(periods: &IndicatorPeriods) -> Self {
        Self {
            sma: format!("sma_{}", periods.sma),
            ema: format!("ema_{}", periods.ema),
            rsi: format!("rsi_{}", periods.rsi),
        }
    }

    /// Adds every indicator of `values` to `object` under its wire name: `null` while it warms
    /// up, never a made-up number.
    pub(crate) fn insert(&self, object: &mut Map<String, Value>, values: &IndicatorValues) {
        object.insert(self.sma.clone(), number(values.sma));
        object.insert(self.ema.clone(), number(values.ema));
        object.insert(self.rsi.clone(), number(values.rsi));
        object.insert("volatility".into(), number(values.volatility));
        object.insert("vwap".into(), number(values.vwap));
        object.insert("mid".into(), number(values.book.mid));
        object.insert("spread".into(), number(values.book.spread));
        object.insert("imbalance".into(), number(values.book.imbalance));
    }
}

impl IndicatorFields {
    /// Every indicator of `values` with its wire name, in the order of the JSON object; `None`
    /// while it warms up (or when it is not finite: JSON has no NaN, and both encodings agree).
    #[cfg(test)]
    pub(crate) fn pairs<'a>(&'a self, values: &IndicatorValues) -> [(&'a str, Option<f64>); 8] {
        let finite = |x: Option<f64>| x.filter(|v| v.is_finite());
        [
            (&self.sma, finite(values.sma)),
            (&self.ema, finite(values.ema)),
            (&self.rsi, finite(values.rsi)),
            ("volatility", finite(values.volatility)),
            ("vwap", finite(values.vwap)),
            ("mid", finite(values.book.mid)),
            ("spread", finite(values.book.spread)),
            ("imbalance", finite(values.book.imbalance)),
        ]
    }

    /// The indicator values of an encoded event (the inverse of [`IndicatorFields::insert`]); a
    /// field that is missing or not a number reads as still warming up.
    pub(crate) fn read(&self, object: &Map<String, Value>) -> IndicatorValues {
        let get = |k: &str| object.get(k).and_then(Value::as_f64);
        IndicatorValues {
            sma: get(&self.sma),
            ema: get(&self.ema),
            rsi: get(&self.rsi),
            volatility: get("volatility"),
            vwap: get("vwap"),
            book: crate::book::TopOfBook {
                mid: get("mid"),
                spread: get("spread"),
                imbalance: get("imbalance"),
            },
        }
    }
}

/// A JSON number, or `null` for a missing or non-finite value (JSON has no NaN).
fn number(x: Option<f64>) -> Value {
    x.and_then(Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_named_after_the_periods() {
        let fields = IndicatorFields::new(&IndicatorPeriods {
            sma: 3,
            ema: 5,
            rsi: 2,
            volatility: 7,
        });
        let mut m = Map::new();
        let values = IndicatorValues {
            sma: Some(1.5),
            ema: None,
            rsi: Some(f64::NAN),
            volatility: Some(0.25),
            vwap: Some(2.0),
            book: crate::book::TopOfBook {
                mid: Some(10.5),
                spread: None,
                imbalance: Some(-0.5),
            },
        };
        fields.insert(&mut m, &values);
        assert_eq!(
            Value::Object(m),
            json!({"sma_3":1.5,"ema_5":null,"rsi_2":null,"volatility":0.25,"vwap":2.0,
                "mid":10.5,"spread":null,"imbalance":-0.5})
        );
    }
}
