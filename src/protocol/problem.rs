//! RFC 9457 problem details: the one error response type of the HTTP API.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ProblemCode;

/// A problem+json response with a stable `code` (also in `type` as `urn:tickcast:problem:<code>`);
/// the HTTP status follows from the code.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: ProblemCode,
    pub detail: String,
    /// Extra members (e.g. `errors` with per-record details).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: ProblemCode,
    #[serde(flatten)]
    extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl Problem {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// The HTTP status, which the code determines.
    pub(crate) fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// A server-side fault: logged here, reported to the client without internals.
    pub(crate) fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error serving request");
        Self::new(ProblemCode::Internal, "internal server error")
    }

    /// A request body that could not be read: over the size limit (413 `body_too_large`), not
    /// in within the listener's body deadline (408 `body_timeout`: its read failed with
    /// `io::ErrorKind::TimedOut`), or otherwise unreadable (400 `malformed_body`).
    pub(crate) fn body_rejection(
        e: &axum::extract::rejection::BytesRejection,
        limit: usize,
    ) -> Self {
        let timed_out = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|e| e.kind() == std::io::ErrorKind::TimedOut);
        if timed_out {
            Self::new(
                ProblemCode::BodyTimeout,
                "the request body did not arrive in time",
            )
        } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                ProblemCode::BodyTooLarge,
                format!("the body exceeds {limit} bytes"),
            )
        } else {
            Self::new(ProblemCode::MalformedBody, e.body_text())
        }
    }

    pub(crate) fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value);
        self
    }

    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Body {
            kind: format!("urn:tickcast:problem:{}", self.code),
            title: status.canonical_reason().unwrap_or("error"),
            status: status.as_u16(),
            detail: &self.detail,
            code: self.code,
            extra: self.extra.as_ref(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (status, bytes).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}
