//! The wire contract, [`docs/PROTOCOL.md`](../../docs/PROTOCOL.md): the WebSocket ops and
//! events, the error codes of both the WebSocket and the REST API, and the indicator field names.
//! Only `ingest` (which encodes each event once), `cluster` (which reads them back on edges),
//! `ws` and `api` use it; `ring`, `rooms`, `bars`
//! and `pipeline` move typed values and opaque `Bytes` and know no JSON.
//!
//! - `ops`: inbound ops and channel-name syntax;
//! - `events`: `tick`, `bar` and `indicators`, encoded once at ingest, in both encodings;
//! - `wire`: the events' wire structs and `type`s, a leaf the encoders and `decode` share;
//! - `msgpack`: the `encoding=msgpack` forms (positional events, replies as maps, frames);
//! - `decode`: the same events read back into typed values (edge nodes receive them encoded);
//! - `replies`: `ack`, `error`, `pong`, `list` and `snapshot`, encoded per connection;
//! - `frame`: the drained items of one connection as one frame: an object or a JSON array, or
//!   a MessagePack array;
//! - `codes`: [`ErrorCode`] (WebSocket) and [`ProblemCode`] (REST);
//! - `prediction`: the `prediction` event (every model's forecast), and its MessagePack form
//!   rebuilt from its JSON on an edge;
//! - `indicators`: the indicator field names, shared by the `indicators` event and REST;
//! - `problem`: [`Problem`], the RFC 9457 problem+json body of every HTTP error (REST and the
//!   `/ws` handshake).

mod codes;
mod decode;
mod events;
mod frame;
mod indicators;
mod msgpack;
mod ops;
mod prediction;
mod problem;
mod replies;
mod wire;

use bytes::Bytes;
use serde::Serialize;

pub use codes::{ErrorCode, ProblemCode};
pub use decode::{DecodeError, Decoded, DecodedBook, decode_book, decode_event};
pub use events::{
    BookMessage, encode_bar, encode_bbo, encode_indicators, encode_portfolio, encode_tick,
    encode_ticker, rewire, rewire_book,
};
pub use frame::{encode_frame, join_frame};
pub use indicators::IndicatorFields;
pub use ops::{
    BadOp, ChannelError, ChannelName, ClientOp, parse_channel, parse_op, parse_op_ignoring,
};
pub use prediction::encode_prediction;
pub use problem::Problem;
pub use replies::{
    encode_ack, encode_ack_ignoring, encode_auth_ack, encode_draining_notice, encode_error,
    encode_list, encode_pong, encode_replay_done, encode_snapshot,
};
pub use wire::Num;

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    // Serializing these plain structs into a Vec cannot fail (no maps with non-string keys, no
    // I/O); an empty object is a safe fallback if it ever did.
    Bytes::from(serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()))
}
