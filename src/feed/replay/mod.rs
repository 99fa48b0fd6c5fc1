//! Replay feed: plays a CSV or JSONL file of trades, paced by the records' own timestamps.
//!
//! Records have five fields, `ts`, `symbol`, `price`, `size`, `side` (see `feeds/README.md`);
//! `ts` follows the rules of [`crate::timestamp`] (integer ms or ns by magnitude, or RFC 3339).
//! CSV files start with a header naming the columns (any order, extra columns ignored, fields
//! trimmed, RFC 4180 quoting); JSONL files hold one object per line. Blank lines are skipped in
//! both; line numbers in logs are the file's physical lines.
//!
//! The file is read on a dedicated thread, streaming: at most [`READ_AHEAD_CHUNKS`] chunks of
//! [`BATCH_MAX`] records are in memory, however big the file. The async side paces them:
//! with speed `s > 0` a record is released `(ts - ts_first) / s` after the first one, measured
//! from one fixed start instant (so sleeps never accumulate drift); records that are already due
//! go out together as one batch. Speed `0` sends each chunk as soon as ingest takes it, so
//! backpressure from [`IngestHandle::send`](crate::ingest::IngestHandle::send) is the only
//! brake. With `loop = true` the file restarts at its end and every timestamp of pass `k + 1`
//! is shifted by `max_ts - first_ts + 1 ms` more than pass `k`, so time keeps increasing.
//!
//! A bad record is logged with its line number, counted in `metrics.feed_errors` and skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{BATCH_MAX, Feed, FeedContext, FeedError};
use crate::config::{ReplayConfig, ReplayFormat};
use crate::ingest::TickError;
use crate::model::{RawTick, Side};
use crate::telemetry::metrics::Metrics;
use crate::timestamp::{self, TimestampError};

/// Chunks the reader thread may read ahead of the pacer.
pub const READ_AHEAD_CHUNKS: usize = 2;

/// Longest JSONL line accepted; longer lines are skipped (and counted) without being buffered.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Longest single wait between two records, whatever the file's gap and speed.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Gap between the latest record of one pass and the first of the next when looping.
const LOOP_GAP_NS: i64 = 1_000_000;

/// The file's format: `format` when explicit, else by extension (`.csv`; `.jsonl`, `.ndjson`).
pub fn resolve_format(format: ReplayFormat, path: &Path) -> Option<ReplayFormat> {
    match format {
        ReplayFormat::Csv | ReplayFormat::Jsonl => Some(format),
        ReplayFormat::Auto => {
            let ext = path.extension()?.to_str()?.to_ascii_lowercase();
            match ext.as_str() {
                "csv" => Some(ReplayFormat::Csv),
                "jsonl" | "ndjson" => Some(ReplayFormat::Jsonl),
                _ => None,
            }
        }
    }
}

/// Why one record was skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("expected {expected} fields, got {got}")]
    FieldCount { expected: usize, got: usize },
    #[error("field `{field}` is missing")]
    Missing { field: &'static str },
    #[error("field `{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("line is longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    #[error("read failed: {0}")]
    Io(String),
    #[error(transparent)]
    Tick(#[from] TickError),
}

impl RecordError {
    /// True when reading cannot continue past this error (the rest of the pass is skipped).
    pub fn is_terminal(&self) -> bool {
        matches!(self, RecordError::Io(_))
    }

    fn field(field: &'static str, message: impl ToString) -> Self {
        RecordError::Field {
            field,
            message: message.to_string(),
        }
    }
}

/// The CSV header does not name the required columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("csv header: {0}")]
pub struct HeaderError(pub String);

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

/// Streaming record reader over CSV or JSONL; yields `(line, record)` pairs, `line` being the
/// 1-based physical line of the file.
pub struct Records<R: BufRead> {
    reader: R,
    /// Lines consumed so far.
    line: u64,
    buf: Vec<u8>,
    kind: Kind,
    done: bool,
}

enum Kind {
    Csv {
        cols: Columns,
        /// Reused between rows.
        fields: Vec<String>,
    },
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
            kind: Kind::Jsonl,
            done: false,
        };
        // `Auto` is resolved by the caller (`resolve_format`); read as JSONL if it was not.
        if format == ReplayFormat::Csv {
            let header = match records.next_line() {
                None => return Err(HeaderError("the file is empty".into())),
                Some(Err(e)) => return Err(HeaderError(e.to_string())),
                Some(Ok(())) => std::str::from_utf8(&records.buf)
                    .map_err(|_| HeaderError("not UTF-8".into()))?,
            };
            let mut names = Vec::new();
            split_csv(header, &mut names).map_err(|e| HeaderError(e.to_string()))?;
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
            records.kind = Kind::Csv {
                cols,
                fields: Vec::with_capacity(cols.width),
            };
        }
        Ok(records)
    }

    /// The next non-blank line into `self.buf`.
    fn next_line(&mut self) -> Option<Result<(), RecordError>> {
        loop {
            self.line += 1;
            match read_line(&mut self.reader, &mut self.buf) {
                Ok(None) => return None,
                Ok(Some(false)) => return Some(Err(RecordError::TooLong)),
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
            Some(Ok(())) => match &mut self.kind {
                Kind::Jsonl => parse_json_line(&self.buf),
                Kind::Csv { cols, fields } => std::str::from_utf8(&self.buf)
                    .map_err(|_| RecordError::field("line", "not UTF-8"))
                    .and_then(|line| split_csv(line, fields))
                    .and_then(|()| parse_csv_row(fields, cols)),
            },
        };
        if matches!(&record, Err(e) if e.is_terminal()) {
            self.done = true;
        }
        Some((self.line, record))
    }
}

/// Splits one CSV line into trimmed fields, with RFC 4180 quoting inside the line (`"a,b"`,
/// `"say ""hi"""`). A quoted field cannot span lines: no tick field needs a newline.
fn split_csv(line: &str, out: &mut Vec<String>) -> Result<(), RecordError> {
    out.clear();
    if !line.contains('"') {
        out.extend(line.split(',').map(|f| f.trim().to_owned()));
        return Ok(());
    }
    let mut field = String::new();
    let (mut in_quotes, mut quoted) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => in_quotes = false,
                c => field.push(c),
            }
        } else if c == ',' {
            out.push(if quoted {
                std::mem::take(&mut field)
            } else {
                field.trim().to_owned()
            });
            field.clear();
            quoted = false;
        } else if c == '"' && !quoted && field.trim().is_empty() {
            field.clear();
            in_quotes = true;
            quoted = true;
        } else if quoted && !c.is_whitespace() {
            return Err(RecordError::field("line", "text after a closing quote"));
        } else if !quoted {
            field.push(c);
        }
    }
    if in_quotes {
        return Err(RecordError::field("line", "unterminated quote"));
    }
    out.push(if quoted {
        field
    } else {
        field.trim().to_owned()
    });
    Ok(())
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

fn parse_number(field: &'static str, s: &str) -> Result<f64, RecordError> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| RecordError::field(field, format!("not a number: {s:?}")))
}

fn parse_side(s: &str) -> Result<Side, RecordError> {
    Side::parse_lenient(s.trim())
        .ok_or_else(|| RecordError::field("side", format!("expected buy or sell, got {s:?}")))
}

fn parse_ts(s: &str) -> Result<i64, RecordError> {
    timestamp::parse(s).map_err(|e: TimestampError| RecordError::field("ts", e))
}

fn finish(t: RawTick) -> Result<RawTick, RecordError> {
    crate::ingest::validate(&t)?;
    Ok(t)
}

fn parse_csv_row(row: &[String], cols: &Columns) -> Result<RawTick, RecordError> {
    if row.len() != cols.width {
        return Err(RecordError::FieldCount {
            expected: cols.width,
            got: row.len(),
        });
    }
    let get = |i: usize| row.get(i).map_or("", String::as_str);
    finish(RawTick {
        exchange_ts: parse_ts(get(cols.ts))?,
        symbol: get(cols.symbol).to_owned(),
        price: parse_number("price", get(cols.price))?,
        size: parse_number("size", get(cols.size))?,
        side: parse_side(get(cols.side))?,
    })
}

fn parse_json_line(line: &[u8]) -> Result<RawTick, RecordError> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(line).map_err(|e| RecordError::Json(e.to_string()))?;
    let Value::Object(obj) = v else {
        return Err(RecordError::Json("expected an object".into()));
    };
    let field = |name: &'static str| obj.get(name).ok_or(RecordError::Missing { field: name });
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
        side: parse_side(text("side")?)?,
    })
}

/// What the reader thread hands the pacer.
type Chunk = Result<Vec<RawTick>, FeedError>;

/// The replay feed (see the module docs).
#[derive(Debug)]
pub struct ReplayFeed {
    path: PathBuf,
    format: ReplayFormat,
    speed: f64,
    looping: bool,
}

// === impl ReplayFeed ===

impl ReplayFeed {
    pub fn new(cfg: &ReplayConfig) -> Result<Self, FeedError> {
        let format = resolve_format(cfg.format, &cfg.path).ok_or_else(|| {
            FeedError::Config(format!(
                "cannot tell the format of {} from its extension; set feeds.replay.format",
                cfg.path.display()
            ))
        })?;
        Ok(Self {
            path: cfg.path.clone(),
            format,
            speed: cfg.speed,
            looping: cfg.looping,
        })
    }
}

impl Feed for ReplayFeed {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn run(self: Box<Self>, ctx: FeedContext) -> BoxFuture<'static, Result<(), FeedError>> {
        Box::pin(async move {
            let path = self.path.display().to_string();
            let file = File::open(&self.path).map_err(|source| FeedError::Open {
                path: path.clone(),
                source,
            })?;
            let (tx, rx) = mpsc::channel::<Chunk>(READ_AHEAD_CHUNKS);
            let reader = Reader {
                path: path.clone(),
                format: self.format,
                looping: self.looping,
                metrics: ctx.metrics.clone(),
            };
            std::thread::Builder::new()
                .name("replay-reader".into())
                .spawn(move || reader.run(file, tx))
                .map_err(|source| FeedError::Open {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(
                path,
                format = ?self.format,
                speed = self.speed,
                looping = self.looping,
                "replay feed started"
            );
            pace(rx, self.speed, &ctx).await
        })
    }
}

/// Releases chunks to ingest at the configured speed; returns when the reader is done or on
/// shutdown.
async fn pace(
    mut rx: mpsc::Receiver<Chunk>,
    speed: f64,
    ctx: &FeedContext,
) -> Result<(), FeedError> {
    // (wall-clock start, exchange time of the first record): the pacing origin.
    let mut origin: Option<(Instant, i64)> = None;
    loop {
        let chunk = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            c = rx.recv() => c,
        };
        let chunk = match chunk {
            None => {
                tracing::info!(feed = "replay", "replay finished");
                return Ok(());
            }
            Some(c) => c?,
        };
        if speed <= 0.0 {
            if !super::send_batch(ctx, chunk).await? {
                return Ok(());
            }
            continue;
        }
        let mut batch = Vec::with_capacity(chunk.len());
        for tick in chunk {
            let (start, first) = *origin.get_or_insert((Instant::now(), tick.exchange_ts));
            let due = start + due_after(tick.exchange_ts.saturating_sub(first), speed);
            if due > Instant::now() {
                if !super::send_batch(ctx, std::mem::take(&mut batch)).await? {
                    return Ok(());
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            batch.push(tick);
        }
        if !super::send_batch(ctx, batch).await? {
            return Ok(());
        }
    }
}

/// Wall-clock offset of a record `exchange_gap_ns` after the first one, at `speed`.
fn due_after(exchange_gap_ns: i64, speed: f64) -> Duration {
    let secs = exchange_gap_ns.max(0) as f64 / 1e9 / speed;
    if secs.is_finite() && secs < MAX_WAIT.as_secs_f64() {
        Duration::from_secs_f64(secs)
    } else {
        MAX_WAIT
    }
}

/// The blocking half: reads the file pass after pass and hands chunks to the pacer.
struct Reader {
    path: String,
    format: ReplayFormat,
    looping: bool,
    metrics: Arc<Metrics>,
}

impl Reader {
    fn run(self, mut file: File, tx: mpsc::Sender<Chunk>) {
        let mut offset = 0i64;
        loop {
            if let Err(error) = file.seek(SeekFrom::Start(0)) {
                tracing::error!(feed = "replay", path = %self.path, %error, "cannot rewind");
                return;
            }
            let records = match Records::new(BufReader::new(&file), self.format) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(FeedError::Format {
                        path: self.path.clone(),
                        message: e.to_string(),
                    }));
                    return;
                }
            };
            let Some(span) = self.pass(records, offset, &tx) else {
                return; // the pacer is gone
            };
            if !self.looping {
                return;
            }
            let Some((first, max)) = span else {
                tracing::warn!(feed = "replay", path = %self.path, "no valid records; not looping");
                return;
            };
            offset = offset.saturating_add(max.saturating_sub(first) + LOOP_GAP_NS);
            tracing::debug!(feed = "replay", path = %self.path, offset, "replay loops");
        }
    }

    /// One pass over the file. `None` when the pacer hung up; else the (first, max) exchange
    /// time of the pass's valid records, if any.
    fn pass<R: BufRead>(
        &self,
        records: Records<R>,
        offset: i64,
        tx: &mpsc::Sender<Chunk>,
    ) -> Option<Option<(i64, i64)>> {
        let mut span: Option<(i64, i64)> = None;
        let mut chunk = Vec::with_capacity(BATCH_MAX);
        for (line, record) in records {
            match record {
                Ok(mut tick) => {
                    let ts = tick.exchange_ts;
                    match &mut span {
                        None => span = Some((ts, ts)),
                        Some((_, max)) => *max = (*max).max(ts),
                    }
                    tick.exchange_ts = tick.exchange_ts.saturating_add(offset);
                    chunk.push(tick);
                    if chunk.len() >= BATCH_MAX
                        && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
                    {
                        return None;
                    }
                }
                Err(error) => {
                    self.metrics.feed_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(feed = "replay", path = %self.path, line, %error, "bad record skipped");
                }
            }
        }
        if !chunk.is_empty() && tx.blocking_send(Ok(chunk)).is_err() {
            return None;
        }
        Some(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(sym: &str, price: f64, size: f64, side: Side, ts: i64) -> RawTick {
        RawTick::new(sym, price, size, side, ts)
    }

    /// Reads `text` and returns each record as `Ok(tick)` or the error's text.
    fn check(format: ReplayFormat, text: &str) -> Vec<(u64, Result<RawTick, String>)> {
        Records::new(text.as_bytes(), format)
            .expect("header is fine")
            .map(|(line, r)| (line, r.map_err(|e| e.to_string())))
            .collect()
    }

    fn err_contains(got: &(u64, Result<RawTick, String>), line: u64, needle: &str) {
        assert_eq!(got.0, line, "{got:?}");
        match &got.1 {
            Err(e) => assert!(e.contains(needle), "line {line}: {e:?} lacks {needle:?}"),
            Ok(t) => panic!("line {line}: expected an error with {needle:?}, got {t:?}"),
        }
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
"1700000000000","BRK.B", "410.5" ,"3",sell
1700000000000,"AAPL,189.5,1,buy
1700000000000,"AAPL"x,189.5,1,buy
"#;
        let got = check(ReplayFormat::Csv, text);
        assert_eq!(got.len(), 15, "{got:#?}");
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
        err_contains(&got[14], 17, "after a closing quote");
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
    }

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
    fn format_by_extension() {
        let cases = [
            (ReplayFormat::Auto, "a/b.csv", Some(ReplayFormat::Csv)),
            (ReplayFormat::Auto, "b.JSONL", Some(ReplayFormat::Jsonl)),
            (ReplayFormat::Auto, "b.ndjson", Some(ReplayFormat::Jsonl)),
            (ReplayFormat::Auto, "b.txt", None),
            (ReplayFormat::Auto, "noext", None),
            (ReplayFormat::Csv, "b.txt", Some(ReplayFormat::Csv)),
        ];
        for (format, path, want) in cases {
            assert_eq!(resolve_format(format, Path::new(path)), want, "{path}");
        }
    }

    fn sample(name: &str) -> Vec<RawTick> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("feeds")
            .join(name);
        let format = resolve_format(ReplayFormat::Auto, &path).expect("known extension");
        let file = File::open(&path).expect("sample file exists");
        Records::new(BufReader::new(file), format)
            .expect("header")
            .map(|(line, r)| r.unwrap_or_else(|e| panic!("{name}:{line}: {e}")))
            .collect()
    }

    #[test]
    fn sample_files_hold_the_same_valid_ticks() {
        let csv = sample("sample_ticks.csv");
        let jsonl = sample("sample_ticks.jsonl");
        assert!(csv.len() >= 200, "{}", csv.len());
        assert_eq!(csv, jsonl);
        let symbols: std::collections::BTreeSet<_> = csv.iter().map(|t| &t.symbol).collect();
        assert_eq!(symbols.len(), 5);
        assert!(csv.windows(2).all(|w| w[0].exchange_ts <= w[1].exchange_ts));
    }

    #[test]
    fn pacing_scales_gaps_by_speed() {
        assert_eq!(due_after(1_000_000_000, 1.0), Duration::from_secs(1));
        assert_eq!(due_after(1_000_000_000, 4.0), Duration::from_millis(250));
        assert_eq!(due_after(-5, 1.0), Duration::ZERO);
        assert_eq!(due_after(i64::MAX, 1e-9), MAX_WAIT);
    }

    #[tokio::test]
    async fn reader_loops_with_increasing_time_and_counts_bad_lines() {
        let dir = std::env::temp_dir().join(format!("tickcast-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loop.csv");
        std::fs::write(
            &path,
            "ts,symbol,price,size,side\n1000,A,1,1,buy\nbad\n1500,A,2,1,sell\n",
        )
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let reader = Reader {
            path: path.display().to_string(),
            format: ReplayFormat::Csv,
            looping: true,
            metrics: metrics.clone(),
        };
        let (tx, mut rx) = mpsc::channel(1);
        let file = File::open(&path).unwrap();
        let thread = std::thread::spawn(move || reader.run(file, tx));
        let mut ts = Vec::new();
        while ts.len() < 6 {
            let chunk = rx.recv().await.expect("reader keeps looping").unwrap();
            ts.extend(chunk.iter().map(|t| t.exchange_ts / MS));
        }
        drop(rx);
        thread.join().unwrap();
        // Each pass is shifted by max - first + 1 ms = 501 ms.
        assert_eq!(ts[..6], [1000, 1500, 1501, 2001, 2002, 2502]);
        assert!(metrics.feed_errors.load(Ordering::Relaxed) >= 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
