//! An event's encoded forms: the [`Encoding`]s a connection can ask for and the [`Wire`] that
//! holds them. A leaf: `model` (whose `Event` carries a `Wire`) and `book` (whose published
//! views cache their resets per encoding) both use it; `protocol` fills it.
//!
//! Ingest makes an event's JSON; its MessagePack form is made from that JSON the first time a
//! connection asks for it and kept beside it (one [`OnceLock`] per event), so a JSON-only
//! deployment never makes or holds one, and a MessagePack subscriber pays once per event, not
//! once per connection.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

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

/// Makes an event's MessagePack form from its JSON: given by `protocol`, which alone knows
/// both, when it encodes the event.
pub type Transcode = fn(&[u8]) -> Bytes;

/// Bytes of the MessagePack forms made on demand ([`Wire::msgpack`] of a [`Wire::transcoded`]
/// event) that are still held, in the whole process: what rings and queues keep for MessagePack
/// connections on top of the JSON.
static MSGPACK_MADE_BYTES: AtomicU64 = AtomicU64::new(0);

/// [`MSGPACK_MADE_BYTES`]: the `tickcast_msgpack_made_bytes` gauge.
pub fn msgpack_made_bytes() -> u64 {
    MSGPACK_MADE_BYTES.load(Ordering::Relaxed)
}

/// One event in every [`Encoding`]. One pointer: fan-out clones it once per subscriber, and
/// queues hold it in 8 bytes.
#[derive(Clone)]
pub struct Wire(Arc<Encodings>);

struct Encodings {
    json: Bytes,
    /// Given when the event was encoded, or made from `json` by `transcode` on first use.
    msgpack: OnceLock<Bytes>,
    /// `None`: `msgpack` was given.
    transcode: Option<Transcode>,
    /// A `book` event's `seq` and `reset` flag, known when it was encoded: a connection's writer
    /// needs them per event and must not read them back out of the bytes.
    book: Option<(u64, bool)>,
}

impl Drop for Encodings {
    fn drop(&mut self) {
        if self.transcode.is_some()
            && let Some(made) = self.msgpack.get()
        {
            MSGPACK_MADE_BYTES.fetch_sub(made.len() as u64, Ordering::Relaxed);
        }
    }
}

impl Wire {
    /// Both forms, made now (replies, a portfolio's exact decimals, per-connection events).
    pub fn new(json: Bytes, msgpack: Bytes) -> Self {
        Self::given(json, msgpack, None)
    }

    /// The JSON now; the MessagePack made by `transcode` from it when first asked for.
    pub fn transcoded(json: Bytes, transcode: Transcode) -> Self {
        Self::lazy(json, transcode, None)
    }

    /// A `book` event's forms, with its `seq` and whether it is a reset.
    pub fn book(json: Bytes, msgpack: Bytes, seq: u64, reset: bool) -> Self {
        Self::given(json, msgpack, Some((seq, reset)))
    }

    /// [`Wire::book`] with the MessagePack made on demand, as in [`Wire::transcoded`].
    pub fn book_transcoded(json: Bytes, transcode: Transcode, seq: u64, reset: bool) -> Self {
        Self::lazy(json, transcode, Some((seq, reset)))
    }

    fn given(json: Bytes, msgpack: Bytes, book: Option<(u64, bool)>) -> Self {
        Wire(Arc::new(Encodings {
            json,
            msgpack: OnceLock::from(msgpack),
            transcode: None,
            book,
        }))
    }

    fn lazy(json: Bytes, transcode: Transcode, book: Option<(u64, bool)>) -> Self {
        Wire(Arc::new(Encodings {
            json,
            msgpack: OnceLock::new(),
            transcode: Some(transcode),
            book,
        }))
    }

    /// `Some((seq, reset))` for a `book` event.
    pub fn book_seq(&self) -> Option<(u64, bool)> {
        self.0.book
    }

    pub fn json(&self) -> &Bytes {
        &self.0.json
    }

    /// The MessagePack form, made from the JSON on the first call of any holder of this event.
    pub fn msgpack(&self) -> &Bytes {
        let e = &*self.0;
        e.msgpack.get_or_init(|| {
            let made = e.transcode.map_or_else(Bytes::new, |t| t(&e.json));
            MSGPACK_MADE_BYTES.fetch_add(made.len() as u64, Ordering::Relaxed);
            made
        })
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

    /// Heap bytes this event's forms hold, as requested from the allocator: the shared block,
    /// the JSON and a MessagePack form given when it was encoded. One made later on demand is
    /// not counted here (it would change under a reader that counted it before) but in
    /// [`msgpack_made_bytes`].
    pub fn heap_bytes(&self) -> usize {
        // The `Arc`'s block: two counts and the forms.
        let block = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Encodings>();
        let given = match self.0.transcode {
            None => self.0.msgpack.get().map_or(0, Bytes::len),
            Some(_) => 0,
        };
        block + self.0.json.len() + given
    }
}

impl Default for Wire {
    fn default() -> Self {
        Wire::new(Bytes::new(), Bytes::new())
    }
}

impl PartialEq for Wire {
    /// The same bytes in both encodings (a form made on demand is made to compare).
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
            && self.book_seq() == other.book_seq()
            && self.msgpack() == other.msgpack()
    }
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wire")
            .field("json", &self.0.json)
            .field("msgpack", &self.0.msgpack.get())
            .field("book", &self.book_seq())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(json: &[u8]) -> Bytes {
        Bytes::from(json.to_ascii_uppercase())
    }

    #[test]
    fn a_transcoded_form_is_made_once_on_demand_and_counted_while_held() {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        fn counted(json: &[u8]) -> Bytes {
            CALLS.fetch_add(1, Ordering::Relaxed);
            upper(json)
        }
        let w = Wire::transcoded(Bytes::from_static(b"abc"), counted);
        let copy = w.clone();
        assert_eq!(
            CALLS.load(Ordering::Relaxed),
            0,
            "not made before it is asked for"
        );
        assert_eq!(w.get(Encoding::Json), &Bytes::from_static(b"abc"));
        assert_eq!(CALLS.load(Ordering::Relaxed), 0);
        assert_eq!(copy.get(Encoding::Msgpack), &Bytes::from_static(b"ABC"));
        assert_eq!(w.msgpack(), &Bytes::from_static(b"ABC"));
        assert_eq!(
            CALLS.load(Ordering::Relaxed),
            1,
            "made once for every holder"
        );
        assert_eq!(w.heap_bytes(), copy.heap_bytes());
    }

    #[test]
    fn heap_bytes_counts_the_block_the_json_and_a_given_msgpack() {
        let block = Wire::default().heap_bytes();
        assert!(block > 0);
        let given = Wire::new(Bytes::from(vec![1; 100]), Bytes::from(vec![2; 40]));
        assert_eq!(given.heap_bytes(), block + 140);
        let lazy = Wire::transcoded(Bytes::from(vec![1; 100]), upper);
        assert_eq!(lazy.heap_bytes(), block + 100);
        let _ = lazy.msgpack();
        // Unchanged once made: a ring that counted it at push subtracts the same at eviction.
        assert_eq!(lazy.heap_bytes(), block + 100);
    }

    #[test]
    fn book_seq_and_reset_round_trip() {
        for (seq, reset) in [(1, false), (1, true), (u64::MAX, true), (77, false)] {
            let w = Wire::book(Bytes::new(), Bytes::new(), seq, reset);
            assert_eq!(w.book_seq(), Some((seq, reset)));
            let w = Wire::book_transcoded(Bytes::new(), upper, seq, reset);
            assert_eq!(w.book_seq(), Some((seq, reset)));
        }
        assert_eq!(Wire::default().book_seq(), None);
        assert_eq!(Wire::transcoded(Bytes::new(), upper).book_seq(), None);
    }

    #[test]
    fn equal_wires_have_equal_forms_however_made() {
        let given = Wire::new(Bytes::from_static(b"x"), Bytes::from_static(b"X"));
        let lazy = Wire::transcoded(Bytes::from_static(b"x"), upper);
        assert_eq!(given, lazy);
        assert_ne!(given, Wire::new(Bytes::from_static(b"x"), Bytes::new()));
    }
}
