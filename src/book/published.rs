//! A book's view as one event published it: what the hub keeps per book channel, for
//! snapshots and for the reset that repairs a subscriber whose queue lost a delta.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::BookView;
use crate::model::Encoding;

/// The view after the event `seq`, its checksum, and its reset message per encoding: made once,
/// by the first connection that sends it, and shared by every other (a thousand subscribers
/// that fall behind on the same book get the same bytes, not a thousand encodings).
#[derive(Debug, Default)]
pub struct PublishedView {
    /// The publishing event's `seq`.
    pub seq: u64,
    /// The publishing event's `ts`: a reset made of this view says when ingest published it,
    /// not when a writer sent it.
    pub ts: i64,
    /// Shared with the connections whose copies hold it (never copied per connection).
    pub view: Arc<BookView>,
    /// [`BookView::checksum`] of `view`, computed once by whoever published it.
    pub checksum: u32,
    resets: [OnceLock<Bytes>; Encoding::COUNT],
}

impl PublishedView {
    pub fn new(seq: u64, ts: i64, view: BookView, checksum: u32) -> Self {
        Self {
            seq,
            ts,
            view: Arc::new(view),
            checksum,
            resets: Default::default(),
        }
    }

    /// The whole view as one `reset` event in `encoding`, made by `make` the first time (the
    /// writer knows the wire; books do not).
    pub fn reset(&self, encoding: Encoding, make: impl FnOnce(&Self) -> Bytes) -> Bytes {
        self.resets[encoding.index()]
            .get_or_init(|| make(self))
            .clone()
    }
}

/// Equal when they publish the same view at the same event (what was encoded of it is a cache).
impl PartialEq for PublishedView {
    fn eq(&self, other: &Self) -> bool {
        (self.seq, self.ts, self.checksum, &self.view)
            == (other.seq, other.ts, other.checksum, &other.view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_is_made_once_per_encoding() {
        let view = BookView {
            bids: vec![(1.0, 2.0)],
            asks: vec![],
        };
        let p = PublishedView::new(7, 1, view.clone(), view.checksum());
        let mut made = 0;
        for _ in 0..3 {
            let b = p.reset(Encoding::Json, |p| {
                made += 1;
                Bytes::from(format!("{}", p.seq))
            });
            assert_eq!(b, "7");
        }
        let m = p.reset(Encoding::Msgpack, |_| {
            made += 1;
            Bytes::from_static(b"m")
        });
        assert_eq!((made, m), (2, Bytes::from_static(b"m")));
    }
}
