//! CSV replay records: a header naming the columns (any order, case-insensitive, extra columns
//! ignored), then one trade per line. Fields are split by the `csv` crate (RFC 4180 quoting:
//! `"a,b"`, `"say ""hi"""`) and trimmed.
//!
//! Each line is split on its own (see [`super::records`]), so a quote left open cannot swallow
//! the lines after it: a line with an odd number of `"` is refused as an unterminated quote. No
//! tick field can contain a `"`, so this never refuses a record that could have been valid.

use ::csv::{ReaderBuilder, StringRecord, Trim};

use super::fields::{HeaderError, RecordError, finish, parse_number, parse_side, parse_ts};
use crate::model::RawTick;

/// Column positions of a CSV file, from its header.
#[derive(Debug, Clone, Copy)]
struct Columns {
    ts: usize,
    symbol: usize,
    price: usize,
    size: usize,
    side: usize,
    /// Fields every row must have (the header's width).
    width: usize,
}

/// The rows of one CSV file: its columns and a field buffer reused between rows.
pub(super) struct CsvRows {
    cols: Columns,
    record: StringRecord,
}

// === impl CsvRows ===

impl CsvRows {
    /// Reads the header line.
    pub(super) fn from_header(line: &[u8]) -> Result<Self, HeaderError> {
        let mut names = StringRecord::new();
        split(line, &mut names).map_err(|e| HeaderError(e.to_string()))?;
        let find = |name: &str| {
            names
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .ok_or_else(|| HeaderError(format!("no `{name}` column")))
        };
        let cols = Columns {
            ts: find("ts")?,
            symbol: find("symbol")?,
            price: find("price")?,
            size: find("size")?,
            side: find("side")?,
            width: names.len(),
        };
        Ok(Self {
            cols,
            record: StringRecord::with_capacity(64, cols.width),
        })
    }

    /// Parses one row.
    pub(super) fn parse(&mut self, line: &[u8]) -> Result<RawTick, RecordError> {
        split(line, &mut self.record)?;
        let cols = self.cols;
        if self.record.len() != cols.width {
            return Err(RecordError::FieldCount {
                expected: cols.width,
                got: self.record.len(),
            });
        }
        let get = |i: usize| self.record.get(i).unwrap_or("");
        finish(RawTick {
            exchange_ts: parse_ts(get(cols.ts))?,
            symbol: get(cols.symbol).to_owned(),
            price: parse_number("price", get(cols.price))?,
            size: parse_number("size", get(cols.size))?,
            side: parse_side(get(cols.side))?,
        })
    }
}

/// Splits one line into trimmed fields.
fn split(line: &[u8], record: &mut StringRecord) -> Result<(), RecordError> {
    if line.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
        return Err(RecordError::field("line", "unterminated quote"));
    }
    // A reader per line is what keeps records to one line; building one is cheap next to the
    // parse (the buffer is sized to the line, which is already in memory).
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(Trim::All)
        .buffer_capacity(line.len().max(1))
        .from_reader(line);
    match reader.read_record(record) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ::csv::ErrorKind::Utf8 { .. }) => {
            Err(RecordError::field("line", "not UTF-8"))
        }
        Err(e) => Err(RecordError::field("line", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ReplayFormat;
    use super::super::records::{Records, check, err_contains};
    use crate::model::{RawTick, Side};

    fn tick(sym: &str, price: f64, size: f64, side: Side, ts: i64) -> RawTick {
        RawTick::new(sym, price, size, side, ts)
    }

    const MS: i64 = 1_000_000;

    #[test]
    fn csv_good_and_bad_lines() {
        let text = r#"ts,symbol,price,size,side
1700000000000,AAPL,189.5,100,buy

1700000000123456789, MSFT ,410.25,5,sell
2024-01-02T03:04:05.5Z,BTC-USD,42000.5,0.25,B
1700000000000,AAPL,189.5,100
1700000000000,AAPL,abc,100,buy
1700000000000,AAPL,189.5,-1,buy
1700000000000,aapl,189.5,1,buy
1700000000000,AAPL,189.5,1,hold
yesterday,AAPL,189.5,1,buy
0,AAPL,189.5,1,buy
1700000000000,AAPL,0,1,buy
1700000000000,AAPL,NaN,1,buy
"1700000000000","BRK.B","410.5","3",sell
1700000000000,"AAPL,189.5,1,buy
1700000000000,"AAPL"x,189.5,1,buy
1700000000000,"BRK ""B""",1,1,buy
1700000000000,"BRK,B",1,1,buy
1700000000000,AAPL, "410.5" ,1,buy
"#;
        let got = check(ReplayFormat::Csv, text);
        assert_eq!(got.len(), 18, "{got:#?}");
        assert_eq!(
            got[0],
            (
                2,
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
                4,
                Ok(tick(
                    "MSFT",
                    410.25,
                    5.0,
                    Side::Sell,
                    1_700_000_000_123_456_789
                ))
            )
        );
        assert_eq!(
            got[2],
            (
                5,
                Ok(tick(
                    "BTC-USD",
                    42000.5,
                    0.25,
                    Side::Buy,
                    1_704_164_645_500 * MS
                ))
            )
        );
        err_contains(&got[3], 6, "expected 5 fields, got 4");
        err_contains(&got[4], 7, "field `price`");
        err_contains(&got[5], 8, "size");
        err_contains(&got[6], 9, "invalid symbol");
        err_contains(&got[7], 10, "field `side`");
        err_contains(&got[8], 11, "field `ts`");
        err_contains(&got[9], 12, "field `ts`");
        err_contains(&got[10], 13, "price");
        err_contains(&got[11], 14, "price");
        assert_eq!(
            got[12],
            (
                15,
                Ok(tick(
                    "BRK.B",
                    410.5,
                    3.0,
                    Side::Sell,
                    1_700_000_000_000 * MS
                ))
            )
        );
        err_contains(&got[13], 16, "unterminated quote");
        // RFC 4180 leaves text after a closing quote undefined; the csv crate keeps it in the
        // field (`AAPLx`), which is then not a symbol.
        err_contains(&got[14], 17, "invalid symbol");
        // Quoted quotes and commas are read as RFC 4180 says, then judged as symbols.
        err_contains(&got[15], 18, r#"invalid symbol "BRK \"B\"""#);
        err_contains(&got[16], 19, r#"invalid symbol "BRK,B""#);
        // A quote opens a field only as its first character: ` "410.5" ` is not quoted.
        err_contains(&got[17], 20, "field `price`");
    }

    #[test]
    fn csv_columns_in_any_order_and_missing_columns_refused() {
        let got = check(
            ReplayFormat::Csv,
            "side,SIZE,price,symbol,ts,venue\nsell,2,3.5,X,5,XNAS\n",
        );
        assert_eq!(got, vec![(2, Ok(tick("X", 3.5, 2.0, Side::Sell, 5 * MS)))]);
        for header in ["ts,symbol,price,size\n", ""] {
            let err = Records::new(header.as_bytes(), ReplayFormat::Csv)
                .err()
                .expect("refused");
            assert!(
                err.to_string().contains("side") || header.is_empty(),
                "{err}"
            );
        }
        let err = Records::new(&b"\n\nts,\"symbol\n"[..], ReplayFormat::Csv)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("unterminated quote"), "{err}");
    }
}
