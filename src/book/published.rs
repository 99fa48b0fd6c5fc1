//! A book's view as one event published it: what the hub keeps per book channel, for
//! snapshots and for the reset that repairs a subscriber whose queue lost a delta.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::BookView;
use crate::encoding::Encoding;

/// The view after the event `seq`, its checksum, and what connections make of it, each made
/// once by the first connection that needs it and shared by every other: its reset message per
/// encoding (a thousand subscribers that fall behind on the same book get the same bytes, not a
/// thousand encodings) and its top levels at each narrower depth subscribers asked for, with
/// their checksum.
#[derive(Debug, Default)]
pub struct PublishedView {
    /// The channel's name (`book:SYM`).
    pub channel: Arc<str>,
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
    /// `(depth, top levels, their checksum)` per narrower depth asked for: at most one entry
    /// per depth from 1 to `book.depth`.
    cuts: Mutex<Vec<(usize, Arc<BookView>, u32)>>,
}

impl PublishedView {
    pub fn new(channel: Arc<str>, seq: u64, ts: i64, view: BookView, checksum: u32) -> Self {
        Self {
            channel,
            seq,
            ts,
            view: Arc::new(view),
            checksum,
            resets: Default::default(),
            cuts: Mutex::default(),
        }
    }

    /// The top `depth` levels per side and their checksum: the view itself when it has no
    /// more, else the cut made by the first connection at that depth.
    pub fn cut(&self, depth: usize) -> (Arc<BookView>, u32) {
        let v = &self.view;
        if v.bids.len().max(v.asks.len()) <= depth {
            return (v.clone(), self.checksum);
        }
        // Never held across user code; a poisoned list is still a list of finished cuts.
        let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, view, checksum)) = cuts.iter().find(|(d, ..)| *d == depth) {
            return (view.clone(), *checksum);
        }
        let top = Arc::new(v.top(depth));
        let checksum = top.checksum();
        cuts.push((depth, top.clone(), checksum));
        (top, checksum)
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
        (&self.channel, self.seq, self.ts, self.checksum, &self.view)
            == (
                &other.channel,
                other.seq,
                other.ts,
                other.checksum,
                &other.view,
            )
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
        let p = PublishedView::new("book:X".into(), 7, 1, view.clone(), view.checksum());
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

    #[test]
    fn a_cut_is_made_once_per_depth_and_the_whole_view_is_its_own() {
        let view = BookView {
            bids: vec![(3.0, 1.0), (2.0, 1.0), (1.0, 1.0)],
            asks: vec![(4.0, 1.0)],
        };
        let p = PublishedView::new("book:X".into(), 7, 1, view.clone(), view.checksum());
        let (whole, sum) = p.cut(3);
        assert!(Arc::ptr_eq(&whole, &p.view) && sum == p.checksum);
        let (a, sa) = p.cut(1);
        let (b, _) = p.cut(1);
        assert!(Arc::ptr_eq(&a, &b), "made once");
        assert_eq!((&*a, sa), (&view.top(1), view.top(1).checksum()));
        assert_eq!(p.cut(2).0.bids.len(), 2);
    }
}
