//! Limits keyed by who the caller really is: client address for anything unverified (so random
//! tokens buy nothing), verified keys by key, per-address WebSocket caps, and the HTTP listener's
//! own bounds (header-read timeout, connection cap).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::util;

/// Reads until the server closes the connection (or the bound passes); true when it closed.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read_to_eof = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, read_to_eof).await.is_ok()
}

/// A WebSocket handshake from a chosen loopback source address; the HTTP status it got.
async fn upgrade_from(source: [u8; 4], server: SocketAddr) -> u16 {
    let mut s = connect_from(source, server, None).await;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Keep an accepted socket open: it holds its slot until the test ends.
    if status == 101 {
        std::mem::forget(s);
    }
    status
}

#[tokio::test]
async fn random_bearer_tokens_from_one_address_get_429() {
    let mut c = util::config();
    c.api.requests_per_second = 1;
    c.api.burst = 5;
    let srv = util::start(c).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let token = format!("random-token-{i}-{}", 1000 + i * 7);
        statuses.push(srv.get("/api/v1/symbols", Some(&token)).await.0);
    }
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn a_verified_key_is_limited_by_itself_not_by_its_address() {
    let mut c = util::config();
    c.api.requests_per_second = 1;
    c.api.burst = 3;
    let srv = util::start(c).await;
    let (_, key) = srv
        .server()
        .store()
        .create_user("limits")
        .await
        .expect("user");
    // The first request pays from the address bucket and verifies the key.
    assert_eq!(srv.get("/api/v1/portfolio", Some(&key)).await.0, 200);
    // Exhaust the address's bucket anonymously.
    let mut anonymous = Vec::new();
    for _ in 0..4 {
        anonymous.push(srv.get("/api/v1/symbols", None).await.0);
    }
    assert_eq!(anonymous.last(), Some(&429), "{anonymous:?}");
    // The verified key still has its own burst.
    assert_eq!(srv.get("/api/v1/portfolio", Some(&key)).await.0, 200);
}

#[tokio::test]
async fn every_route_is_limited_including_health_metrics_and_ingest() {
    let mut c = util::config();
    c.api.requests_per_second = 1;
    c.api.burst = 2;
    let srv = util::start(c).await;
    for path in ["/readyz", "/metrics"] {
        let mut last = 0;
        for _ in 0..4 {
            last = srv.get(path, None).await.0;
        }
        assert_eq!(last, 429, "{path}");
    }
    let (status, body) = srv.ingest(Value::Array(vec![])).await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn per_address_websocket_cap_holds_and_other_addresses_are_unaffected() {
    let mut c = util::config();
    c.ws.max_connections_per_ip = 2;
    let srv = util::start(c).await;
    let a = [127, 0, 0, 1];
    assert_eq!(upgrade_from(a, srv.addr).await, 101);
    assert_eq!(upgrade_from(a, srv.addr).await, 101);
    assert_eq!(
        upgrade_from(a, srv.addr).await,
        503,
        "third from one address"
    );
    // Linux routes all of 127.0.0.0/8 to loopback: another address has its own count.
    assert_eq!(upgrade_from([127, 0, 0, 2], srv.addr).await, 101);
    let rejected = srv
        .server()
        .metrics()
        .connections_rejected_per_address
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(rejected, 1);
}

#[tokio::test]
async fn websocket_upgrades_are_rate_limited_per_address() {
    let mut c = util::config();
    c.ws.upgrades_per_second = 1;
    c.ws.upgrade_burst = 2;
    let srv = util::start(c).await;
    let got = [
        upgrade_from([127, 0, 0, 3], srv.addr).await,
        upgrade_from([127, 0, 0, 3], srv.addr).await,
        upgrade_from([127, 0, 0, 3], srv.addr).await,
    ];
    assert_eq!(got, [101, 101, 429]);
    assert_eq!(upgrade_from([127, 0, 0, 4], srv.addr).await, 101);
}

#[tokio::test]
async fn a_slow_header_client_is_cut_off() {
    let mut c = util::config();
    c.server.header_read_timeout_ms = 300;
    let srv = util::start(c).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    // Half a request line, then nothing: the slowloris pattern.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(
        closed_by_server(&mut s, Duration::from_secs(20)).await,
        "the server kept a connection whose header never finished"
    );
    // A client that sends its header in time is served.
    assert_eq!(srv.get("/healthz", None).await.0, 200);
}

#[tokio::test]
async fn connections_past_the_http_cap_are_closed_at_once() {
    let mut c = util::config();
    c.ws.max_connections = 2;
    c.server.max_http_connections = 2;
    c.server.header_read_timeout_ms = 30_000;
    let srv = util::start(c).await;
    // Two idle connections take every slot (their header timer is long).
    let _held: Vec<TcpStream> = vec![
        TcpStream::connect(srv.addr).await.expect("1st"),
        TcpStream::connect(srv.addr).await.expect("2nd"),
    ];
    let mut third = TcpStream::connect(srv.addr)
        .await
        .expect("the kernel accepts");
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        closed_by_server(&mut third, Duration::from_secs(20)).await,
        "a connection past the cap was served"
    );
    let rejected = srv
        .server()
        .metrics()
        .http_connections_rejected
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(rejected >= 1, "{rejected}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mut c = util::config();
    c.server.header_read_timeout_ms = 300;
    let srv = util::start(c).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // Kept alive, then idle: the server closes it.
    assert!(
        closed_by_server(&mut s, Duration::from_secs(20)).await,
        "an idle keep-alive connection was kept forever"
    );
}

/// The dashboard's chart module (~198 KB): the largest response a client can ask for without
/// credentials.
const LARGE_ASSET: &str =
    "/assets/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";

/// A connection from a chosen loopback source address, with a chosen receive buffer (`None`:
/// the OS default).
async fn connect_from(source: [u8; 4], server: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source address");
    socket.connect(server).await.expect("connect")
}

/// `GET /healthz` on a new connection from `source`: the status, or `None` when the server closed
/// the connection without an answer.
async fn healthz_from(source: [u8; 4], server: SocketAddr) -> Option<u16> {
    let mut s = connect_from(source, server, None).await;
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut head = [0u8; 12];
    match tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head)).await {
        Ok(Ok(_)) => std::str::from_utf8(&head[9..12]).ok()?.parse().ok(),
        Ok(Err(_)) => None,
        Err(_) => panic!("neither answered nor closed within 10 s"),
    }
}

/// Reads until the server closes or resets the connection (bounded): the bytes it got.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()
}

#[tokio::test]
async fn stalled_readers_of_a_large_asset_lose_their_slots_and_other_addresses_are_served() {
    const PIPELINED: usize = 16;
    let mut c = util::config();
    c.server.max_http_connections = 8;
    c.server.max_http_connections_per_ip = 4;
    c.server.response_write_timeout_ms = 1000;
    // Long enough that only the write deadline can end a stalled connection.
    c.server.header_read_timeout_ms = 60_000;
    c.ws.max_connections = 8;
    c.ws.max_connections_per_ip = 4;
    let srv = util::start(c).await;
    let metrics = srv.server().metrics().clone();
    let requests = format!("GET {LARGE_ASSET} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(PIPELINED);
    // Eight connections from 127.0.0.1, each asking for 16 copies of the chart module with a tiny
    // receive window and never reading: only its share of four gets in.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from([127, 0, 0, 1], srv.addr, Some(1024)).await;
        let _ = s.write_all(requests.as_bytes()).await;
        stalled.push(s);
    }
    let over_share = metrics
        .http_connections_rejected_per_address
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(over_share, 4, "connections past 127.0.0.1's share");
    // (i) While they stall, another address is served.
    assert_eq!(healthz_from([127, 0, 0, 2], srv.addr).await, Some(200));
    // (ii) The write deadline ends the stalled connections and their slots come back: a new
    // connection from 127.0.0.1 is served again (bounded wait).
    let mut served_again = false;
    for _ in 0..100 {
        if healthz_from([127, 0, 0, 1], srv.addr).await == Some(200) {
            served_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served_again, "127.0.0.1's slots never came back");
    // Each stalled connection was closed with its responses unsent.
    let whole = PIPELINED * 190_000;
    let mut cut = 0;
    for s in &mut stalled {
        let got = read_until_closed(s, Duration::from_secs(20))
            .await
            .expect("closed by the server");
        cut += usize::from(got < whole);
    }
    assert!(cut >= 4, "{cut} of the stalled connections were cut off");
}

#[tokio::test]
async fn a_body_that_never_finishes_is_cut_at_the_body_deadline() {
    let mut c = util::config();
    c.server.request_body_timeout_ms = 500;
    c.server.header_read_timeout_ms = 60_000;
    let srv = util::start(c).await;
    let mut s = connect_from([127, 0, 0, 1], srv.addr, None).await;
    // Promises 1,000 bytes, sends 10, then nothing.
    let head = format!(
        "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"symbol\"",
        util::TOKEN
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the server waited for the body past its deadline"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[tokio::test]
async fn websockets_hold_their_http_slots() {
    let mut c = util::config();
    c.server.max_http_connections = 3;
    c.ws.max_connections = 3;
    let srv = util::start(c).await;
    for _ in 0..3 {
        assert_eq!(upgrade_from([127, 0, 0, 1], srv.addr).await, 101);
    }
    // Three open WebSockets are three open connections: the pool is full.
    assert_eq!(healthz_from([127, 0, 0, 2], srv.addr).await, None);
    let rejected = srv
        .server()
        .metrics()
        .http_connections_rejected
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(rejected, 1);
}
