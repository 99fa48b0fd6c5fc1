//! Stable error codes: [`ErrorCode`] in WebSocket `error` events, [`ProblemCode`] in REST
//! problem bodies (`code`, and `type` as `urn:tickcast:problem:<code>`). Clients branch on these
//! strings, so a variant's wire name never changes; `docs/PROTOCOL.md` lists every one (a test
//! below holds the two together).

use axum::http::StatusCode;
use serde::Serialize;

/// Declares a code enum whose variants serialize as snake_case words, with `ALL` (every
/// variant, so tests walk the whole enum) and `as_str` (the same word without serde).
macro_rules! codes {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every code, in declaration order.
            #[cfg(test)]
            pub(crate) const ALL: &[$name] = &[$($name::$variant,)+];

            /// The wire word, as serde writes it.
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// `code` of a WebSocket `error` event.
    pub enum ErrorCode {
        /// Malformed JSON, an invalid op, or an op whose arguments break a rule.
        BadRequest => "bad_request",
        /// A channel kind or symbol the server does not have.
        UnknownChannel => "unknown_channel",
        /// Over the per-connection op rate limit.
        RateLimited => "rate_limited",
        /// The subscribe would exceed `ws.max_subscriptions`.
        TooManySubscriptions => "too_many_subscriptions",
        /// A token that does not verify, or (with `auth.anonymous = false`) an op before `auth`.
        Unauthorized => "unauthorized",
        /// Extension: an unsubscribe of a channel this connection does not hold.
        NotSubscribed => "not_subscribed",
        /// Extension: a channel outside the connection's token's `channels`, an `auth` with a
        /// token of another user, or `portfolio` for a token whose user does not exist.
        Forbidden => "forbidden",
        /// Extension: the server cannot answer the op now (its database is unavailable);
        /// retrying later may succeed.
        Unavailable => "unavailable",
    }
}

codes! {
    /// `code` of a REST problem; each code always comes with the same HTTP status
    /// ([`ProblemCode::status`]).
    pub enum ProblemCode {
        /// A malformed query string, an unknown query parameter, or a body of the wrong shape.
        BadRequest => "bad_request",
        BadTime => "bad_time",
        BadTimeRange => "bad_time_range",
        LimitOutOfRange => "limit_out_of_range",
        BadCursor => "bad_cursor",
        BadInterval => "bad_interval",
        BadHorizon => "bad_horizon",
        BadModel => "bad_model",
        MalformedBody => "malformed_body",
        BadIdempotencyKey => "bad_idempotency_key",
        /// `GET /ws?v=` names a protocol version other than 1.
        UnsupportedVersion => "unsupported_version",
        /// `GET /ws?encoding=` names an encoding other than `json` or `msgpack`.
        UnsupportedEncoding => "unsupported_encoding",
        Unauthorized => "unauthorized",
        UnknownSymbol => "unknown_symbol",
        /// No such route or asset.
        NotFound => "not_found",
        /// The route exists but not with this method (the `Allow` header lists those it has).
        MethodNotAllowed => "method_not_allowed",
        /// `POST /api/v1/ingest` while `feeds.http.token` is unset.
        IngestDisabled => "ingest_disabled",
        IdempotencyConflict => "idempotency_conflict",
        BodyTooLarge => "body_too_large",
        /// A request body that did not arrive whole within `server.request_body_timeout_ms`.
        BodyTimeout => "body_timeout",
        TooManyRecords => "too_many_records",
        InvalidTrade => "invalid_trade",
        InvalidRecords => "invalid_records",
        InsufficientData => "insufficient_data",
        /// `POST /api/v1/auth/token` on a server without `auth.jwt_hs256_secret`.
        TokenExchangeDisabled => "token_exchange_disabled",
        /// `GET /ws` without a WebSocket (version 13) upgrade.
        WebsocketRequired => "websocket_required",
        RateLimited => "rate_limited",
        Internal => "internal",
        DatabaseUnavailable => "database_unavailable",
        IngestBusy => "ingest_busy",
        /// `POST /api/v1/ingest` on a cluster node that does not lead ingest (an edge, or an
        /// ingest node standing by).
        NotLeader => "not_leader",
        ShuttingDown => "shutting_down",
        TooManyConnections => "too_many_connections",
    }
}

impl ProblemCode {
    /// The HTTP status that always accompanies this code.
    pub(crate) const fn status(self) -> StatusCode {
        use ProblemCode::*;
        match self {
            BadRequest | BadTime | BadTimeRange | LimitOutOfRange | BadCursor | BadInterval
            | BadHorizon | BadModel | MalformedBody | BadIdempotencyKey | UnsupportedVersion
            | UnsupportedEncoding => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            UnknownSymbol | NotFound | IngestDisabled | TokenExchangeDisabled => {
                StatusCode::NOT_FOUND
            }
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IdempotencyConflict => StatusCode::CONFLICT,
            BodyTooLarge | TooManyRecords => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidTrade | InvalidRecords | InsufficientData => StatusCode::UNPROCESSABLE_ENTITY,
            WebsocketRequired => StatusCode::UPGRADE_REQUIRED,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            DatabaseUnavailable | IngestBusy | NotLeader | ShuttingDown | TooManyConnections => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract document, which must name every code the server can send.
    const PROTOCOL_MD: &str = include_str!("../../docs/PROTOCOL.md");

    /// Checks that `as_str` is what serde writes and that the doc names the code as `code`.
    fn check<T: Serialize + Copy>(all: &[T], as_str: impl Fn(T) -> &'static str) {
        for &code in all {
            let wire = serde_json::to_value(code).expect("a unit variant serializes");
            assert_eq!(wire, as_str(code), "as_str must match serde");
            let quoted = format!("`{}`", as_str(code));
            assert!(
                PROTOCOL_MD.contains(&quoted),
                "docs/PROTOCOL.md does not mention {quoted}"
            );
        }
    }

    #[test]
    fn every_error_code_is_documented_under_its_wire_name() {
        check(ErrorCode::ALL, ErrorCode::as_str);
    }

    #[test]
    fn every_problem_code_is_documented_with_its_status() {
        check(ProblemCode::ALL, ProblemCode::as_str);
        for &code in ProblemCode::ALL {
            let row = format!("| `{code}` | {} |", code.status().as_u16());
            assert!(
                PROTOCOL_MD.contains(&row),
                "docs/PROTOCOL.md has no problem-code row starting {row:?}"
            );
        }
    }
}
