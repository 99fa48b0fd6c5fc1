//! The floor of `benches/compare.sh` (issue 25): the least a server can do to deliver the same
//! events. Each feed batch is framed once (one WebSocket text frame holding a JSON array of tick
//! objects padded to `--event-bytes`, the size tickcast's ticks have) and that one buffer is
//! written to every socket with one blocking `write` per socket per batch, from one thread.
//! Nothing else: no per-socket queue, task, timer, encoding or lock on the way out.
//!
//! Speaks only what the loadgen's `bots` scenario needs: the upgrade, one `subscribe` op
//! answered with an `ack` (every socket gets every tick, whatever it asked for: `ticks:*`), and
//! the closing handshake (a sweep every 250 ms reads each socket without blocking, answers a
//! close frame and drops the socket). No snapshot: the loadgen baselines a channel on its first
//! event. A socket that cannot take a frame within 5 s is dropped; until then it holds up every
//! socket after it (blocking writes, one thread: the floor, not a design).
//!
//! Usage: tickcast-floor --port N --symbols N --rate N --batch-ms N [--event-bytes 131]
//! (loopback only).

mod handshake;

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest a blocking write may take before its socket is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often every socket is read, without blocking, for its close frame.
const SWEEP: Duration = Duration::from_millis(250);

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn main() -> io::Result<()> {
    let port = arg("port", 8092.0) as u16;
    let nsym = (arg("symbols", 100.0) as usize).max(1);
    let rate = arg("rate", 1000.0);
    let batch = Duration::from_secs_f64(arg("batch-ms", 10.0).max(1.0) / 1000.0);
    let event_bytes = arg("event-bytes", 131.0) as usize;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let joined: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    {
        let joined = joined.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                match open(s) {
                    Ok(s) => joined.lock().unwrap_or_else(|e| e.into_inner()).push(s),
                    Err(e) => eprintln!("floor: connection refused: {e}"),
                }
            }
        });
    }
    let mut feed = Feed::new(nsym, event_bytes);
    let mut socks: Vec<TcpStream> = Vec::new();
    let mut carry = 0.0;
    let mut last = Instant::now();
    let mut next = last + batch;
    let mut next_sweep = last + SWEEP;
    loop {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += batch;
        socks.append(&mut joined.lock().unwrap_or_else(|e| e.into_inner()));
        // Ticks owed follow the wall clock, as the Rust peer's: a late wake makes a bigger batch.
        let now = Instant::now();
        carry += rate * now.duration_since(last).as_secs_f64();
        last = now;
        let n = carry as usize;
        carry -= n as f64;
        if n > 0 {
            let frame = feed.frame(n);
            socks.retain_mut(|s| s.write_all(frame).is_ok());
        }
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            socks.retain_mut(|s| !closing(s));
        }
    }
}

/// Upgrades one socket and answers its first op (the `subscribe`); then it only receives.
fn open(mut s: TcpStream) -> io::Result<TcpStream> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    handshake::accept(&mut s)?;
    let (opcode, op) = handshake::read_frame(&mut s)?;
    if opcode != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "first frame is not text",
        ));
    }
    let op = String::from_utf8_lossy(&op);
    let id = op
        .split_once(r#""id":"#)
        .map(|(_, rest)| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "null".into());
    let ack = format!(r#"{{"type":"ack","id":{id},"op":"subscribe","channels":["ticks:*"]}}"#);
    let mut msg = handshake::frame_header(1, ack.len());
    msg.extend_from_slice(ack.as_bytes());
    s.write_all(&msg)?;
    s.set_read_timeout(None)?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(s)
}

/// Reads what the peer sent without blocking; true when the socket is done (EOF, an error, or a
/// close frame, which is answered first).
fn closing(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    // SAFETY: `buf` is valid for `buf.len()` bytes and the descriptor is open (owned by `s`).
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n < 0 => io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock,
        // The client's frames are small; the only one it sends after its subscribe is the close.
        _ if buf[0] & 0x0f == 8 => {
            let _ = s.write_all(&[0x88, 0x02, 0x03, 0xe8]);
            true
        }
        _ => false,
    }
}

/// A synthetic market: per-symbol `seq` and price, ticks padded to one size.
struct Feed {
    names: Vec<String>,
    seq: Vec<u64>,
    price: Vec<f64>,
    rng: u64,
    event_bytes: usize,
    buf: Vec<u8>,
}

impl Feed {
    fn new(nsym: usize, event_bytes: usize) -> Self {
        Self {
            names: (0..nsym).map(|i| format!("S{i:03}")).collect(),
            seq: vec![0; nsym],
            price: (0..nsym).map(|i| 50.0 + i as f64).collect(),
            rng: 0x2545_f491_4f6c_dd1d,
            event_bytes,
            buf: Vec::new(),
        }
    }

    fn next(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` ticks as one WebSocket text frame (header included): what every socket is sent.
    fn frame(&mut self, n: usize) -> &[u8] {
        let mut body = Vec::with_capacity(n * (self.event_bytes + 1) + 2);
        body.push(b'[');
        for i in 0..n {
            if i > 0 {
                body.push(b',');
            }
            let s = (self.next() * self.names.len() as f64) as usize % self.names.len();
            self.price[s] = (self.price[s] * (1.0 + (self.next() - 0.5) * 0.001)).max(1.0);
            self.seq[s] += 1;
            let side = if self.next() < 0.5 { "buy" } else { "sell" };
            let size = 1 + (self.next() * 500.0) as u32;
            let ts = now_ns();
            let start = body.len();
            let _ = write!(
                body,
                r#"{{"type":"tick","ch":"ticks:{}","seq":{},"ts":{ts},"price":{:.2},"size":{},"side":"{side}","xts":{}"#,
                self.names[s],
                self.seq[s],
                self.price[s],
                size,
                ts.saturating_sub(3_000_000),
            );
            // JSON whitespace up to the size asked for.
            let pad = self.event_bytes.saturating_sub(body.len() - start + 1);
            body.resize(body.len() + pad, b' ');
            body.push(b'}');
        }
        body.push(b']');
        self.buf = handshake::frame_header(1, body.len());
        self.buf.extend_from_slice(&body);
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_padded_to_the_size_asked_for() {
        let mut f = Feed::new(3, 131);
        let frame = f.frame(4).to_vec();
        // Header: FIN + text, 16-bit length.
        assert_eq!(frame[0], 0x81);
        assert_eq!(frame[1], 126);
        let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
        let body = std::str::from_utf8(&frame[4..]).unwrap();
        assert_eq!(body.len(), len);
        assert_eq!(len, 4 * 131 + 3 + 2);
        assert!(body.starts_with(r#"[{"type":"tick","ch":"ticks:S"#));
        assert!(body.ends_with("}]"));
    }
}
