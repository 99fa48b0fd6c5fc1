//! The indicator fields of the wire: `sma_N` for each configured SMA period, then `ema_N`, then
//! `rsi_N` (`pipeline.indicators`; `sma_20`, `ema_20`, `rsi_14` by default), then `volatility`
//! (the first volatility window; any further window w is `volatility_w`) and `vwap`, then the
//! order book's `mid`, `spread` and `imbalance`. The `indicators` event, the rows of indicator
//! history and `GET /api/v1/indicators/{symbol}` all build their fields here, so they cannot
//! drift.

use serde_json::{Map, Number, Value};

use crate::model::{IndicatorPeriods, IndicatorValues};

/// The wire names of one server run's indicator fields, made once: ingest encodes every
/// `indicators` event with them, so the names are not formatted per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorFields {
    /// The bar-close fields, in [`IndicatorPeriods`]' order (as `IndicatorValues::periodic`).
    periodic: Vec<String>,
}

impl IndicatorFields {
    pub fn new(periods: &IndicatorPeriods) -> Self {
        let named = |prefix: &str, list: &[usize]| -> Vec<String> {
            list.iter().map(|n| format!("{prefix}_{n}")).collect()
        };
        let mut periodic = named("sma", &periods.sma);
        periodic.extend(named("ema", &periods.ema));
        periodic.extend(named("rsi", &periods.rsi));
        periodic.extend(periods.volatility.iter().enumerate().map(|(i, n)| {
            if i == 0 {
                "volatility".to_owned()
            } else {
                format!("volatility_{n}")
            }
        }));
        Self { periodic }
    }

    /// Every field name, in the order of the JSON object.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.periodic
            .iter()
            .map(String::as_str)
            .chain(["vwap", "mid", "spread", "imbalance"])
    }

    /// Adds every indicator of `values` to `object` under its wire name: `null` while it warms
    /// up, never a made-up number.
    pub(crate) fn insert(&self, object: &mut Map<String, Value>, values: &IndicatorValues) {
        self.insert_with(object, &values.periodic, values);
    }

    /// [`IndicatorFields::insert`] with other bar-close values (a history row's: those right
    /// after its bar closed) beside `values`' VWAP and book.
    pub(crate) fn insert_with(
        &self,
        object: &mut Map<String, Value>,
        periodic: &[Option<f64>],
        values: &IndicatorValues,
    ) {
        for (name, value) in self.pairs_with(periodic, values) {
            object.insert(name.to_owned(), number(value));
        }
    }

    /// How many fields an event has.
    pub(crate) fn len(&self) -> usize {
        self.periodic.len() + 4
    }

    /// Every indicator of `values` with its wire name, in the order of the JSON object
    /// ([`IndicatorFields::len`] of them); `None` while it warms up (or when it is not finite:
    /// JSON has no NaN, and both encodings agree).
    pub(crate) fn pairs<'a>(
        &'a self,
        values: &'a IndicatorValues,
    ) -> impl Iterator<Item = (&'a str, Option<f64>)> {
        self.pairs_with(&values.periodic, values)
    }

    fn pairs_with<'a>(
        &'a self,
        periodic: &'a [Option<f64>],
        values: &IndicatorValues,
    ) -> impl Iterator<Item = (&'a str, Option<f64>)> {
        let fixed = [
            values.vwap,
            values.book.mid,
            values.book.spread,
            values.book.imbalance,
        ];
        let n = self.periodic.len();
        self.names().enumerate().map(move |(i, name)| {
            let value = match i.checked_sub(n) {
                None => periodic.get(i).copied().flatten(),
                Some(j) => fixed[j],
            };
            (name, value.filter(|v| v.is_finite()))
        })
    }

    /// One history row's fields as a JSON object's text (what the store keeps per 1 s close).
    pub(crate) fn row_json(&self, periodic: &[Option<f64>], values: &IndicatorValues) -> String {
        let mut m = Map::new();
        self.insert_with(&mut m, periodic, values);
        Value::Object(m).to_string()
    }

    /// The indicator values of an encoded event (the inverse of [`IndicatorFields::insert`]); a
    /// field that is missing or not a number reads as still warming up.
    pub(crate) fn read(&self, object: &Map<String, Value>) -> IndicatorValues {
        let get = |k: &str| object.get(k).and_then(Value::as_f64);
        IndicatorValues {
            periodic: self.periodic.iter().map(|k| get(k)).collect(),
            vwap: get("vwap"),
            book: crate::book::TopOfBook {
                mid: get("mid"),
                spread: get("spread"),
                imbalance: get("imbalance"),
            },
            closes: Vec::new(),
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
            sma: vec![3],
            ema: vec![5],
            rsi: vec![2],
            volatility: vec![7],
        });
        let mut m = Map::new();
        let values = IndicatorValues {
            periodic: vec![Some(1.5), None, Some(f64::NAN), Some(0.25)],
            vwap: Some(2.0),
            book: crate::book::TopOfBook {
                mid: Some(10.5),
                spread: None,
                imbalance: Some(-0.5),
            },
            closes: Vec::new(),
        };
        fields.insert(&mut m, &values);
        assert_eq!(
            Value::Object(m.clone()),
            json!({"sma_3":1.5,"ema_5":null,"rsi_2":null,"volatility":0.25,"vwap":2.0,
                "mid":10.5,"spread":null,"imbalance":-0.5})
        );
        let back = fields.read(&m);
        assert_eq!(back.periodic, vec![Some(1.5), None, None, Some(0.25)]);
    }

    #[test]
    fn several_periods_name_a_field_each_in_order() {
        let fields = IndicatorFields::new(&IndicatorPeriods {
            sma: vec![20, 50, 200],
            ema: vec![20],
            rsi: vec![14, 7],
            volatility: vec![20, 60],
        });
        let names: Vec<&str> = fields.names().collect();
        assert_eq!(
            names,
            [
                "sma_20",
                "sma_50",
                "sma_200",
                "ema_20",
                "rsi_14",
                "rsi_7",
                "volatility",
                "volatility_60",
                "vwap",
                "mid",
                "spread",
                "imbalance"
            ]
        );
        // Values shorter than the fields (a symbol not seen yet) read as warming up.
        let values = IndicatorValues {
            periodic: vec![Some(1.0)],
            ..IndicatorValues::default()
        };
        let row: Value =
            serde_json::from_str(&fields.row_json(&[Some(4.0)], &values)).expect("json");
        assert_eq!(row["sma_20"], json!(4.0));
        assert_eq!(row["sma_50"], Value::Null);
        assert_eq!(row["volatility_60"], Value::Null);
        assert_eq!(row.as_object().map(Map::len), Some(12));
        let v1 = IndicatorFields::new(&IndicatorPeriods::default());
        let names: Vec<&str> = v1.names().collect();
        assert_eq!(
            names,
            [
                "sma_20",
                "ema_20",
                "rsi_14",
                "volatility",
                "vwap",
                "mid",
                "spread",
                "imbalance"
            ]
        );
    }
}
