//! A count of items a consumer has not taken yet, bounded by a capacity, that a source able to
//! wait (a file replayed at speed 0 or very fast) waits on instead of outrunning its consumer.
//!
//! Two consumers brake replay this way. The pipeline: the hub adds every tick it pushes into a
//! ring and subtracts what the pipeline takes (or finds evicted), both under its lock, so the
//! count is exact: the sum over tick channels of `last_seq - pipeline cursor`. A ring holds
//! `ring.capacity` events, so as long as the unread total stays within that, no symbol's ring can
//! evict an unread tick. The store: the recorder sets the rows it has not committed
//! (`store::Recorder`, under its queue's lock), so a replay waits for the database instead of
//! filling the write-behind queue past `database.queue_capacity`.
//!
//! Live feeds never wait on the pipeline: the market does not pause. They wait on the store only
//! when `database.on_overload = "block"`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Backlog {
    /// Items not yet taken by the consumer (ticks the pipeline has not read, rows the store
    /// has not committed).
    unread: AtomicU64,
    /// The most that may be unread (`ring.capacity`, `database.queue_capacity`).
    capacity: u64,
    /// Set while a consumer runs; with none, nobody waits.
    attached: AtomicBool,
    /// Signalled after every take.
    drained: Notify,
    /// Asks the consumer to take now rather than at its next interval (the pipeline reads it).
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
}

impl Backlog {
    pub(crate) fn new(capacity: usize) -> Self {
        let (wake_tx, wake_rx) = bounded(1);
        Self {
            unread: AtomicU64::new(0),
            capacity: capacity.max(1) as u64,
            attached: AtomicBool::new(false),
            drained: Notify::new(),
            wake_tx,
            wake_rx,
        }
    }

    /// Ticks pushed into rings (the hub, under its lock).
    pub(crate) fn published(&self, ticks: u64) {
        if ticks > 0 {
            self.unread.fetch_add(ticks, Ordering::AcqRel);
        }
    }

    /// Ticks the pipeline took or found evicted (the hub, under its lock).
    pub(crate) fn consumed(&self, ticks: u64) {
        if ticks > 0 {
            // Never below zero, even if a caller outside the pipeline read a cursor.
            let _ = self
                .unread
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    Some(u.saturating_sub(ticks))
                });
        }
        self.drained.notify_waiters();
    }

    /// A consumer that counts its own backlog (the recorder, under its queue's lock) sets it;
    /// waiters are woken when it goes down.
    pub(crate) fn set(&self, unread: u64) {
        let before = self.unread.swap(unread, Ordering::AcqRel);
        if unread < before {
            self.drained.notify_waiters();
        }
    }

    /// Items the consumer has not taken.
    pub fn unread(&self) -> u64 {
        self.unread.load(Ordering::Acquire)
    }

    /// The consumer starts: from now on senders wait for it. Returns the channel on which it
    /// is asked to take early.
    pub(crate) fn attach(&self) -> Receiver<()> {
        self.attached.store(true, Ordering::Release);
        self.wake_rx.clone()
    }

    /// The consumer stopped: nobody will drain, so nobody waits.
    pub(crate) fn detach(&self) {
        self.attached.store(false, Ordering::Release);
        self.drained.notify_waiters();
    }

    /// The largest batch a waiting sender may send at once.
    pub fn max_batch(&self) -> usize {
        self.capacity as usize
    }

    /// Waits until `ticks` more fit beside what is unread (at most [`Self::max_batch`] are
    /// ever waited for), or until shutdown; false on shutdown.
    pub(crate) async fn wait_for_room(&self, ticks: usize, shutdown: &CancellationToken) -> bool {
        let ticks = (ticks as u64).min(self.capacity);
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a drain between the check and the await wakes us.
            drained.as_mut().enable();
            if !self.attached.load(Ordering::Acquire) || self.unread() + ticks <= self.capacity {
                return true;
            }
            let _ = self.wake_tx.try_send(());
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = &mut drained => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn senders_wait_only_while_an_attached_pipeline_is_full() {
        let b = Arc::new(Backlog::new(10));
        let stop = CancellationToken::new();
        b.published(10);
        // No pipeline: nothing to wait for.
        assert!(b.wait_for_room(5, &stop).await);
        let wake = b.attach();
        let waiter = tokio::spawn({
            let (b, stop) = (b.clone(), stop.clone());
            async move { b.wait_for_room(5, &stop).await }
        });
        // The waiter asks the pipeline to read early.
        tokio::task::spawn_blocking(move || wake.recv_timeout(Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        assert!(!waiter.is_finished());
        b.consumed(4);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "6 unread + 5 do not fit in 10");
        b.consumed(1);
        assert!(waiter.await.unwrap());
        assert_eq!(b.unread(), 5);
        // A batch larger than the capacity waits for an empty backlog, not forever.
        b.consumed(100);
        assert_eq!(b.unread(), 0);
        assert!(b.wait_for_room(50, &stop).await);
        // Shutdown ends a wait.
        b.published(10);
        stop.cancel();
        assert!(!b.wait_for_room(1, &stop).await);
    }
}
