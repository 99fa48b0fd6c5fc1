//! Framing: the events and replies drained for one connection leave as one WebSocket frame: in
//! JSON a text frame of a single object or a JSON array of objects (the contract lets the server
//! batch), in MessagePack a binary frame of one array of messages.

use bytes::Bytes;

use super::msgpack;
use crate::model::Encoding;

/// Joins encoded messages into one frame of `encoding`. `total_len`: their summed length plus
/// one per message (a capacity hint).
pub fn encode_frame<'a>(
    encoding: Encoding,
    parts: impl ExactSizeIterator<Item = &'a Bytes>,
    total_len: usize,
) -> Bytes {
    match encoding {
        Encoding::Json => join_frame(parts, total_len),
        Encoding::Msgpack => msgpack::frame(parts, total_len),
    }
}

/// Joins encoded objects into one frame: the object itself, or a JSON array of them.
pub fn join_frame<'a>(parts: impl ExactSizeIterator<Item = &'a Bytes>, total_len: usize) -> Bytes {
    let n = parts.len();
    if n == 1 {
        let mut parts = parts;
        return parts.next().cloned().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(total_len + n + 1);
    out.push(b'[');
    for (i, p) in parts.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    out.push(b']');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn frames_join_as_object_or_array() {
        let a = Bytes::from_static(b"{\"a\":1}");
        let b = Bytes::from_static(b"{\"b\":2}");
        assert_eq!(join_frame([&a].into_iter(), 7), a);
        assert_eq!(
            serde_json::from_slice::<Value>(&join_frame([&a, &b].into_iter(), 14)).unwrap(),
            json!([{"a":1},{"b":2}])
        );
    }
}
