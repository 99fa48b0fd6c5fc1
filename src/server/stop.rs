//! Stopping: the drain on SIGTERM, then the graceful shutdown in data-flow order under one
//! deadline.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Server, ServerError};

impl Server {
    /// Graceful stop: feeds end, the pipeline finishes its batch, ingest publishes what it
    /// holds, the write-behind queue is flushed to the database, every socket gets what was
    /// queued for it and a 1001 close, then HTTP stops. The whole sequence shares one deadline,
    /// `server.shutdown_grace_ms` from now; a stage still running at the deadline is stopped by
    /// force (or, for a thread, left behind) and logged.
    pub async fn shutdown(mut self) {
        let started = Instant::now();
        let deadline = started + self.shutdown_grace;

        self.feeds_stop.cancel();
        for (name, mut feed) in self.feeds.drain(..) {
            if !finish_by(deadline, name, &mut feed).await {
                feed.abort();
            }
        }
        if let Some(p) = self.pipeline.take() {
            let mut stopping = tokio::task::spawn_blocking(move || p.stop());
            // A blocking thread cannot be aborted: past the deadline it is left to end with the
            // process.
            finish_by(deadline, "pipeline", &mut stopping).await;
        }
        // Everything queued before `Stop` is published; past the deadline, not even the stop
        // message is waited for.
        if tokio::time::timeout_at(deadline, self.ingest.stop())
            .await
            .is_err()
        {
            tracing::warn!(
                stage = "ingest",
                "shutdown deadline passed; ingest queue not drained"
            );
        }
        if let Some(thread) = self.ingest_thread.take() {
            let mut joined = tokio::task::spawn_blocking(move || thread.join());
            finish_by(deadline, "ingest", &mut joined).await;
        }
        // Every ingested tick is in the recorder's queue now; nothing more can arrive. The
        // recorder counts and logs whatever it could not write in time.
        self.recorder
            .flush_and_stop(deadline.saturating_duration_since(Instant::now()))
            .await;
        // The stream gets what ingest published before the lease is handed over, so a
        // successor continues after it.
        if let Some((stop, mut task)) = self.publisher.take() {
            stop.cancel();
            if !finish_by(deadline, "stream publisher", &mut task).await {
                task.abort();
            }
        }
        self.cluster_stop.cancel();

        self.stop.cancel();
        self.sessions.close();
        if tokio::time::timeout_at(deadline, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                stage = "sessions",
                open = self.sessions.len(),
                "shutdown deadline passed; dropping sockets"
            );
        }
        if !finish_by(deadline, "http", &mut self.http).await {
            self.http.abort();
        }
        if !finish_by(deadline, "portfolio", &mut self.portfolio_task).await {
            self.portfolio_task.abort();
        }
        // The retention task watches the same token, so it ends at its next await point.
        if let Some(mut retention) = self.retention.take()
            && !finish_by(deadline, "retention", &mut retention).await
        {
            retention.abort();
        }
        self.store.close().await;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "tickcast stopped"
        );
    }

    /// Runs until `signal` completes, then shuts down gracefully. Ends early, with
    /// [`ServerError::LeaseLost`], when this ingest node lost its lease: it must not publish
    /// beside the new leader (a supervisor restarts it as a standby).
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        let fatal = self.fatal.clone();
        let lost = tokio::select! {
            _ = signal => false,
            _ = fatal.cancelled() => true,
        };
        if lost {
            // Feeds first, at once: nothing more may be sequenced.
            self.feeds_stop.cancel();
        } else {
            // Clients move to other nodes while this one still streams to them.
            self.drain.run_out(&self.sessions).await;
        }
        self.shutdown().await;
        if lost {
            Err(ServerError::LeaseLost)
        } else {
            Ok(())
        }
    }
}

/// Waits for `task` until `deadline`; false (and a warning naming `stage`) when it is still
/// running then.
async fn finish_by<T>(deadline: Instant, stage: &'static str, task: &mut JoinHandle<T>) -> bool {
    match tokio::time::timeout_at(deadline, task).await {
        Ok(_) => true,
        Err(_) => {
            tracing::warn!(stage, "shutdown deadline passed; stopping by force");
            false
        }
    }
}
