//! One replay record's fields: the names both formats (`csv` headers, `jsonl` keys) accept for
//! each, the rules they share, and the errors that name the field (and, in CSV, the column) at
//! fault.

use crate::ingest::TickError;
use crate::model::{RawTick, Side};
use crate::timestamp::{self, TimestampError};

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
    /// A CSV field at fault, named by its column (1-based) and header.
    #[error("column {column} `{header}` ({field}): {message}")]
    Column {
        column: usize,
        header: String,
        field: &'static str,
        message: String,
    },
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("line is longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("read failed: {0}")]
    Io(String),
    #[error(transparent)]
    Tick(#[from] TickError),
}

impl RecordError {
    /// True when reading cannot continue past this error (the rest of the pass is skipped).
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, RecordError::Io(_))
    }

    pub(super) fn field(field: &'static str, message: impl ToString) -> Self {
        RecordError::Field {
            field,
            message: message.to_string(),
        }
    }
}

/// The tick fields, each with the names (case-insensitive) a CSV header or a JSONL key may give
/// it. `side` is optional; the others are required.
pub(super) const FIELDS: [(&str, &[&str]); 5] = [
    ("ts", &["ts", "timestamp", "time"]),
    ("symbol", &["symbol"]),
    ("price", &["price", "px"]),
    ("size", &["size", "qty", "quantity", "volume"]),
    ("side", &["side"]),
];

/// Index in [`FIELDS`] of each field.
pub(super) const TS: usize = 0;
pub(super) const SYMBOL: usize = 1;
pub(super) const PRICE: usize = 2;
pub(super) const SIZE: usize = 3;
pub(super) const SIDE: usize = 4;

/// The field (index in [`FIELDS`]) a header or key names, if any.
pub(super) fn field_of(name: &str) -> Option<usize> {
    FIELDS
        .iter()
        .position(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
}

/// The accepted names of a field, for messages: `price` or `px`.
pub(super) fn accepted(field: usize) -> String {
    FIELDS[field]
        .1
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The CSV header does not name the required columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("csv header: {0}")]
pub struct HeaderError(pub String);

pub(super) fn parse_number(field: &'static str, s: &str) -> Result<f64, RecordError> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| RecordError::field(field, format!("not a number: {s:?}")))
}

/// A side; an empty field means the record gives none.
pub(super) fn parse_side(s: &str) -> Result<Option<Side>, RecordError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    Side::parse_lenient(s).map(Some).ok_or_else(|| {
        RecordError::field(
            "side",
            format!("expected buy or sell (or empty), got {s:?}"),
        )
    })
}

pub(super) fn parse_ts(s: &str) -> Result<i64, RecordError> {
    timestamp::parse(s).map_err(|e: TimestampError| RecordError::field("ts", e))
}

/// The record as a tick, if ingest would take it.
pub(super) fn finish(t: RawTick) -> Result<RawTick, RecordError> {
    crate::ingest::validate(&t)?;
    Ok(t)
}
