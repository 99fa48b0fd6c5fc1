//! Shutdown signals.
//!
//! The handlers are installed by [`Signals::listen`] itself, not when a future is first polled:
//! the binary listens before it tells systemd READY=1, so a SIGTERM sent right after that (a
//! `systemctl stop` on the heels of a start) drains and flushes instead of killing the process
//! by the signal's default action.

/// SIGINT and SIGTERM, caught from the moment [`Signals::listen`] returns.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers now. Must be called inside a Tokio runtime. A handler that cannot
    /// be installed is logged, and that signal keeps its default action.
    pub fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let install = |kind: SignalKind, name: &'static str| match signal(kind) {
                Ok(s) => Some(s),
                Err(error) => {
                    tracing::warn!(%error, signal = name, "cannot listen for the signal");
                    None
                }
            };
            Signals {
                interrupt: install(SignalKind::interrupt(), "SIGINT"),
                terminate: install(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Completes on SIGINT or SIGTERM (received since [`Signals::listen`]).
    pub async fn recv(self) {
        #[cfg(unix)]
        {
            async fn next(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(self.interrupt) => tracing::info!("SIGINT received"),
                () = next(self.terminate) => tracing::info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received");
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use super::Signals;

    /// A SIGTERM that arrives after `listen` and before anyone waits is caught (and then
    /// received): with a handler installed only at the first poll, it would kill this process.
    #[tokio::test]
    async fn a_signal_between_listen_and_recv_is_caught() {
        let signals = Signals::listen();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(60), signals.recv())
            .await
            .expect("the SIGTERM sent before recv is received");
    }
}
