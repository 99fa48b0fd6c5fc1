//! The `predictions:SYM` channel: every model's forecast of a symbol when its 1 s bar closes,
//! computed off the batch by a thread of its own (the predictor).
//!
//! The coordinator hands the predictor the symbols whose 1 s bar closed in a batch, with the
//! receiver ingest tells once that batch is published, and goes on: it never waits for a
//! forecast. The predictor waits for the bars to be in the rings, then reads each symbol's
//! closes exactly as `GET /api/v1/predictions/{symbol}` does ([`closes`]) and fits every model
//! on them, so the channel and REST agree at the same bar. Its queue is bounded by the symbol
//! count: a symbol waiting for a forecast is listed once, however many bars close meanwhile, and
//! is forecast once at its newest bar (conflation, as a throttled subscriber gets), so a
//! predictor that falls behind (thousands of symbols on a small machine) skips bars, never
//! grows a queue nor slows the batches beyond the core it uses.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use tokio::sync::oneshot;

use crate::ingest::Derived;
use crate::model::{BarInterval, ChannelId, Kind, Payload, SymbolId};
use crate::predict::PredictionSet;
use crate::rooms::Hub;

/// What the forecasts are computed with: REST's defaults (`api.prediction_window`,
/// `api.ar_order`, the default `horizon_s`), so a `prediction` event equals REST's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictionSettings {
    /// Final 1 s closes the models are fitted on (the newest).
    pub window: usize,
    pub ar_order: usize,
    pub horizon_s: u64,
}

/// Final 1 s bar closes held for a symbol, oldest first, at most `window` (the newest); with the
/// newest bar's start (0 without one). REST's predictions and the channel both read them here.
pub(crate) fn closes(hub: &Hub, symbol: SymbolId, window: usize) -> (Vec<f64>, i64) {
    let ch = ChannelId {
        kind: Kind::Bars(BarInterval::S1),
        symbol,
    };
    let (mut out, as_of) =
        hub.fold_events(ch, (Vec::new(), 0), |(mut out, as_of), e| match e.payload {
            Payload::Bar(b) if b.is_final => {
                out.push(b.close);
                (out, b.start_ms)
            }
            _ => (out, as_of),
        });
    let skip = out.len().saturating_sub(window);
    (out.split_off(skip), as_of)
}

/// A symbol's closes and the newest one's start (ms): what the predictor reads per symbol.
pub type CloseSource = Box<dyn Fn(SymbolId) -> (Vec<f64>, i64) + Send>;
/// Where the predictor's events go; false when it should stop (ingest is gone).
pub type PredictionSink = Box<dyn FnMut(Vec<Derived>) -> bool + Send>;

/// Symbols waiting for a forecast, each once, in the order their bars closed.
#[derive(Default)]
struct Pending {
    symbols: Vec<SymbolId>,
    listed: HashSet<SymbolId>,
    /// Told once the newest offered batch is published (ingest publishes in order, so every
    /// earlier one is too).
    published: Option<oneshot::Receiver<()>>,
}

/// The predictor thread and its queue.
pub struct Predictor {
    pending: Arc<Mutex<Pending>>,
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Predictor {
    /// Starts the thread: `source` reads a symbol's closes, `sink` publishes the forecasts.
    pub fn start(
        settings: PredictionSettings,
        source: CloseSource,
        sink: PredictionSink,
    ) -> std::io::Result<Predictor> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        // One wake-up pending at most: the queue itself is `pending`.
        let (wake, woken) = bounded(1);
        let shared = pending.clone();
        let thread = std::thread::Builder::new()
            .name("tickcast-predict".into())
            .spawn(move || run(settings, &shared, &woken, &source, sink))?;
        Ok(Predictor {
            pending,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// The hub's rings as the source and ingest as the sink: the server's predictor.
    pub(crate) fn for_hub(
        settings: PredictionSettings,
        hub: Arc<Hub>,
        ingest: crate::ingest::IngestHandle,
    ) -> std::io::Result<Predictor> {
        let window = settings.window;
        Predictor::start(
            settings,
            Box::new(move |symbol| closes(&hub, symbol, window)),
            Box::new(move |values| ingest.send_derived_blocking(values).is_ok()),
        )
    }

    /// Queues a forecast of each symbol once `published` is told (never blocks on the thread).
    pub fn offer(
        &self,
        symbols: impl IntoIterator<Item = SymbolId>,
        published: oneshot::Receiver<()>,
    ) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for s in symbols {
            if p.listed.insert(s) {
                p.symbols.push(s);
            }
        }
        p.published = Some(published);
        drop(p);
        if let Some(w) = &self.wake {
            // Full: a wake-up is already pending, and it will find these symbols.
            let _ = w.try_send(());
        }
    }

    /// Symbols waiting for a forecast now (tests and the bench watch the predictor drain).
    pub fn waiting(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .symbols
            .len()
    }

    /// Stops after the forecasts in progress and waits for the thread.
    pub fn stop(mut self) {
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Predictor {
    fn drop(&mut self) {
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    settings: PredictionSettings,
    pending: &Mutex<Pending>,
    woken: &Receiver<()>,
    source: &CloseSource,
    mut sink: PredictionSink,
) {
    // The newest bar each symbol was forecast at: a symbol offered again before a newer bar is
    // in its ring (an early batch, a bar read twice) is not forecast twice.
    let mut forecast_at: HashMap<SymbolId, i64> = HashMap::new();
    while woken.recv().is_ok() {
        let (symbols, published) = {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.listed.clear();
            (std::mem::take(&mut p.symbols), p.published.take())
        };
        if let Some(rx) = published
            && rx.blocking_recv().is_err()
        {
            // Ingest stopped before publishing the bars: nothing to forecast from, nowhere to
            // publish.
            break;
        }
        let mut out = Vec::with_capacity(symbols.len());
        for symbol in symbols {
            let (closes, as_of) = source(symbol);
            if closes.is_empty() || forecast_at.get(&symbol) == Some(&as_of) {
                continue;
            }
            forecast_at.insert(symbol, as_of);
            if let Some(set) =
                PredictionSet::compute(&closes, as_of, settings.ar_order, settings.horizon_s)
            {
                out.push(Derived::Prediction {
                    symbol,
                    set: Arc::new(set),
                });
            }
        }
        if !out.is_empty() && !sink(out) {
            break;
        }
    }
    tracing::debug!("predictor stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const SETTINGS: PredictionSettings = PredictionSettings {
        window: 30,
        ar_order: 2,
        horizon_s: 5,
    };

    fn closes_of(symbol: SymbolId, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 50.0 + symbol.0 as f64 + ((i * 31) % 7) as f64 * 0.25 + i as f64 * 0.01)
            .collect()
    }

    /// Waits (generously) until `n` events arrived.
    fn collect(rx: &crossbeam_channel::Receiver<Vec<Derived>>, n: usize) -> Vec<Derived> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(batch) => got.extend(batch),
                Err(_) => panic!("only {} of {n} forecasts", got.len()),
            }
        }
        got
    }

    #[test]
    fn forecasts_each_offered_symbol_once_after_its_batch_is_published() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let predictor = Predictor::start(
            SETTINGS,
            Box::new(|s| (closes_of(s, 40), 1_000 + s.0 as i64)),
            Box::new(move |v| tx.send(v).is_ok()),
        )
        .unwrap();
        let (published, told) = oneshot::channel();
        // Listed twice (two 1 s bars closed in one batch): forecast once.
        predictor.offer([SymbolId(1), SymbolId(2), SymbolId(1)], told);
        // Nothing before the batch is published.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        published.send(()).unwrap();
        let got = collect(&rx, 2);
        let mut symbols = Vec::new();
        for d in &got {
            let Derived::Prediction { symbol, set } = d else {
                panic!("{d:?}")
            };
            symbols.push(symbol.0);
            let want =
                PredictionSet::compute(&closes_of(*symbol, 40), 1_000 + symbol.0 as i64, 2, 5);
            assert_eq!(Some(set.as_ref()), want.as_ref());
        }
        assert_eq!(symbols, [1, 2]);

        // Offered again at the same newest bar: no second forecast.
        let (published, told) = oneshot::channel();
        predictor.offer([SymbolId(1)], told);
        published.send(()).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(predictor.waiting(), 0);
        predictor.stop();
    }

    #[test]
    fn stops_when_ingest_drops_the_batch() {
        let predictor = Predictor::start(
            SETTINGS,
            Box::new(|s| (closes_of(s, 40), 1)),
            Box::new(|_| panic!("nothing is published")),
        )
        .unwrap();
        let (published, told) = oneshot::channel::<()>();
        predictor.offer([SymbolId(1)], told);
        drop(published);
        // Joins: the thread ended on its own.
        predictor.stop();
    }
}
