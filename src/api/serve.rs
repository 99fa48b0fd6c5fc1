//! The HTTP listener: accepts connections up to a cap, serves each with hyper's HTTP/1 (with
//! upgrades, for `/ws`) under a header-read timeout, and drains them on shutdown.
//!
//! A hand-written accept loop instead of `axum::serve`, because the bounds a server on the open
//! internet needs are not reachable through it:
//! - **Connection cap** (`server.max_http_connections`): past it a new connection is closed at
//!   once (counted), so idle or slow sockets cannot exhaust file descriptors and memory.
//! - **Header-read timeout** (`server.header_read_timeout_ms`): a client must send a request's
//!   whole header within it, or the connection is closed (slowloris). hyper starts the same
//!   timer while a keep-alive connection waits for its next request, so it is also the idle
//!   timeout of keep-alive connections.
//!
//! An upgraded connection (a WebSocket) leaves hyper's timers: the session has its own
//! (`ws.pong_timeout_ms`, `ws.slow_consumer_timeout_ms`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::telemetry::metrics::Metrics;

/// Bounds of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// `SO_SNDBUF` for every accepted socket; 0 keeps the OS default.
    pub socket_send_buffer: usize,
}

/// Serves `router` on `listener` until `stop` is cancelled, then asks every connection to finish
/// its request in flight and waits for them (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics
                .http_connections_rejected
                .fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        // Small frames must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        // A bounded kernel send buffer bounds what a stalled peer can pin in kernel memory, and
        // makes a stall visible to the writer (and so to the 1013 logic) sooner.
        if limits.socket_send_buffer > 0 {
            let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(limits.socket_send_buffer);
        }
        let service = PeerService {
            router: router.clone(),
            peer,
        };
        let conn = http
            .serve_connection(
                TokioIo::new(tcp),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "http connection ended with an error");
            }
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

/// The router with the peer's address attached to every request, as axum's `ConnectInfo`.
#[derive(Clone)]
struct PeerService {
    router: Router,
    peer: SocketAddr,
}

impl Service<axum::http::Request<Incoming>> for PeerService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        <Router as Service<axum::http::Request<Incoming>>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut req: axum::http::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.router.call(req)
    }
}
