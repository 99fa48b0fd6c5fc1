//! The deadlines of an HTTP connection once a request's header is in (hyper bounds only the
//! header read):
//! - **Response write** (`server.response_write_timeout_ms`): a write that makes no progress for
//!   that long fails, and the connection with it. The rule is nginx's `send_timeout`: the time
//!   between two successful writes, not the whole response, so a slow reader of a large body is
//!   served while a reader that stopped reading is cut off.
//! - **Request body** (`server.request_body_timeout_ms`): a body must arrive whole within that
//!   long of its header; past it, reading it fails with an `io::ErrorKind::TimedOut` error (the
//!   handler answers 408 `body_timeout`) and hyper closes the connection after that answer.
//!
//! A WebSocket leaves the write deadline at its upgrade ([`WriteDeadline::release`]): the
//! session's own timers (pong, slow consumer) take over.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A connection's write deadline, shared by its socket and (as a request extension) the handlers
/// that take the socket over.
#[derive(Debug, Clone, Default)]
pub struct WriteDeadline(Arc<AtomicBool>);

impl WriteDeadline {
    /// The socket now belongs to a WebSocket session: its writes are no longer timed here.
    pub fn release(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn released(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// An accepted socket whose writes fail once one has made no progress for `write_timeout`, and
/// which holds `held` (the connection's slots in the pool) for as long as it is open, upgraded
/// or not.
#[derive(Debug)]
pub(crate) struct DeadlineIo<T, H> {
    inner: T,
    write_timeout: Duration,
    /// Armed while a write waits for room in the socket; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    deadline: WriteDeadline,
    _held: H,
}

impl<T, H> DeadlineIo<T, H> {
    pub(crate) fn new(inner: T, write_timeout: Duration, deadline: WriteDeadline, held: H) -> Self {
        Self {
            inner,
            write_timeout,
            stalled: None,
            deadline,
            _held: held,
        }
    }

    /// Clears the stall timer on progress; on a write still waiting, fails it once the timer
    /// (started by the first wait) fires.
    fn timed<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() || self.deadline.released() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.write_timeout;
        let stall = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stall.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no write progress within server.response_write_timeout_ms",
        )))
    }
}

impl<T: AsyncRead + Unpin, H: Unpin> AsyncRead for DeadlineIo<T, H> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin, H: Unpin> AsyncWrite for DeadlineIo<T, H> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.timed(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.timed(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.timed(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body that must be read whole by `deadline`.
#[derive(Debug)]
pub(crate) struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made at the first wait for data, so a body that is already in costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + timeout,
            timer: None,
        }
    }
}

/// What reading a [`DeadlineBody`] fails with once its deadline passed: an `io::Error` of kind
/// `TimedOut`, which `Problem::body_rejection` recognises (408 `body_timeout`).
pub(crate) fn body_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the request body did not arrive within server.request_body_timeout_ms",
    )
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(body_timed_out().into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A socket whose peer never reads: every write waits, as on a full TCP window.
    #[derive(Debug, Default)]
    struct NeverDrains;

    impl AsyncWrite for NeverDrains {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_without_progress_fails_at_the_deadline() {
        let mut io = DeadlineIo::new(
            NeverDrains,
            Duration::from_secs(5),
            WriteDeadline::default(),
            (),
        );
        let started = Instant::now();
        let err = io.write_all(b"response").await.expect_err("cut off");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_socket_is_not_timed() {
        let deadline = WriteDeadline::default();
        let mut io = DeadlineIo::new(NeverDrains, Duration::from_secs(5), deadline.clone(), ());
        deadline.release();
        let waited = tokio::time::timeout(Duration::from_secs(60), io.write_all(b"frame")).await;
        assert!(
            waited.is_err(),
            "a WebSocket's writes wait for its own timers"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn progress_restarts_the_deadline() {
        // A peer that takes one byte every 4 s, under a 5 s deadline: slow, never stalled.
        let (client, mut server) = tokio::io::duplex(1);
        let mut io = DeadlineIo::new(client, Duration::from_secs(5), WriteDeadline::default(), ());
        let reader = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tokio::io::AsyncReadExt::read_exact(&mut server, &mut byte)
                    .await
                    .expect("read");
            }
        });
        io.write_all(b"abcd")
            .await
            .expect("a slow reader is served");
        reader.await.expect("reader");
    }
}
