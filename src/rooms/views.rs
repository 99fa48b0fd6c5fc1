//! A book channel's recently published views: the newest (what snapshots and repairs send) and
//! the few before it, so a writer a few events behind the hub still serves a narrower `depth`
//! event by event, each net delta with its own `seq` (a client sees every `seq`), instead of
//! jumping to the newest view.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::book::PublishedView;

/// Views kept per book channel. A writer further behind than this on one book is falling
/// behind: it gets the newest view (a `seq` jump, as for a conflated queue).
pub(crate) const RECENT_VIEWS: usize = 32;

/// The views of a book channel's newest events, oldest first, in `seq` order.
#[derive(Debug, Default)]
pub(super) struct RecentViews(VecDeque<Arc<PublishedView>>);

impl RecentViews {
    /// Records the view an event published. An event without one (an edge that has not seen
    /// the book's reset yet) leaves the channel without a view rather than a wrong one.
    pub(super) fn push(&mut self, view: Option<&Arc<PublishedView>>) {
        let Some(view) = view else {
            self.0.clear();
            return;
        };
        if self.0.len() == RECENT_VIEWS {
            self.0.pop_front();
        }
        self.0.push_back(view.clone());
    }

    pub(super) fn latest(&self) -> Option<&Arc<PublishedView>> {
        self.0.back()
    }

    /// The view published by the event `seq`, while it is among the recent ones.
    pub(super) fn at(&self, seq: u64) -> Option<&Arc<PublishedView>> {
        let i = self.0.binary_search_by_key(&seq, |v| v.seq).ok()?;
        self.0.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(seq: u64) -> Arc<PublishedView> {
        Arc::new(PublishedView::new(
            "book:X".into(),
            seq,
            0,
            Default::default(),
            0,
        ))
    }

    #[test]
    fn keeps_the_newest_views_by_seq_and_forgets_them_on_an_event_without_one() {
        let mut r = RecentViews::default();
        for seq in 1..=(RECENT_VIEWS as u64 + 5) {
            r.push(Some(&view(seq)));
        }
        assert_eq!(r.latest().map(|v| v.seq), Some(RECENT_VIEWS as u64 + 5));
        assert_eq!(r.at(6).map(|v| v.seq), Some(6));
        assert!(r.at(5).is_none(), "the oldest were dropped");
        r.push(None);
        assert!(r.latest().is_none() && r.at(10).is_none());
    }
}
