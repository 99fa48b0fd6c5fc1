//! The target under test: its WebSocket URL, the HTTP base derived from it, and the rule that
//! it must be on this machine.
//!
//! The loadgen only ever talks to loopback. The host is checked before any socket is opened, and
//! a `localhost` name is resolved once here and every address it yields must be loopback too;
//! connections then go to the resolved address, so a later lookup cannot send traffic elsewhere.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};

/// A checked loopback target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, used for the WebSocket handshake (`Host`, path).
    pub ws_url: String,
    /// `host:port` as written in the URL, for the HTTP `Host` header.
    pub authority: String,
    /// Resolved loopback address every connection goes to.
    pub addr: SocketAddr,
}

/// Host and port split out of a `ws://` URL, before resolution.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    pub host: String,
    pub port: u16,
    pub authority: String,
    pub path: String,
}

/// Splits `ws://host[:port]/path`; refuses other schemes (no TLS here).
pub fn parse_ws_url(url: &str) -> anyhow::Result<Parsed> {
    let rest = if let Some(r) = url.strip_prefix("ws://") {
        r
    } else if url.starts_with("wss://") {
        bail!("wss:// is not supported: the loadgen speaks plain ws:// to a loopback server");
    } else {
        bail!("url must start with ws:// (got {url:?})");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        bail!("url {url:?} has no usable host");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').context("unterminated [ipv6] host")?;
        let port = v6[end + 1..].strip_prefix(':');
        (&v6[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().with_context(|| format!("bad port in {url:?}"))?,
        None => 80,
    };
    Ok(Parsed {
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

/// Whether a literal host is loopback without asking any resolver: `localhost`, 127.0.0.0/8,
/// `::1` and the IPv4-mapped `::ffff:127.x.y.z`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(is_loopback_ip)
}

pub fn is_loopback_ip(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

impl Target {
    /// Parses, checks and resolves `url`; any non-loopback host is an error.
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        let p = parse_ws_url(url)?;
        if !is_loopback_host(&p.host) {
            bail!(
                "refusing target host {:?}: the loadgen only talks to loopback \
                 (127.0.0.0/8, localhost, ::1)",
                p.host
            );
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((p.host.as_str(), p.port))
            .await
            .with_context(|| format!("resolving {:?}", p.host))?
            .collect();
        if let Some(bad) = addrs.iter().find(|a| !is_loopback_ip(a.ip())) {
            bail!("{:?} resolved to non-loopback {bad}; refusing", p.host);
        }
        // Prefer IPv4 for `localhost`, which is where servers here bind by default.
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .with_context(|| format!("{:?} resolved to nothing", p.host))?;
        Ok(Target {
            ws_url: url.to_string(),
            authority: p.authority,
            addr,
        })
    }

    /// `http://host:port`, the REST base derived from the WebSocket URL.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        let cases = [
            ("127.0.0.1", true),
            ("127.255.3.4", true),
            ("localhost", true),
            ("LOCALHOST", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("0.0.0.0", false),
            ("10.0.0.1", false),
            ("192.168.1.10", false),
            ("8.8.8.8", false),
            ("::", false),
            ("example.com", false),
            ("localhost.example.com", false),
            ("128.0.0.1", false),
        ];
        for (host, want) in cases {
            assert_eq!(is_loopback_host(host), want, "{host}");
        }
    }

    #[test]
    fn url_parsing() {
        let p = parse_ws_url("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.path.as_str()),
            ("127.0.0.1", 8080, "/ws")
        );
        let p = parse_ws_url("ws://[::1]:9000/ws?v=1").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.path.as_str()),
            ("::1", 9000, "/ws?v=1")
        );
        assert_eq!(p.authority, "[::1]:9000");
        let p = parse_ws_url("ws://localhost").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.path.as_str()),
            ("localhost", 80, "/")
        );
        assert!(parse_ws_url("wss://127.0.0.1/ws").is_err());
        assert!(parse_ws_url("http://127.0.0.1/ws").is_err());
        assert!(parse_ws_url("ws://user@127.0.0.1/ws").is_err());
        assert!(parse_ws_url("ws://127.0.0.1:x/ws").is_err());
    }

    #[tokio::test]
    async fn resolve_refuses_remote() {
        let err = Target::resolve("ws://10.1.2.3:8080/ws").await.unwrap_err();
        assert!(err.to_string().contains("only talks to loopback"), "{err}");
        let t = Target::resolve("ws://127.0.0.1:8080/ws").await.unwrap();
        assert_eq!(t.http_base(), "http://127.0.0.1:8080");
        assert!(t.addr.ip().is_loopback());
    }
}
