//! An event's encoded forms: the [`Encoding`]s a connection can ask for and the [`Wire`] that
//! holds one `Bytes` per encoding. A leaf: `model` (whose `Event` carries a `Wire`) and `book`
//! (whose published views cache their resets per encoding) both use it; `protocol` fills it.

use std::sync::Arc;

use bytes::Bytes;

/// The encodings a connection can ask for (`/ws?encoding=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Json,
    Msgpack,
}

impl Encoding {
    pub const COUNT: usize = 2;

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One event in every [`Encoding`], both made at ingest: a positional MessagePack event is a
/// few dozen bytes, cheaper to keep beside the JSON than to make per connection. One pointer:
/// fan-out clones it once per subscriber, and queues hold it in 8 bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Wire(Arc<Encodings>);

#[derive(Debug, PartialEq, Default)]
struct Encodings {
    json: Bytes,
    msgpack: Bytes,
    /// A `book` event's `seq` and `reset` flag, known when it was encoded: a connection's writer
    /// needs them per event and must not read them back out of the bytes.
    book: Option<(u64, bool)>,
}

impl Wire {
    pub fn new(json: Bytes, msgpack: Bytes) -> Self {
        Wire(Arc::new(Encodings {
            json,
            msgpack,
            book: None,
        }))
    }

    /// A `book` event's forms, with its `seq` and whether it is a reset.
    pub fn book(json: Bytes, msgpack: Bytes, seq: u64, reset: bool) -> Self {
        Wire(Arc::new(Encodings {
            json,
            msgpack,
            book: Some((seq, reset)),
        }))
    }

    /// `Some((seq, reset))` for a `book` event.
    pub fn book_seq(&self) -> Option<(u64, bool)> {
        self.0.book
    }

    pub fn json(&self) -> &Bytes {
        &self.0.json
    }

    pub fn msgpack(&self) -> &Bytes {
        &self.0.msgpack
    }

    pub fn get(&self, encoding: Encoding) -> &Bytes {
        match encoding {
            Encoding::Json => self.json(),
            Encoding::Msgpack => self.msgpack(),
        }
    }

    /// The size that queues and budgets count: the JSON form's, the larger of the two, so a
    /// bound holds for a connection of either encoding.
    pub fn len(&self) -> usize {
        self.0.json.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.json.is_empty()
    }
}
