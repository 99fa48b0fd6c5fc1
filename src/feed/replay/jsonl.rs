//! JSONL replay records: one JSON object per line with `ts`, `symbol`, `price`, `size` and
//! optionally `side`, under any of the names of [`FIELDS`] (`timestamp`, `px`, `qty`, ...;
//! case-insensitive); extra keys are ignored, two keys naming one field are refused. `price`/`size`
//! may be numbers or numeric strings, `ts` an integer (by the magnitude rule of
//! [`crate::timestamp`]) or a string; `side` absent, `null` or `""` means the tick has none.

use serde_json::Value;

use super::fields::{
    FIELDS, PRICE, RecordError, SIDE, SIZE, SYMBOL, TS, field_of, finish, parse_number, parse_side,
    parse_ts,
};
use crate::model::RawTick;
use crate::timestamp;

/// Parses one line.
pub(super) fn parse(line: &[u8]) -> Result<RawTick, RecordError> {
    let v: Value = serde_json::from_slice(line).map_err(|e| RecordError::Json(e.to_string()))?;
    let Value::Object(obj) = v else {
        return Err(RecordError::Json("expected an object".into()));
    };
    // The value of each field, by any of its names; two names for one field are ambiguous.
    let mut found: [Option<(&str, &Value)>; 5] = [None; 5];
    for (key, value) in &obj {
        let Some(f) = field_of(key) else { continue };
        if let Some((other, _)) = found[f] {
            return Err(RecordError::field(
                FIELDS[f].0,
                format!("keys `{other}` and `{key}` both mean `{}`", FIELDS[f].0),
            ));
        }
        found[f] = Some((key, value));
    }
    let index = |name: &'static str| match name {
        "ts" => TS,
        "symbol" => SYMBOL,
        "price" => PRICE,
        "size" => SIZE,
        _ => SIDE,
    };
    let field = |name: &'static str| {
        found[index(name)]
            .map(|(_, v)| v)
            .ok_or(RecordError::Missing { field: name })
    };
    let number = |name: &'static str| -> Result<f64, RecordError> {
        match field(name)? {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| RecordError::field(name, "not a finite number")),
            Value::String(s) => parse_number(name, s),
            other => Err(RecordError::field(name, format!("not a number: {other}"))),
        }
    };
    let text = |name: &'static str| -> Result<&str, RecordError> {
        field(name)?
            .as_str()
            .ok_or_else(|| RecordError::field(name, "expected a string"))
    };
    let exchange_ts = match field("ts")? {
        Value::Number(n) => match n.as_i64() {
            Some(i) => timestamp::from_integer(i).map_err(|e| RecordError::field("ts", e))?,
            None => return Err(RecordError::field("ts", "must be an integer")),
        },
        Value::String(s) => parse_ts(s)?,
        other => {
            return Err(RecordError::field(
                "ts",
                format!("expected an integer or a string, got {other}"),
            ));
        }
    };
    finish(RawTick {
        exchange_ts,
        symbol: text("symbol")?.to_owned(),
        price: number("price")?,
        size: number("size")?,
        side: match found[SIDE] {
            None | Some((_, Value::Null)) => None,
            Some(_) => parse_side(text("side")?)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::ReplayFormat;
    use super::super::records::{MAX_LINE_BYTES, check, err_contains};
    use crate::model::{RawTick, Side};

    fn tick(sym: &str, price: f64, size: f64, side: Side, ts: i64) -> RawTick {
        RawTick::new(sym, price, size, side, ts)
    }

    const MS: i64 = 1_000_000;

    #[test]
    fn jsonl_good_and_bad_lines() {
        let long = format!(
            r#"{{"ts":1,"symbol":"A","price":1,"size":1,"side":"buy","pad":"{}"}}"#,
            "x".repeat(MAX_LINE_BYTES)
        );
        let text = [
            r#"{"ts":1700000000000,"symbol":"AAPL","price":189.5,"size":100,"side":"buy"}"#,
            "",
            r#"{"ts":"2024-01-02T03:04:05Z","symbol":"ETH-USD","price":"2300.1","size":"0.5","side":"sell","extra":true}"#,
            r#"{"ts":"1700000000123456789","symbol":"MSFT","price":1,"size":1,"side":"sell"}"#,
            "{not json",
            "[1,2]",
            r#"{"symbol":"AAPL","price":1,"size":1,"side":"buy"}"#,
            r#"{"ts":1.5,"symbol":"AAPL","price":1,"size":1,"side":"buy"}"#,
            r#"{"ts":1,"symbol":"AAPL","price":true,"size":1,"side":"buy"}"#,
            r#"{"ts":1,"symbol":7,"price":1,"size":1,"side":"buy"}"#,
            r#"{"ts":1,"symbol":"AAPL","price":1,"size":0,"side":"buy"}"#,
            &long,
            r#"{"ts":2,"symbol":"B","price":2,"size":2,"side":"sell"}"#,
        ]
        .join("\r\n");
        let got = check(ReplayFormat::Jsonl, &text);
        assert_eq!(got.len(), 12, "{got:#?}");
        assert_eq!(
            got[0],
            (
                1,
                Ok(tick(
                    "AAPL",
                    189.5,
                    100.0,
                    Side::Buy,
                    1_700_000_000_000 * MS
                ))
            )
        );
        assert_eq!(
            got[1],
            (
                3,
                Ok(tick(
                    "ETH-USD",
                    2300.1,
                    0.5,
                    Side::Sell,
                    1_704_164_645_000 * MS
                ))
            )
        );
        assert_eq!(
            got[2],
            (
                4,
                Ok(tick(
                    "MSFT",
                    1.0,
                    1.0,
                    Side::Sell,
                    1_700_000_000_123_456_789
                ))
            )
        );
        err_contains(&got[3], 5, "not a JSON object");
        err_contains(&got[4], 6, "expected an object");
        err_contains(&got[5], 7, "`ts` is missing");
        err_contains(&got[6], 8, "must be an integer");
        err_contains(&got[7], 9, "field `price`");
        err_contains(&got[8], 10, "field `symbol`");
        err_contains(&got[9], 11, "size");
        err_contains(&got[10], 12, "longer than");
        assert_eq!(got[11], (13, Ok(tick("B", 2.0, 2.0, Side::Sell, 2 * MS))));
    }

    #[test]
    fn jsonl_common_key_names_and_no_side() {
        let text = [
            r#"{"timestamp":5,"symbol":"X","px":"1.5","qty":2}"#,
            r#"{"time":6,"symbol":"X","price":1.5,"volume":2,"side":null}"#,
            r#"{"ts":7,"symbol":"X","price":1.5,"Quantity":2,"side":"sell"}"#,
            r#"{"ts":8,"time":9,"symbol":"X","price":1.5,"size":2}"#,
            r#"{"ts":8,"symbol":"X","price":1.5,"px":1.6,"size":2}"#,
        ]
        .join("\n");
        let got = check(ReplayFormat::Jsonl, &text);
        let no_side = |ts| {
            let mut t = tick("X", 1.5, 2.0, Side::Buy, ts * MS);
            t.side = None;
            t
        };
        assert_eq!(got[0], (1, Ok(no_side(5))));
        assert_eq!(got[1], (2, Ok(no_side(6))));
        assert_eq!(got[2], (3, Ok(tick("X", 1.5, 2.0, Side::Sell, 7 * MS))));
        err_contains(&got[3], 4, "both mean `ts`");
        err_contains(&got[4], 5, "keys `price` and `px` both mean `price`");
    }
}
