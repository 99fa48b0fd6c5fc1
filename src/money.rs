//! Exact money at the edges: decimals read from the digits a client sent and written back as
//! exactly those digits, never through `f64` (which has no 0.1: 0.1 + 0.2 would be
//! 0.30000000000000004).
//!
//! In JSON a decimal is a number whose text is the decimal's digits ([`Exact`] writes it through
//! serde_json's `RawValue`); in MessagePack, which has no decimal type, it is a string of the same
//! digits. Requests may send either a JSON number or a string.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// Largest quantity or fill price accepted (so that products and sums of them stay far inside
/// the decimal's 7.9e28 range).
pub(crate) const MAX_INPUT: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0); // 1e15

/// Most digits after the point accepted in a quantity or fill price.
pub(crate) const MAX_SCALE: u32 = 12;

/// Why a decimal input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a JSON number or string: the body has the wrong shape.
    #[error("must be a JSON number or a string of one, got {0}")]
    WrongType(String),
    #[error("must be a decimal number (a JSON number or a string of digits), got {0}")]
    NotANumber(String),
    #[error("has more than {MAX_SCALE} digits after the point")]
    TooPrecise,
    #[error("must be > 0 and at most 1e15")]
    OutOfRange,
}

/// Reads a decimal from a JSON value as written: a number (`0.1`, `1e-3`) or a string of one
/// (`"0.1"`), exactly, with no rounding. Must be > 0, at most [`MAX_INPUT`], with at most
/// [`MAX_SCALE`] fraction digits.
pub(crate) fn parse_input(raw: &RawValue) -> Result<Decimal, MoneyError> {
    let text = raw.get();
    let digits = match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<&str>(text)
            .map_err(|_| MoneyError::NotANumber(text.to_owned()))?,
        Some(b'-' | b'0'..=b'9') => text,
        _ => return Err(MoneyError::WrongType(text.to_owned())),
    };
    let value = parse_digits(digits).ok_or_else(|| MoneyError::NotANumber(text.to_owned()))?;
    if value <= Decimal::ZERO || value > MAX_INPUT {
        return Err(MoneyError::OutOfRange);
    }
    if value.normalize().scale() > MAX_SCALE {
        return Err(MoneyError::TooPrecise);
    }
    Ok(value.normalize())
}

/// A plain or scientific decimal (`0.1`, `-2.5`, `1.5e-3`), exact or refused: never rounded.
pub(crate) fn parse_digits(s: &str) -> Option<Decimal> {
    let s = s.trim();
    if s.is_empty() || s.starts_with('+') {
        return None;
    }
    if s.contains(['e', 'E']) {
        // from_scientific rounds what does not fit; refuse instead, by reading it back.
        let d = Decimal::from_scientific(s).ok()?;
        let (mantissa, exp) = s.split_once(['e', 'E'])?;
        let m = Decimal::from_str_exact(mantissa).ok()?;
        let exp: i32 = exp.parse().ok()?;
        let exact = if exp >= 0 {
            m.checked_mul(Decimal::from_i128_with_scale(
                10i128.checked_pow(exp.unsigned_abs())?,
                0,
            ))?
        } else {
            m.checked_div(Decimal::from_i128_with_scale(
                10i128.checked_pow(exp.unsigned_abs())?,
                0,
            ))?
        };
        return (exact == d).then_some(d);
    }
    Decimal::from_str_exact(s).ok()
}

/// A live price (a binary float from the market data) as the decimal it prints as: the
/// shortest digits that read back as the same float, which is what the wire shows.
pub(crate) fn from_price(price: f64) -> Option<Decimal> {
    if !price.is_finite() {
        return None;
    }
    Decimal::from_str(&price.to_string()).ok()
}

/// A decimal written exactly: a JSON number of its digits, or a string of them in a binary
/// encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exact(pub Decimal);

impl Exact {
    /// The decimal's digits without trailing fraction zeros (`0.30` is `0.3`), never `-0`.
    pub fn digits(&self) -> String {
        let d = self.0.normalize();
        if d.is_zero() {
            return "0".to_owned();
        }
        d.to_string()
    }
}

impl Serialize for Exact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let digits = self.digits();
        if s.is_human_readable() {
            // Decimal's Display is always a valid JSON number: no exponent, no leading '+'.
            match RawValue::from_string(digits) {
                Ok(raw) => raw.serialize(s),
                Err(e) => Err(serde::ser::Error::custom(e)),
            }
        } else {
            s.serialize_str(&digits)
        }
    }
}

impl From<Decimal> for Exact {
    fn from(d: Decimal) -> Self {
        Exact(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn max_input_is_1e15() {
        assert_eq!(MAX_INPUT, dec("1000000000000000"));
    }

    #[test]
    fn inputs_are_read_exactly_or_refused() {
        assert_eq!(parse_input(&raw("0.1")), Ok(dec("0.1")));
        assert_eq!(parse_input(&raw("\"0.2\"")), Ok(dec("0.2")));
        assert_eq!(parse_input(&raw("1.50")), Ok(dec("1.5")));
        assert_eq!(parse_input(&raw("2.5e-3")), Ok(dec("0.0025")));
        assert_eq!(parse_input(&raw("1E3")), Ok(dec("1000")));
        assert_eq!(
            parse_input(&raw("0.000000000001")),
            Ok(dec("0.000000000001"))
        );
        let cases = [
            ("0", MoneyError::OutOfRange),
            ("-1", MoneyError::OutOfRange),
            ("1000000000000000.1", MoneyError::OutOfRange),
            ("0.0000000000001", MoneyError::TooPrecise),
            ("true", MoneyError::WrongType("true".into())),
            ("{}", MoneyError::WrongType("{}".into())),
            ("\"1,5\"", MoneyError::NotANumber("\"1,5\"".into())),
            ("\"+1\"", MoneyError::NotANumber("\"+1\"".into())),
            ("\"\"", MoneyError::NotANumber("\"\"".into())),
            ("null", MoneyError::WrongType("null".into())),
            // More digits than a decimal holds: refused, not rounded.
            (
                "0.12345678901234567890123456789",
                MoneyError::NotANumber("0.12345678901234567890123456789".into()),
            ),
            ("1e400", MoneyError::NotANumber("1e400".into())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_input(&raw(text)), Err(want), "{text}");
        }
    }

    #[test]
    fn decimals_print_as_exact_json_numbers_and_msgpack_strings() {
        let sum = dec("0.1") + dec("0.2");
        assert_eq!(serde_json::to_string(&Exact(sum)).unwrap(), "0.3");
        assert_eq!(serde_json::to_string(&Exact(dec("-2.50"))).unwrap(), "-2.5");
        assert_eq!(serde_json::to_string(&Exact(dec("-0.0"))).unwrap(), "0");
        let third = dec("1") / dec("3");
        assert_eq!(
            serde_json::to_string(&Exact(third)).unwrap(),
            "0.3333333333333333333333333333"
        );
        let packed = rmp_serde::to_vec(&Exact(sum)).unwrap();
        let back: String = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(back, "0.3");
    }

    #[test]
    fn live_prices_become_the_decimal_they_print_as() {
        assert_eq!(from_price(0.1), Some(dec("0.1")));
        assert_eq!(from_price(187.25), Some(dec("187.25")));
        assert_eq!(from_price(f64::NAN), None);
    }
}
