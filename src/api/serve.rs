//! The HTTP listener: accepts connections up to a cap, serves each with hyper's HTTP/1 (with
//! upgrades, for `/ws`) under a header-read timeout and the deadlines of [`super::deadlines`],
//! and drains them on shutdown.
//!
//! A hand-written accept loop instead of `axum::serve`, because the bounds a server on the open
//! internet needs are not reachable through it:
//! - **Connection cap** (`server.max_http_connections`): past it a new connection is closed at
//!   once (counted), so idle or slow sockets cannot exhaust file descriptors and memory.
//! - **Per-address share** (`server.max_http_connections_per_ip`): past it a new connection from
//!   that peer address (IPv6 by /64, as [`ClientAddr`] groups them) is closed at once (counted),
//!   so one address cannot take the whole pool. Peers in `server.trusted_proxies` are exempt:
//!   they carry many clients.
//! - **Header-read timeout** (`server.header_read_timeout_ms`): a client must send a request's
//!   whole header within it, or the connection is closed (slowloris). hyper starts the same
//!   timer while a keep-alive connection waits for its next request, so it is also the idle
//!   timeout of keep-alive connections.
//! - **Body and write deadlines** (`server.request_body_timeout_ms`,
//!   `server.response_write_timeout_ms`; [`super::deadlines`]): a request body must arrive in
//!   time and a response that nobody reads cannot hold its slot.
//!
//! A connection's slots live in its socket ([`DeadlineIo`]), so a WebSocket keeps holding them
//! after its upgrade, until it closes: WebSockets count against the pool and the per-address
//! share like any connection. An upgraded connection leaves hyper's timers and the write
//! deadline: the session has its own (`ws.pong_timeout_ms`, `ws.slow_consumer_timeout_ms`).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use super::deadlines::{DeadlineBody, DeadlineIo, WriteDeadline};
use crate::client::{ClientAddr, TrustedProxies};
use crate::telemetry::metrics::Metrics;
use crate::ws::limits::{AddressSlot, ConnectionsPerAddress};

/// Bounds of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// Connections one peer address may hold (0: no share); trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    /// Peers that carry many clients (`server.trusted_proxies`).
    pub trusted: TrustedProxies,
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this of its header.
    pub request_body_timeout: Duration,
    /// A response write that makes no progress for this long ends the connection.
    pub response_write_timeout: Duration,
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
    let pool = Pool {
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        per_address: Arc::default(),
    };
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
        let slots = match pool.admit(peer.ip(), &limits) {
            Ok(slots) => slots,
            Err(refused) => {
                let counter = match refused {
                    Refused::Pool => &metrics.http_connections_rejected,
                    Refused::AddressShare => &metrics.http_connections_rejected_per_address,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                drop(tcp);
                continue;
            }
        };
        // Small frames must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        // A bounded kernel send buffer bounds what a stalled peer can pin in kernel memory, and
        // makes a stall visible to the writer (and so to the 1013 logic) sooner.
        if limits.socket_send_buffer > 0 {
            let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(limits.socket_send_buffer);
        }
        let write_deadline = WriteDeadline::default();
        let service = PeerService {
            router: router.clone(),
            peer,
            body_timeout: limits.request_body_timeout,
            write_deadline: write_deadline.clone(),
        };
        let io = DeadlineIo::new(tcp, limits.response_write_timeout, write_deadline, slots);
        let conn = http
            .serve_connection(
                TokioIo::new(io),
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
        });
    }
    connections.close();
    connections.wait().await;
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// `server.max_http_connections` are open.
    Pool,
    /// Its address holds `server.max_http_connections_per_ip`.
    AddressShare,
}

/// The open connections: every one holds a pool permit, and one of its address's share.
struct Pool {
    permits: Arc<Semaphore>,
    per_address: Arc<ConnectionsPerAddress>,
}

/// What an open connection holds, given back when its socket (upgraded or not) is dropped.
#[derive(Debug)]
struct ConnectionSlots {
    _pool: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
}

impl Pool {
    fn admit(&self, peer: IpAddr, limits: &HttpLimits) -> Result<ConnectionSlots, Refused> {
        let address = if limits.max_connections_per_ip == 0 || limits.trusted.contains(peer) {
            None
        } else {
            Some(
                ConnectionsPerAddress::try_acquire(
                    &self.per_address,
                    ClientAddr::of(peer),
                    limits.max_connections_per_ip,
                )
                .ok_or(Refused::AddressShare)?,
            )
        };
        let pool = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Pool)?;
        Ok(ConnectionSlots {
            _pool: pool,
            _address: address,
        })
    }
}

/// The router with the peer's address attached to every request, as axum's `ConnectInfo`, and
/// its body under the body deadline; a response that switches protocols releases the
/// connection's write deadline.
#[derive(Clone)]
struct PeerService {
    router: Router,
    peer: SocketAddr,
    body_timeout: Duration,
    write_deadline: WriteDeadline,
}

impl Service<axum::http::Request<Incoming>> for PeerService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        <Router as Service<axum::http::Request<DeadlineBody>>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: axum::http::Request<Incoming>) -> Self::Future {
        let timeout = self.body_timeout;
        let mut req = req.map(|body| DeadlineBody::new(body, timeout));
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let response = self.router.call(req);
        let write_deadline = self.write_deadline.clone();
        Box::pin(async move {
            let res = response.await?;
            if res.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                write_deadline.release();
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: usize, trusted: &[&str]) -> HttpLimits {
        let trusted: Vec<String> = trusted.iter().map(|t| t.to_string()).collect();
        HttpLimits {
            max_connections: 4,
            max_connections_per_ip: per_ip,
            trusted: TrustedProxies::parse(&trusted).expect("proxies"),
            header_read_timeout: Duration::from_secs(1),
            request_body_timeout: Duration::from_secs(1),
            response_write_timeout: Duration::from_secs(1),
            socket_send_buffer: 0,
        }
    }

    fn pool(size: usize) -> Pool {
        Pool {
            permits: Arc::new(Semaphore::new(size)),
            per_address: Arc::default(),
        }
    }

    #[test]
    fn an_address_gets_its_share_and_the_pool_its_size() {
        let (pool, limits) = (pool(3), limits(2, &[]));
        let a: IpAddr = [192, 0, 2, 1].into();
        let held = [pool.admit(a, &limits), pool.admit(a, &limits)];
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(pool.admit(a, &limits).err(), Some(Refused::AddressShare));
        // An IPv6 /64 is one address.
        let v6 = |s: &str| s.parse::<IpAddr>().expect("ip");
        let other = pool
            .admit(v6("2001:db8::1"), &limits)
            .expect("another address");
        assert_eq!(
            pool.admit(v6("2001:db8::2"), &limits).err(),
            Some(Refused::Pool)
        );
        drop(held);
        assert!(pool.admit(a, &limits).is_ok(), "slots come back");
        drop(other);
    }

    #[test]
    fn a_trusted_proxy_has_no_address_share() {
        let (pool, limits) = (pool(4), limits(1, &["10.0.0.0/8"]));
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let held: Vec<_> = (0..4).map(|_| pool.admit(proxy, &limits)).collect();
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(pool.admit(proxy, &limits).err(), Some(Refused::Pool));
    }
}
