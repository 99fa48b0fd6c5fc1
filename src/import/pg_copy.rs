//! PostgreSQL's binary `COPY` format for imported ticks and bars: the server takes the values
//! as they are (no text to parse back into floats and integers), and nothing needs escaping.
//!
//! The stream is a header, then per row a field count and each field as a big-endian length and
//! its bytes in the column's binary send format (`int8`, `int2`, `float8`, `text` as UTF-8),
//! then a trailer. The column lists below must name the table's columns in that order and type.

use crate::store::{BarRecord, TickRow, tick_side_code};

/// The columns each imported tick row fills, in the order [`ticks`] writes them.
pub(crate) const TICK_COLUMNS: &str = "symbol, ts, ingest_ts, epoch, seq, price, size, side";
/// The columns each imported bar row fills, in the order [`bars`] writes them.
pub(crate) const BAR_COLUMNS: &str =
    "symbol, interval_ns, ts, epoch, open, high, low, close, volume, trades";

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A binary `COPY` stream being written.
struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    fn new(rows: usize, row_bytes: usize) -> Encoder {
        let mut buf = Vec::with_capacity(SIGNATURE.len() + 10 + rows * row_bytes);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension: none
        Encoder { buf }
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        // Our fields are short (symbols are at most MAX_SYMBOL_LEN bytes, numbers 2 to 8).
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }

    fn int8(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    fn int2(&mut self, v: i16) {
        self.field(&v.to_be_bytes());
    }

    fn float8(&mut self, v: f64) {
        self.field(&v.to_bits().to_be_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// `rows` as a binary `COPY` stream of [`TICK_COLUMNS`].
pub(crate) fn ticks<'a>(rows: impl ExactSizeIterator<Item = &'a TickRow>) -> Vec<u8> {
    let mut e = Encoder::new(rows.len(), 86);
    for r in rows {
        e.row(8);
        e.text(&r.symbol);
        e.int8(r.ts);
        e.int8(r.ingest_ts);
        e.int8(r.epoch);
        e.int8(r.seq);
        e.float8(r.price);
        e.float8(r.size);
        e.int2(tick_side_code(r.side));
    }
    e.finish()
}

/// `rows` as a binary `COPY` stream of [`BAR_COLUMNS`].
pub(crate) fn bars<'a>(rows: impl ExactSizeIterator<Item = &'a BarRecord>) -> Vec<u8> {
    let mut e = Encoder::new(rows.len(), 128);
    for r in rows {
        e.row(10);
        e.text(&r.symbol);
        e.int8(r.interval_ns);
        e.int8(r.start);
        e.int8(r.epoch);
        e.float8(r.open);
        e.float8(r.high);
        e.float8(r.low);
        e.float8(r.close);
        e.float8(r.volume);
        e.int8(r.trades);
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_row_is_laid_out_as_postgres_reads_it() {
        let row = TickRow {
            symbol: "AB".into(),
            ts: 1,
            ingest_ts: 2,
            epoch: -3,
            seq: 4,
            price: 1.5,
            size: 2.0,
            side: None,
        };
        let bytes = ticks([row].iter());
        let mut want = Vec::new();
        want.extend_from_slice(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0");
        want.extend_from_slice(&[0, 8, 0, 0, 0, 2, b'A', b'B']);
        for v in [1i64, 2, -3, 4] {
            want.extend_from_slice(&[0, 0, 0, 8]);
            want.extend_from_slice(&v.to_be_bytes());
        }
        for v in [1.5f64, 2.0] {
            want.extend_from_slice(&[0, 0, 0, 8]);
            want.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        // No side is code 2, an int2.
        want.extend_from_slice(&[0, 0, 0, 2, 0, 2]);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn an_empty_stream_is_header_and_trailer() {
        assert_eq!(bars([].iter()).len(), 11 + 8 + 2);
        assert_eq!(ticks([].iter()).len(), 11 + 8 + 2);
    }
}
