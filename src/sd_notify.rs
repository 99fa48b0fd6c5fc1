//! Readiness and stopping reported to systemd (`Type=notify`): the few lines of the sd_notify
//! protocol, one datagram of `KEY=value` lines to the socket named by `$NOTIFY_SOCKET`.
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd, or not `Type=notify`) nothing is sent.
//! A failed send is logged and otherwise ignored: the service works without it, and systemd
//! reports a missing READY=1 by its own start timeout.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::UnixDatagram;

/// The server listens: systemd may start units ordered after this one.
pub const READY: &str = "READY=1";
/// The server began draining and shutting down.
pub const STOPPING: &str = "STOPPING=1";

/// Sends `state` to `$NOTIFY_SOCKET` when set.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    match send(&socket, state) {
        Ok(()) => tracing::debug!(state, "systemd notified"),
        Err(error) => tracing::warn!(%error, state, "cannot notify systemd"),
    }
}

/// One datagram to `socket`: a path, or `@name` for Linux's abstract namespace.
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    let bytes = socket.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(state.as_bytes(), &addr)?;
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract sockets are Linux only",
            ));
        }
        None if bytes.first() == Some(&b'/') => {
            sender.send_to(state.as_bytes(), socket)?;
        }
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor @abstract",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_socket(name: &str) -> (std::path::PathBuf, UnixDatagram) {
        let dir = std::env::temp_dir().join(format!("tickcast-sdn-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        (path, sock)
    }

    #[test]
    fn sends_one_datagram_to_a_path() {
        let (path, sock) = temp_socket("path");
        send(path.as_os_str(), READY).unwrap();
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tickcast-sdn-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), STOPPING).unwrap();
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_relative_socket_name_is_an_error_not_a_send() {
        let err = send(OsStr::new("notify.sock"), READY).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = send(OsStr::new("/no/such/dir/notify"), READY).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
