//! CSV replay records: a header naming the columns (any order, case-insensitive, the names of
//! [`FIELDS`]: `ts`/`timestamp`/`time`, `symbol`, `price`/`px`, `size`/`qty`/`quantity`/`volume`,
//! and optionally `side`; other columns are ignored), then one trade per line. Fields are split by
//! the `csv` crate (RFC 4180 quoting: `"a,b"`, `"say ""hi"""`) and trimmed. Two columns that name
//! the same field (`price` and `px`) are refused: which one is meant is a guess.
//!
//! Each line is split on its own (see [`super::records`]), so a quote left open cannot swallow
//! the lines after it: a line with an odd number of `"` is refused as an unterminated quote. No
//! tick field can contain a `"`, so this never refuses a record that could have been valid.
//! A bad field is reported with its column: `column 3 \`px\` (price): not a number: "abc"`.

use std::io::{Cursor, SeekFrom};

use ::csv::{Position, ReaderBuilder, StringRecord, Trim};

use super::fields::{
    FIELDS, HeaderError, PRICE, RecordError, SIDE, SIZE, SYMBOL, TS, accepted, field_of, finish,
    parse_number, parse_side, parse_ts,
};
use crate::ingest::TickError;
use crate::model::RawTick;

/// Column positions of a CSV file, from its header.
#[derive(Debug, Clone)]
struct Columns {
    /// Position of each field of [`FIELDS`]; `side` may be absent.
    at: [Option<usize>; 5],
    /// The header's names, for messages.
    names: Vec<String>,
    /// Fields every row must have (the header's width).
    width: usize,
}

/// The rows of one CSV file: its columns and a field buffer reused between rows.
pub(super) struct CsvRows {
    cols: Columns,
    record: StringRecord,
    splitter: LineSplitter,
}

// === impl CsvRows ===

impl CsvRows {
    /// Reads the header line.
    pub(super) fn from_header(line: &[u8]) -> Result<Self, HeaderError> {
        let mut splitter = LineSplitter::new();
        let mut names = StringRecord::new();
        splitter
            .split(line, &mut names)
            .map_err(|e| HeaderError(e.to_string()))?;
        let mut at: [Option<usize>; 5] = [None; 5];
        for (i, name) in names.iter().enumerate() {
            let Some(field) = field_of(name) else {
                continue;
            };
            if let Some(j) = at[field] {
                return Err(HeaderError(format!(
                    "columns {} `{}` and {} `{name}` both mean `{}`; keep one or rename the other",
                    j + 1,
                    &names[j],
                    i + 1,
                    FIELDS[field].0
                )));
            }
            at[field] = Some(i);
        }
        for field in [TS, SYMBOL, PRICE, SIZE] {
            if at[field].is_none() {
                return Err(HeaderError(format!(
                    "no `{}` column (name it {})",
                    FIELDS[field].0,
                    accepted(field)
                )));
            }
        }
        let cols = Columns {
            at,
            names: names.iter().map(str::to_owned).collect(),
            width: names.len(),
        };
        Ok(Self {
            record: StringRecord::with_capacity(64, cols.width),
            cols,
            splitter,
        })
    }

    /// Parses one row.
    pub(super) fn parse(&mut self, line: &[u8]) -> Result<RawTick, RecordError> {
        self.splitter.split(line, &mut self.record)?;
        let cols = &self.cols;
        if self.record.len() != cols.width {
            return Err(RecordError::FieldCount {
                expected: cols.width,
                got: self.record.len(),
            });
        }
        let get = |field: usize| {
            cols.at[field]
                .and_then(|i| self.record.get(i))
                .unwrap_or("")
        };
        let at = |field: usize| move |e: RecordError| cols.column(field, e);
        let tick = RawTick {
            exchange_ts: parse_ts(get(TS)).map_err(at(TS))?,
            symbol: get(SYMBOL).to_owned(),
            price: parse_number("price", get(PRICE)).map_err(at(PRICE))?,
            size: parse_number("size", get(SIZE)).map_err(at(SIZE))?,
            side: parse_side(get(SIDE)).map_err(at(SIDE))?,
        };
        finish(tick).map_err(|e| {
            let field = match &e {
                RecordError::Tick(TickError::Symbol(_)) => SYMBOL,
                RecordError::Tick(TickError::Price(_)) => PRICE,
                RecordError::Tick(TickError::Size(_)) => SIZE,
                RecordError::Tick(TickError::Time(_)) => TS,
                _ => return e,
            };
            cols.column(field, e)
        })
    }
}

// === impl Columns ===

impl Columns {
    /// `e`, about `field`, restated with the column that holds it.
    fn column(&self, field: usize, e: RecordError) -> RecordError {
        let Some(i) = self.at[field] else {
            return e;
        };
        let message = match e {
            RecordError::Field { message, .. } => message,
            other => other.to_string(),
        };
        RecordError::Column {
            column: i + 1,
            header: self.names.get(i).cloned().unwrap_or_default(),
            field: FIELDS[field].0,
            message,
        }
    }
}

/// Splits lines into trimmed fields, one line at a time: a CSV reader over a buffer that holds
/// only the current line, so a record never spans lines. The reader is built once (building
/// one compiles its state machine, which cost more than parsing the line: a reader per line
/// was 58 % of an import's CPU) and rewound for each line.
struct LineSplitter {
    /// Boxed: the reader's state is large, and `Records` holds a `CsvRows` inline.
    reader: Box<::csv::Reader<Cursor<Vec<u8>>>>,
}

impl LineSplitter {
    fn new() -> Self {
        Self {
            reader: Box::new(
                ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .trim(Trim::All)
                    .from_reader(Cursor::new(Vec::new())),
            ),
        }
    }

    /// Splits `line` into `record`.
    fn split(&mut self, line: &[u8], record: &mut StringRecord) -> Result<(), RecordError> {
        if line.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
            return Err(RecordError::field("line", "unterminated quote"));
        }
        let source = self.reader.get_mut().get_mut();
        source.clear();
        source.extend_from_slice(line);
        // Rewinding drops the reader's buffer and resets its parser and end-of-input state.
        let read = self
            .reader
            .seek_raw(SeekFrom::Start(0), Position::new())
            .and_then(|()| self.reader.read_record(record));
        match read {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), ::csv::ErrorKind::Utf8 { .. }) => {
                Err(RecordError::field("line", "not UTF-8"))
            }
            Err(e) => Err(RecordError::field("line", e)),
        }
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
        err_contains(&got[4], 7, "column 3 `price` (price): not a number");
        err_contains(&got[5], 8, "size");
        err_contains(&got[6], 9, "column 2 `symbol` (symbol): invalid symbol");
        err_contains(&got[7], 10, "column 5 `side` (side): expected buy or sell");
        err_contains(&got[8], 11, "column 1 `ts` (ts)");
        err_contains(&got[9], 12, "column 1 `ts` (ts)");
        err_contains(&got[10], 13, "column 3 `price` (price): price must be");
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
        err_contains(&got[17], 20, "column 3 `price` (price)");
    }

    #[test]
    fn csv_columns_in_any_order_and_missing_columns_refused() {
        let got = check(
            ReplayFormat::Csv,
            "side,SIZE,price,symbol,ts,venue\nsell,2,3.5,X,5,XNAS\n",
        );
        assert_eq!(got, vec![(2, Ok(tick("X", 3.5, 2.0, Side::Sell, 5 * MS)))]);
        for (header, needle) in [
            ("", "empty"),
            (
                "ts,symbol,size\n",
                "no `price` column (name it `price` or `px`)",
            ),
            (
                "time,symbol,px,volume,side,ts\n",
                "columns 1 `time` and 6 `ts` both mean `ts`",
            ),
            (
                "ts,symbol,price,px,size\n",
                "columns 3 `price` and 4 `px` both mean `price`",
            ),
            (
                "ts,symbol,price,qty,Quantity\n",
                "columns 4 `qty` and 5 `Quantity` both mean `size`",
            ),
        ] {
            let err = Records::new(header.as_bytes(), ReplayFormat::Csv)
                .err()
                .expect("refused");
            assert!(err.to_string().contains(needle), "{header:?}: {err}");
        }
        let err = Records::new(&b"\n\nts,\"symbol\n"[..], ReplayFormat::Csv)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("unterminated quote"), "{err}");
    }

    /// What exchanges and data vendors export: `timestamp,symbol,price,size`, no side.
    #[test]
    fn a_typical_export_without_side_is_read() {
        let text = "Timestamp,Symbol,Price,Size\n\
                    2024-01-02T14:30:00.097Z,AAPL,187.15,100\n\
                    1704205800123,AAPL,187.16,25\n\
                    2024-01-02T14:30:01Z,AAPL,187.2x,5\n";
        let got = check(ReplayFormat::Csv, text);
        let no_side = |price, size, ts| {
            let mut t = tick("AAPL", price, size, Side::Buy, ts);
            t.side = None;
            t
        };
        assert_eq!(
            got[0],
            (2, Ok(no_side(187.15, 100.0, 1_704_205_800_097 * MS)))
        );
        assert_eq!(
            got[1],
            (3, Ok(no_side(187.16, 25.0, 1_704_205_800_123 * MS)))
        );
        err_contains(
            &got[2],
            4,
            "column 3 `Price` (price): not a number: \"187.2x\"",
        );
        // Other common names, and an empty side where a side column exists.
        let got = check(
            ReplayFormat::Csv,
            "time,symbol,px,qty,side\n5,X,1.5,2,\n6,X,1.5,2,S\n",
        );
        let mut first = tick("X", 1.5, 2.0, Side::Buy, 5 * MS);
        first.side = None;
        assert_eq!(got[0], (2, Ok(first)));
        assert_eq!(got[1], (3, Ok(tick("X", 1.5, 2.0, Side::Sell, 6 * MS))));
    }
}
