//! Replay feed: plays a CSV or JSONL file of trades, paced by the records' own timestamps.
//!
//! Records have four fields and an optional side, `ts`, `symbol`, `price`, `size`, `side`, each
//! under its common names (`timestamp`, `px`, `qty`, ...: `fields::FIELDS`, `feeds/README.md`);
//! `ts` follows the rules of [`crate::timestamp`] (integer ms or ns by magnitude, or RFC 3339).
//! Replay is history, not a live feed: its ticks may be dated anywhere (no future-skew check).
//! The feed is two halves joined by a bounded channel:
//!
//! - [`records`] reads the file line by line into ticks, with [`csv`] and [`jsonl`] parsing one
//!   line each; `reader` runs it on a dedicated thread, streaming, pass after pass when looping;
//! - `pacer` is the async half: it releases the chunks to ingest at the configured speed.
//!
//! A bad record is logged with its line number, counted in `metrics.feed_errors` and skipped.

mod config;
mod csv;
mod fields;
mod jsonl;
mod pacer;
mod reader;
pub mod records;

use std::fs::File;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Feed, FeedContext, FeedError};
use crate::model::RawTick;
pub use config::{ReplayConfig, ReplayFormat, resolve_format};
pub use records::{HeaderError, MAX_LINE_BYTES, RecordError, Records};

/// Chunks the reader thread may read ahead of the pacer.
pub(crate) const READ_AHEAD_CHUNKS: usize = 2;

/// What the reader thread hands the pacer.
type Chunk = Result<Vec<RawTick>, FeedError>;

/// The replay feed (see the module docs).
#[derive(Debug)]
pub struct ReplayFeed {
    path: PathBuf,
    format: ReplayFormat,
    speed: f64,
    looping: bool,
}

// === impl ReplayFeed ===

impl ReplayFeed {
    pub fn new(cfg: &ReplayConfig) -> Result<Self, FeedError> {
        let format = resolve_format(cfg.format, &cfg.path).ok_or_else(|| {
            FeedError::Config(format!(
                "cannot tell the format of {} from its extension; set feeds.replay.format",
                cfg.path.display()
            ))
        })?;
        Ok(Self {
            path: cfg.path.clone(),
            format,
            speed: cfg.speed,
            looping: cfg.looping,
        })
    }
}

impl Feed for ReplayFeed {
    fn name(&self) -> &'static str {
        "replay"
    }

    /// History, dated whenever it was: no future-skew check.
    fn is_live(&self) -> bool {
        false
    }

    fn run(self: Box<Self>, ctx: FeedContext) -> BoxFuture<'static, Result<(), FeedError>> {
        Box::pin(async move {
            let path = self.path.display().to_string();
            let file = File::open(&self.path).map_err(|source| FeedError::Open {
                path: path.clone(),
                source,
            })?;
            let (tx, rx) = mpsc::channel::<Chunk>(READ_AHEAD_CHUNKS);
            let reader = reader::Reader {
                path: path.clone(),
                format: self.format,
                looping: self.looping,
                metrics: ctx.metrics.clone(),
            };
            std::thread::Builder::new()
                .name("replay-reader".into())
                .spawn(move || reader.run(file, tx))
                .map_err(|source| FeedError::Open {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(
                path,
                format = ?self.format,
                speed = self.speed,
                looping = self.looping,
                "replay feed started"
            );
            pacer::pace(rx, self.speed, &ctx).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;
    use std::path::Path;

    use super::*;

    fn sample(name: &str) -> Vec<RawTick> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("feeds")
            .join(name);
        let format = resolve_format(ReplayFormat::Auto, &path).expect("known extension");
        let file = File::open(&path).expect("sample file exists");
        Records::new(BufReader::new(file), format)
            .expect("header")
            .map(|(line, r)| r.unwrap_or_else(|e| panic!("{name}:{line}: {e}")))
            .collect()
    }

    #[test]
    fn sample_files_hold_the_same_valid_ticks() {
        let csv = sample("sample_ticks.csv");
        let jsonl = sample("sample_ticks.jsonl");
        assert!(csv.len() >= 200, "{}", csv.len());
        assert_eq!(csv, jsonl);
        let symbols: std::collections::BTreeSet<_> = csv.iter().map(|t| &t.symbol).collect();
        assert_eq!(symbols.len(), 5);
        assert!(csv.windows(2).all(|w| w[0].exchange_ts <= w[1].exchange_ts));
    }
}
