//! The wire contract, [`docs/PROTOCOL.md`](../../docs/PROTOCOL.md): the WebSocket ops and
//! events, the error codes of both the WebSocket and the REST API, and the indicator field names.
//! Only `ingest` (which encodes each event once), `cluster` (which reads them back on edges),
//! `ws` and `api` use it; `ring`, `rooms`, `bars`
//! and `pipeline` move typed values and opaque `Bytes` and know no JSON.
//!
//! - `ops`: inbound ops and channel-name syntax;
//! - `events`: `tick`, `bar`, `indicators`, `book`, `ticker`, `bbo`, encoded once at ingest (the
//!   JSON; the MessagePack form on demand, `transcode`);
//! - `wire`: the events' wire structs and `type`s, a leaf the encoders and `decode` share;
//! - `msgpack`: the `encoding=msgpack` forms (positional events, replies as maps, frames);
//! - `transcode`: an event's MessagePack form made from its JSON, when a connection first needs
//!   it (ingest makes the JSON only);
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
mod transcode;
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

/// `v` as JSON, in a block of exactly its length: what a ring or a queue holds is the bytes, not
/// the spare capacity of a grown `Vec` (a 131-byte tick would keep 256) nor a second block for
/// `Bytes`' shared header.
fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    // Serializing these plain structs into a Vec cannot fail (no maps with non-string keys, no
    // I/O); an empty object is a safe fallback if it ever did.
    exact(|buf| serde_json::to_writer(buf, v).is_ok(), b"{}")
}

thread_local! {
    /// Where [`exact`] writes before it copies out: grown once per thread, not per event.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer larger than this is given back after use (a large snapshot or reply must
/// not stay allocated per thread).
const SCRATCH_KEEP: usize = 64 * 1024;

/// What `write` writes into an empty buffer, copied into a block of exactly its length
/// (`fallback` if `write` fails).
fn exact(write: impl FnOnce(&mut Vec<u8>) -> bool, fallback: &'static [u8]) -> Bytes {
    SCRATCH.with(|scratch| {
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            // Re-entered (a value that encodes another while it serializes): a buffer of its own.
            let mut own = Vec::new();
            return if write(&mut own) {
                Bytes::copy_from_slice(&own)
            } else {
                Bytes::from_static(fallback)
            };
        };
        buf.clear();
        let out = if write(&mut buf) {
            Bytes::copy_from_slice(&buf)
        } else {
            Bytes::from_static(fallback)
        };
        if buf.capacity() > SCRATCH_KEEP {
            *buf = Vec::new();
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_bytes_hold_no_spare_capacity() {
        let v = serde_json::json!({"type": "tick", "ch": "ticks:AAPL", "pad": "x".repeat(150)});
        let b = to_bytes(&v);
        assert_eq!(&b[..], serde_json::to_vec(&v).unwrap().as_slice());
        // `Bytes::from(Vec)` keeps a Vec's whole block only when it has spare capacity; a copy
        // of exactly the length converts back into a Vec of that capacity without copying.
        let back: Vec<u8> = b.into();
        assert_eq!(back.len(), back.capacity());
        let big = serde_json::json!({"pad": "y".repeat(2 * SCRATCH_KEEP)});
        assert_eq!(
            to_bytes(&big).len(),
            serde_json::to_vec(&big).unwrap().len()
        );
        SCRATCH.with(|s| assert!(s.borrow().capacity() <= SCRATCH_KEEP));
    }
}
