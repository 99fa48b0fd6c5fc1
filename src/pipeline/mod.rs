//! The batching pipeline: every `pipeline.interval_ms` (aligned to wall-clock boundaries, plus
//! `close_delay_ms`), take each symbol's new ticks from its ring, update its bars at every
//! configured interval (`bar_intervals`: 1 s ... 1 d) and its indicators on the worker pool, and publish the results through ingest (which assigns their
//! `seq`). Bars close by each symbol's event clock, not by the wall clock (see `bars`), so
//! replayed history gets exactly the bars its timestamps define.
//!
//! A coordinator thread drives batches; it never touches the async runtime. A batch that starts
//! late or overruns its interval is logged and counted (`tickcast_pipeline_late_batches_total`),
//! never skipped: the next batch takes every tick since the last one and closes every bar that
//! ended in between.

pub mod indicators;
mod indicators_config;
pub mod predictions;
pub(crate) mod ticker;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Deserialize;

use crate::config_section::{ConfigError, check};
use crate::ingest::{Derived, IngestHandle};
use crate::model::{
    BarInterval, BarIntervals, ChannelId, IndicatorPeriods, IndicatorValues, Kind, SymbolId,
    now_ms, now_ns,
};
use crate::rooms::Hub;
use crate::telemetry::events::{PipelineBatchLate, PipelineBatchOverran, PipelineTicksMissed};
use crate::telemetry::metrics::Metrics;
use predictions::{PredictionSettings, Predictor};
use worker::{BatchClock, SymbolTicks, WorkerPool};

pub use indicators_config::IndicatorsConfig;
pub(crate) use indicators_config::{upgrade_legacy_env, upgrade_legacy_keys};

/// `[pipeline]` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub enabled: bool,
    pub interval_ms: u64,
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    /// Batches run this long after each interval boundary, so ticks in transit (up to this
    /// much behind their exchange time) are read before their bar closes.
    pub close_delay_ms: u64,
    /// Publish the bar in progress of every interval above 1 s with `"final": false`, at most
    /// once a second per symbol (on a batch that read new ticks of it).
    pub partial_bars: bool,
    /// The bar intervals built, streamed (`bars.<interval>`) and stored (names of
    /// `bar_interval`'s table; `1s` and `1m` required).
    pub bar_intervals: Vec<String>,
    /// Compute the rolling 24 h `ticker` channels (`pipeline::ticker`).
    pub ticker: bool,
    /// Publish every model's forecast on `predictions:SYM` when a 1 s bar closes
    /// (`pipeline::predictions`, off the batch).
    pub predictions: bool,
    /// `[pipeline.indicators]`: the periods of each bar-close indicator (the v1 keys
    /// `sma_period`, ... are rewritten into these lists as the config loads).
    pub indicators: IndicatorsConfig,
}

impl PipelineConfig {
    /// The periods the workers compute with and the wire fields are named after.
    pub(crate) fn periods(&self) -> IndicatorPeriods {
        self.indicators.periods()
    }

    /// The configured intervals (checked by [`PipelineConfig::validate`] at load; the v1 pair
    /// for a config that skipped it).
    pub fn intervals(&self) -> BarIntervals {
        BarIntervals::from_names(&self.bar_intervals).unwrap_or(BarIntervals::V1)
    }

    pub(crate) fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.interval_ms >= 10,
            "pipeline.interval_ms",
            "must be at least 10",
        )?;
        check(
            self.close_delay_ms < self.interval_ms,
            "pipeline.close_delay_ms",
            "must be below pipeline.interval_ms",
        )?;
        BarIntervals::from_names(&self.bar_intervals)
            .map_err(|e| ConfigError::key("pipeline.bar_intervals", e))?;
        self.periods().validate().map_err(|e| {
            ConfigError::key(
                &format!("pipeline.indicators.{}", e.indicator()),
                e.to_string(),
            )
        })
    }
}

/// The latest indicator values per symbol, for REST: one write lock per batch, reads never wait
/// on the pipeline's computation.
#[derive(Debug, Default)]
pub struct LatestIndicators {
    values: RwLock<HashMap<SymbolId, (IndicatorValues, i64)>>,
}

impl LatestIndicators {
    /// Values and the ns timestamp at which they were computed.
    pub fn get(&self, symbol: SymbolId) -> Option<(IndicatorValues, i64)> {
        self.values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&symbol)
            .cloned()
    }

    pub(crate) fn store(&self, latest: Vec<(SymbolId, IndicatorValues)>, ts: i64) {
        let mut map = self.values.write().unwrap_or_else(|e| e.into_inner());
        for (s, v) in latest {
            map.insert(s, (v, ts));
        }
    }
}

/// The running pipeline; dropping [`Pipeline::stop`]'s result waits for it.
pub(crate) struct Pipeline {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// `predictions`: what the `predictions:SYM` forecasts are computed with (REST's
    /// settings), used when `config.predictions` is on.
    pub fn start(
        config: PipelineConfig,
        hub: Arc<Hub>,
        ingest: IngestHandle,
        latest: Arc<LatestIndicators>,
        metrics: Arc<Metrics>,
        predictions: PredictionSettings,
    ) -> std::io::Result<Pipeline> {
        let pool = WorkerPool::new(config.worker_count(), config.periods(), config.intervals())?;
        let predictor = if config.predictions {
            Some(Predictor::for_hub(
                predictions,
                hub.clone(),
                ingest.clone(),
            )?)
        } else {
            None
        };
        let (stop, stopped) = bounded::<()>(1);
        let wake = hub.backlog().attach();
        let thread = std::thread::Builder::new()
            .name("tickcast-pipeline".into())
            .spawn(move || {
                Coordinator {
                    config,
                    hub,
                    ingest,
                    latest,
                    metrics,
                    pool,
                    predictor,
                    cursors: HashMap::new(),
                }
                .run(stopped, wake)
            })?;
        Ok(Pipeline {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops after the batch in progress (blocking; call from a blocking context).
    pub(crate) fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Coordinator {
    config: PipelineConfig,
    hub: Arc<Hub>,
    ingest: IngestHandle,
    latest: Arc<LatestIndicators>,
    metrics: Arc<Metrics>,
    pool: WorkerPool,
    /// Forecasts when 1 s bars close (`pipeline.predictions`).
    predictor: Option<Predictor>,
    /// Last tick `seq` consumed per symbol.
    cursors: HashMap<SymbolId, u64>,
}

impl Coordinator {
    fn run(mut self, stopped: Receiver<()>, wake: Receiver<()>) {
        let interval = self.config.interval_ms.max(1) as i64;
        let delay = self.config.close_delay_ms as i64;
        tracing::info!(
            workers = self.pool.workers(),
            interval_ms = interval,
            "pipeline started"
        );
        loop {
            let now_ms = now_ms();
            // Next boundary plus the close delay.
            let due = (now_ms - delay).div_euclid(interval) * interval + interval + delay;
            let wait = Duration::from_millis((due - now_ms).max(0) as u64);
            // A replay waiting for the rings to drain asks for an early batch. It closes bars by
            // the trades read so far only (no wall time added to any event clock): the replay
            // is paused only for this batch, so its next trades are not late.
            let early = crossbeam_channel::select! {
                recv(stopped) -> _ => break,
                recv(wake) -> _ => true,
                default(wait) => false,
            };
            let started_ms = crate::model::now_ms();
            if !early && started_ms - due > interval / 2 {
                PipelineBatchLate {
                    late_ms: started_ms - due,
                }
                .emit(&self.metrics);
            }
            let clock_ms = if early { i64::MIN } else { started_ms };
            if !self.batch(clock_ms) {
                break;
            }
        }
        self.hub.backlog().detach();
        if let Some(p) = self.predictor.take() {
            p.stop();
        }
        tracing::info!("pipeline stopped");
    }

    /// One batch, with event clocks read at wall time `now_ms` (`i64::MIN`: the newest
    /// exchange times alone); false when ingest is gone.
    fn batch(&mut self, now_ms: i64) -> bool {
        let started = Instant::now();
        let taken = self.hub.take_new_ticks(&mut self.cursors);
        let mut work = Vec::with_capacity(taken.len());
        for (symbol, ticks, missed) in taken {
            if missed > 0 {
                PipelineTicksMissed { symbol, missed }.emit(&self.metrics);
            }
            work.push(SymbolTicks { symbol, ticks });
        }
        let clock = BatchClock {
            now_ms,
            partial_bars: self.config.partial_bars,
            wall_ms: crate::model::now_ms(),
            ticker: self.config.ticker,
        };
        let mut out = self.pool.run_batch(work, clock);
        // The book's top as it stands at this batch: mid, spread and imbalance beside the
        // indicators (read once per symbol the batch touched).
        let mut tops = HashMap::new();
        let mut top = |symbol: SymbolId| {
            *tops.entry(symbol).or_insert_with(|| {
                self.hub
                    .book_view(ChannelId {
                        kind: Kind::Book,
                        symbol,
                    })
                    .map(|p| p.view.top_of_book())
                    .unwrap_or_default()
            })
        };
        for d in &mut out.derived {
            if let Derived::Indicators { symbol, values } = d {
                values.book = top(*symbol);
            }
        }
        for (symbol, values) in &mut out.latest {
            values.book = top(*symbol);
        }
        self.metrics
            .pipeline_late_ticks
            .fetch_add(out.late_ticks, Ordering::Relaxed);
        let now = now_ns();
        self.latest.store(std::mem::take(&mut out.latest), now);
        // `/readyz` reads this to tell whether the pipeline is on time.
        self.metrics
            .pipeline_last_batch_ms
            .store(now / 1_000_000, Ordering::Relaxed);
        let elapsed = started.elapsed();
        self.metrics.pipeline_batch_seconds.observe(elapsed);
        self.metrics
            .pipeline_batches
            .fetch_add(1, Ordering::Relaxed);
        if elapsed > Duration::from_millis(self.config.interval_ms) {
            PipelineBatchOverran { took: elapsed }.emit(&self.metrics);
        }
        let Some(predictor) = &self.predictor else {
            return self.ingest.send_derived_blocking(out.derived).is_ok();
        };
        // The symbols whose 1 s bar closed: forecast once these bars are in the rings.
        let closed: Vec<SymbolId> = out
            .derived
            .iter()
            .filter_map(|d| match d {
                Derived::Bar {
                    kind: Kind::Bars(BarInterval::S1),
                    symbol,
                    bar,
                } if bar.is_final => Some(*symbol),
                _ => None,
            })
            .collect();
        if closed.is_empty() {
            return self.ingest.send_derived_blocking(out.derived).is_ok();
        }
        match self.ingest.send_derived_published_blocking(out.derived) {
            Ok(published) => {
                predictor.offer(closed, published);
                true
            }
            Err(_) => false,
        }
    }
}
