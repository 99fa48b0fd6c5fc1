//! A local stand-in for an exchange's WebSocket, plain (`ws://`) or TLS (`wss://`, with a
//! certificate authority made by the test), that plays recorded messages.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A certificate authority made for one test, and a server certificate it signed for
/// `localhost` and `127.0.0.1`.
pub struct TestCa {
    /// The CA certificate as PEM, for `feeds.upstream.ca_file`.
    pub ca_file: PathBuf,
    pub acceptor: TlsAcceptor,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tickcast test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");

        let ca_file =
            std::env::temp_dir().join(format!("tickcast-ca-{}-{name}.pem", std::process::id()));
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA file");
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .expect("server key DER");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .expect("server TLS config");
        TestCa {
            ca_file,
            acceptor: TlsAcceptor::from(Arc::new(server)),
        }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// A local venue: connection `i` waits for the client's subscribe message, plays `parts[i]`
/// (text messages, or the script lines [`REPEAT`], [`PING`], [`SLEEP`]), then drops the TCP
/// connection without a close frame (or, for the last part, stays open and answers nothing).
/// The first connection also waits for `start`.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    /// (connection index, first message the client sent on it)
    pub subscribes: mpsc::UnboundedReceiver<(usize, String)>,
    /// Every later text message a client sent (pings the feed sends, for example).
    pub sent: mpsc::UnboundedReceiver<(usize, String)>,
    pub start: Option<oneshot::Sender<()>>,
}

impl FakeUpstream {
    /// Lets the first connection play its part.
    pub fn go(&mut self) {
        if let Some(start) = self.start.take() {
            let _ = start.send(());
        }
    }

    /// `ws://` or `wss://` URL of this venue.
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.addr)
    }
}

pub async fn fake_upstream(parts: Vec<Vec<String>>, tls: Option<TlsAcceptor>) -> FakeUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sub_tx, subscribes) = mpsc::unbounded_channel();
    let (sent_tx, sent) = mpsc::unbounded_channel();
    let (start_tx, start_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut start = Some(start_rx);
        for i in 0.. {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let last = i + 1 >= parts.len();
            let lines = parts.get(i).cloned().unwrap_or_default();
            let conn = Conn {
                index: i,
                lines,
                last,
                start: start.take(),
                subscribed: sub_tx.clone(),
                sent: sent_tx.clone(),
            };
            match &tls {
                None => {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                        continue;
                    };
                    conn.play(ws).await;
                }
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        continue;
                    };
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        continue;
                    };
                    conn.play(ws).await;
                }
            }
        }
    });
    FakeUpstream {
        addr,
        subscribes,
        sent,
        start: Some(start_tx),
    }
}

/// Script lines: everything after this one is played again and again, until the client goes.
pub const REPEAT: &str = "@repeat";
/// Script line: a WebSocket Ping frame instead of a text message.
pub const PING: &str = "@ping";
/// Script line prefix: wait this many milliseconds (`@sleep:20`).
pub const SLEEP: &str = "@sleep:";
/// Script line prefix: wait until the client sends a text message holding this text
/// (`@await:unsubscribe`); every message read meanwhile goes to [`FakeUpstream::sent`].
pub const AWAIT: &str = "@await:";

/// Plays script lines; false when the client is gone.
async fn play_lines<S>(
    ws: &mut WebSocketStream<S>,
    lines: &[String],
    index: usize,
    sent_to: &mpsc::UnboundedSender<(usize, String)>,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for line in lines {
        if let Some(text) = line.strip_prefix(AWAIT) {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let t = t.to_string();
                        let found = t.contains(text);
                        let _ = sent_to.send((index, t));
                        if found {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return false,
                }
            }
            continue;
        }
        let sent = if line == PING {
            ws.send(Message::Ping(Vec::new().into())).await
        } else if let Some(ms) = line.strip_prefix(SLEEP) {
            let ms = ms.parse().expect("@sleep:<ms>");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(())
        } else {
            ws.send(Message::text(line.clone())).await
        };
        if sent.is_err() {
            return false;
        }
    }
    true
}

/// One accepted connection and what to play on it.
struct Conn {
    index: usize,
    lines: Vec<String>,
    last: bool,
    start: Option<oneshot::Receiver<()>>,
    subscribed: mpsc::UnboundedSender<(usize, String)>,
    sent: mpsc::UnboundedSender<(usize, String)>,
}

impl Conn {
    async fn play<S>(self, mut ws: WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let first = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => break t.to_string(),
                Some(Ok(_)) => continue,
                _ => break String::new(),
            }
        };
        let _ = self.subscribed.send((self.index, first));
        if let Some(rx) = self.start {
            let _ = rx.await;
        }
        let (once, forever) = match self.lines.iter().position(|l| l == REPEAT) {
            Some(i) => (&self.lines[..i], &self.lines[i + 1..]),
            None => (&self.lines[..], &[][..]),
        };
        if !play_lines(&mut ws, once, self.index, &self.sent).await {
            return;
        }
        while !forever.is_empty() {
            if !play_lines(&mut ws, forever, self.index, &self.sent).await {
                return;
            }
        }
        if !self.last {
            // Mid-stream: drop the socket without a closing handshake. Read what the client
            // sent first (its later subscribe messages) until it goes quiet or leaves: a socket
            // closed with unread input is reset, and the client would lose what was played.
            while let Ok(Some(Ok(_))) =
                tokio::time::timeout(std::time::Duration::from_millis(100), ws.next()).await
            {
            }
            return;
        }
        let (index, sent) = (self.index, self.sent);
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let _ = sent.send((index, t.to_string()));
                }
            }
        });
    }
}
