//! `tickcast import`: history files loaded straight into the store, bypassing the live path.
//!
//! The files are the replay feed's (CSV or JSONL, the same records and field rules: `source`
//! opens them through [`Records`](crate::feed::replay::Records), plain, gzip or zstd, told by
//! their first bytes). A reader thread parses them, gives each tick its content-derived
//! identity (`identity`: re-importing stores nothing twice) and folds it into the pipeline's bar
//! builders (`bars`); the async half writes chunks of ticks and closed bars in large
//! transactions (`writer`: multi-row inserts on SQLite, `COPY` through a staging table on
//! PostgreSQL), so reading and writing overlap, and the bounded channel between them keeps
//! memory flat. A bad line is counted and reported with its line number, never fatal; a file
//! that cannot be opened or read, or a store that fails, ends the import with an
//! [`ImportError`].

mod bars;
mod identity;
mod pg_copy;
mod pg_days;
mod source;
mod sqlite_fresh;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::feed::replay::ReplayFormat;
use crate::model::now_ns;
use crate::store::{BarRecord, Store, StoreError, TickRow};
pub use identity::IMPORT_EPOCH;
pub use writer::LoadMode;

/// Ticks per chunk: one transaction each.
const CHUNK_TICKS: usize = 50_000;
/// Chunks the reader may be ahead of the writer.
const CHUNKS_AHEAD: usize = 2;
/// Rejected lines reported one by one (all are counted).
pub const REPORTED_REJECTS: usize = 20;
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub files: Vec<PathBuf>,
    /// `Auto`: by each file's extension (under `.gz`/`.zst`).
    pub format: ReplayFormat,
    /// The bar intervals built and stored for the imported range (`pipeline.bar_intervals`,
    /// what the live pipeline builds and the recorder stores).
    pub intervals: crate::model::BarIntervals,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be opened, decompressed or read, or its CSV header is unusable.
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A line that was not imported.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub file: String,
    /// The file's physical line, 1-based.
    pub line: u64,
    pub reason: String,
}

/// Counts so far, reported every second.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Records read (valid or not).
    pub records: u64,
    /// Ticks written (new or already present).
    pub ticks_written: u64,
    pub elapsed: Duration,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    /// Records read, valid or not.
    pub records: u64,
    /// Ticks stored by this import.
    pub stored: u64,
    /// Valid ticks already stored (same identity): an earlier import of the same history.
    pub already_present: u64,
    pub rejected: u64,
    /// The first [`REPORTED_REJECTS`] rejected lines.
    pub first_rejects: Vec<Rejected>,
    /// Bars written (new, or changed from an earlier import's).
    pub bars_written: u64,
    /// Trades that came after their bar's window had closed (the pipeline's late-tick rule).
    pub late_ticks: u64,
    /// How the rows were loaded (indexes kept up row by row, or built after the load).
    pub mode: LoadMode,
    pub elapsed: Duration,
}

impl ImportSummary {
    /// Records read per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What the reader thread hands the writer.
enum Chunk {
    Rows {
        ticks: Vec<TickRow>,
        bars: Vec<BarRecord>,
        records: u64,
        rejected: u64,
        rejects: Vec<Rejected>,
    },
    /// Every file is read: the late-tick count, and the windows whose bars are built from the
    /// store once every tick is in (`bars::Edge`).
    Done {
        late_ticks: u64,
        edges: Vec<bars::Edge>,
    },
    Failed(ImportError),
}

/// Imports `options.files` into `store`, calling `progress` about every second. Every file is
/// opened (and its header checked) before the store is touched; the store is then migrated as
/// `serve` does.
pub async fn import(
    store: Arc<Store>,
    options: &ImportOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let mut opened = Vec::with_capacity(options.files.len());
    for path in &options.files {
        let name = path.display().to_string();
        let records = source::open(path, options.format).map_err(|message| ImportError::Read {
            path: name.clone(),
            message,
        })?;
        opened.push((name, records));
    }
    store.migrate().await?;
    let mut writer = writer::Writer::open(store.clone()).await?;
    let mut summary = ImportSummary::default();
    let written = write(
        &mut writer,
        opened,
        options.intervals,
        &mut summary,
        started,
        &mut progress,
    )
    .await;
    if let Err(error) = written {
        writer.abort().await;
        return Err(error);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Reads the files on a thread of their own and writes what it sends, then finishes the load
/// (indexes, new days, edge windows, statistics).
async fn write(
    writer: &mut writer::Writer,
    opened: Vec<OpenFile>,
    intervals: crate::model::BarIntervals,
    summary: &mut ImportSummary,
    started: Instant,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), ImportError> {
    let (tx, mut rx) = mpsc::channel(CHUNKS_AHEAD);
    std::thread::Builder::new()
        .name("import-reader".into())
        .spawn(move || read(opened, intervals, tx))
        .map_err(|e| ImportError::Read {
            path: "(reader thread)".into(),
            message: e.to_string(),
        })?;
    let mut written = 0u64;
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.tick().await;
    loop {
        let chunk = tokio::select! {
            chunk = rx.recv() => chunk,
            _ = ticker.tick() => {
                progress(&Progress {
                    records: summary.records,
                    ticks_written: written,
                    elapsed: started.elapsed(),
                });
                continue;
            }
        };
        match chunk {
            Some(Chunk::Rows {
                ticks,
                bars,
                records,
                rejected,
                rejects,
            }) => {
                let stored = writer.ticks(&ticks).await?;
                summary.bars_written += writer.bars(&bars).await?;
                summary.stored += stored;
                summary.already_present += ticks.len() as u64 - stored;
                written += ticks.len() as u64;
                summary.records += records;
                summary.rejected += rejected;
                let room = REPORTED_REJECTS - summary.first_rejects.len();
                summary.first_rejects.extend(rejects.into_iter().take(room));
            }
            Some(Chunk::Done { late_ticks, edges }) => {
                summary.late_ticks = late_ticks;
                // Indexes built, new days attached: the edge windows read the tables whole.
                let finished = writer.finish_load().await?;
                summary.mode = finished.mode;
                summary.stored -= finished.ticks_dropped.min(summary.stored);
                summary.already_present += finished.ticks_dropped;
                summary.bars_written -= finished.bars_dropped.min(summary.bars_written);
                let mut edge_bars = Vec::with_capacity(edges.len());
                for edge in &edges {
                    let ticks = writer.window(edge).await?;
                    edge_bars.extend(bars::window_bar(edge, &ticks));
                }
                summary.bars_written += writer.bars(&edge_bars).await?;
                writer.commit().await?;
                return Ok(());
            }
            Some(Chunk::Failed(error)) => return Err(error),
            None => {
                return Err(ImportError::Read {
                    path: "(reader thread)".into(),
                    message: "stopped without finishing".into(),
                });
            }
        }
    }
}

type OpenFile = (
    String,
    crate::feed::replay::Records<Box<dyn std::io::BufRead + Send>>,
);

/// What the reader has gathered since its last chunk.
#[derive(Default)]
struct Pending {
    ticks: Vec<TickRow>,
    records: u64,
    rejected: u64,
    rejects: Vec<Rejected>,
}

impl Pending {
    /// The next chunk: the ticks so far and the bars they closed (all of them when `last`).
    fn take(
        &mut self,
        bars: &mut bars::ImportBars,
        edges: &mut Vec<bars::Edge>,
        last: bool,
    ) -> Chunk {
        let mut closed = Vec::new();
        if last {
            bars.finish(&mut closed, edges);
        } else {
            bars.drain(&mut closed, edges);
        }
        let pending = std::mem::take(self);
        Chunk::Rows {
            ticks: pending.ticks,
            bars: closed,
            records: pending.records,
            rejected: pending.rejected,
            rejects: pending.rejects,
        }
    }
}

/// The reader thread: parses every file in turn into chunks; stops early if the writer is gone.
fn read(files: Vec<OpenFile>, intervals: crate::model::BarIntervals, tx: mpsc::Sender<Chunk>) {
    let ingest_ts = now_ns();
    let mut bars = bars::ImportBars::new(intervals);
    let mut reported = 0usize;
    let mut pending = Pending::default();
    let mut edges = Vec::new();
    for (path, file) in files {
        // `k` counts identical trades within one file (see `identity`).
        let mut repeats = identity::Repeats::default();
        for (line, record) in file {
            pending.records += 1;
            match record {
                Ok(t) => {
                    let seq = repeats.seq(&t);
                    let symbol = bars.on_trade(&t.symbol, t.exchange_ts, t.price, t.size);
                    pending.ticks.push(TickRow {
                        symbol,
                        ts: t.exchange_ts,
                        ingest_ts,
                        epoch: IMPORT_EPOCH,
                        seq,
                        price: t.price,
                        size: t.size,
                        side: t.side,
                    });
                }
                Err(e) if e.is_terminal() => {
                    let _ = tx.blocking_send(Chunk::Failed(ImportError::Read {
                        path,
                        message: format!("line {line}: {e}"),
                    }));
                    return;
                }
                Err(e) => {
                    pending.rejected += 1;
                    if reported < REPORTED_REJECTS {
                        reported += 1;
                        pending.rejects.push(Rejected {
                            file: path.clone(),
                            line,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            if pending.ticks.len() >= CHUNK_TICKS
                && tx
                    .blocking_send(pending.take(&mut bars, &mut edges, false))
                    .is_err()
            {
                return;
            }
        }
    }
    if tx
        .blocking_send(pending.take(&mut bars, &mut edges, true))
        .is_ok()
    {
        let _ = tx.blocking_send(Chunk::Done {
            late_ticks: bars.late_ticks(),
            edges,
        });
    }
}
