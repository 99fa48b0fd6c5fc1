//! The record reader: a replay file's physical lines in, `(line, tick)` pairs out.
//!
//! Every record is one line in both formats (a CSV quoted field cannot span lines: no tick field
//! needs a newline), so one bad line costs one record and line numbers in logs are the file's
//! physical lines. Lines are read with a bound: one over [`MAX_LINE_BYTES`] is skipped (and
//! reported) without being buffered, however long it is. Blank lines are skipped.

use std::io::{BufRead, Read};

use super::ReplayFormat;
use super::csv::CsvRows;
pub use super::fields::{HeaderError, RecordError};
use super::jsonl;
use crate::model::RawTick;

/// Longest line accepted; longer lines are skipped (and counted) without being buffered.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Streaming record reader over CSV or JSONL; yields `(line, record)` pairs, `line` being the
/// 1-based physical line of the file.
pub struct Records<R: BufRead> {
    reader: R,
    /// Lines consumed so far.
    line: u64,
    /// The current line, reused between lines.
    buf: Vec<u8>,
    format: Format,
    done: bool,
}

/// The per-format state of a reader.
enum Format {
    Csv(CsvRows),
    Jsonl,
}

// === impl Records ===

impl<R: BufRead> Records<R> {
    /// Starts reading; for CSV this reads and checks the header (the first non-blank line).
    pub fn new(reader: R, format: ReplayFormat) -> Result<Self, HeaderError> {
        let mut records = Self {
            reader,
            line: 0,
            buf: Vec::new(),
            format: Format::Jsonl,
            done: false,
        };
        // `Auto` is resolved by the caller (`resolve_format`); read as JSONL if it was not.
        if format == ReplayFormat::Csv {
            match records.next_line() {
                None => return Err(HeaderError("the file is empty".into())),
                Some(Err(e)) => return Err(HeaderError(e.to_string())),
                Some(Ok(())) => {}
            }
            records.format = Format::Csv(CsvRows::from_header(&records.buf)?);
        }
        Ok(records)
    }

    /// The next non-blank line into `self.buf`.
    fn next_line(&mut self) -> Option<Result<(), RecordError>> {
        loop {
            self.line += 1;
            match read_line(&mut self.reader, &mut self.buf) {
                Ok(None) => return None,
                Ok(Some(false)) => {
                    return Some(Err(RecordError::TooLong {
                        limit: MAX_LINE_BYTES,
                    }));
                }
                Ok(Some(true)) if self.buf.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Some(true)) => return Some(Ok(())),
                Err(e) => return Some(Err(RecordError::Io(e.to_string()))),
            }
        }
    }
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = (u64, Result<RawTick, RecordError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let record = match self.next_line() {
            None => {
                self.done = true;
                return None;
            }
            Some(Err(e)) => Err(e),
            Some(Ok(())) => match &mut self.format {
                Format::Jsonl => jsonl::parse(&self.buf),
                Format::Csv(rows) => rows.parse(&self.buf),
            },
        };
        if matches!(&record, Err(e) if e.is_terminal()) {
            self.done = true;
        }
        Some((self.line, record))
    }
}

/// Reads one line into `buf` (without its newline). `None` at the end, `Some(false)` when the
/// line was over [`MAX_LINE_BYTES`] (it is consumed, not kept).
fn read_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = reader
        .by_ref()
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(true));
    }
    if buf.len() <= MAX_LINE_BYTES {
        // The last line, without a newline.
        return Ok(Some(true));
    }
    // Too long: skip to the end of the line in bounded steps.
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', buf)?;
        if n == 0 || buf.last() == Some(&b'\n') {
            buf.clear();
            return Ok(Some(false));
        }
    }
}

/// Test helper: reads `text` and returns each record as `Ok(tick)` or the error's text.
#[cfg(test)]
pub(super) fn check(format: ReplayFormat, text: &str) -> Vec<(u64, Result<RawTick, String>)> {
    Records::new(text.as_bytes(), format)
        .expect("header is fine")
        .map(|(line, r)| (line, r.map_err(|e| e.to_string())))
        .collect()
}

/// Test helper: asserts that `got` is an error on `line` whose text contains `needle`.
#[cfg(test)]
pub(super) fn err_contains(got: &(u64, Result<RawTick, String>), line: u64, needle: &str) {
    assert_eq!(got.0, line, "{got:?}");
    match &got.1 {
        Err(e) => assert!(e.contains(needle), "line {line}: {e:?} lacks {needle:?}"),
        Ok(t) => panic!("line {line}: expected an error with {needle:?}, got {t:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_blank_lines_skipped_and_numbered_physically() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let text = format!("a\n\n  \r\n{long}\nb\r\nc");
        let mut reader = text.as_bytes();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(ok) = read_line(&mut reader, &mut buf).unwrap() {
            got.push((ok, String::from_utf8(buf.clone()).unwrap()));
        }
        let want = [
            (true, "a"),
            (true, ""),
            (true, "  "),
            (false, ""),
            (true, "b"),
            (true, "c"),
        ];
        let want: Vec<(bool, String)> = want.iter().map(|(ok, s)| (*ok, s.to_string())).collect();
        assert_eq!(got, want);
        // Exactly MAX_LINE_BYTES is still a line.
        let edge = "y".repeat(MAX_LINE_BYTES);
        let mut reader = edge.as_bytes();
        assert_eq!(read_line(&mut reader, &mut buf).unwrap(), Some(true));
        assert_eq!(buf.len(), MAX_LINE_BYTES);
    }
}
