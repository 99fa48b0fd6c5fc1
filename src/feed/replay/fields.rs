//! One replay record's fields: the rules both formats (`csv`, `jsonl`) share, and the errors
//! that name the field at fault.

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

/// The CSV header does not name the required columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("csv header: {0}")]
pub struct HeaderError(pub String);

pub(super) fn parse_number(field: &'static str, s: &str) -> Result<f64, RecordError> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| RecordError::field(field, format!("not a number: {s:?}")))
}

pub(super) fn parse_side(s: &str) -> Result<Side, RecordError> {
    Side::parse_lenient(s.trim())
        .ok_or_else(|| RecordError::field("side", format!("expected buy or sell, got {s:?}")))
}

pub(super) fn parse_ts(s: &str) -> Result<i64, RecordError> {
    timestamp::parse(s).map_err(|e: TimestampError| RecordError::field("ts", e))
}

/// The record as a tick, if ingest would take it.
pub(super) fn finish(t: RawTick) -> Result<RawTick, RecordError> {
    crate::ingest::validate(&t)?;
    Ok(t)
}
