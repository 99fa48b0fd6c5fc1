//! REST load: GETs at a fixed rate (open loop) with bounded concurrency over keep-alive
//! HTTP/1.1 connections made directly to the checked loopback address.
//!
//! A request that falls due while `concurrency` requests are in flight is not queued (that would
//! hide server slowness behind the loadgen's own queue); it is counted as skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, MissedTickBehavior, timeout};

use crate::stats::{Percentiles, new_histogram};
use crate::target::Target;
use crate::ws::{Shared, SplitMix};

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints the rest scenario rotates through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Ticks,
    Bars,
    Portfolio,
    Predictions,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Ticks => "ticks",
            Endpoint::Bars => "bars",
            Endpoint::Portfolio => "portfolio",
            Endpoint::Predictions => "predictions",
        }
    }

    pub fn path(self, sym: &str) -> String {
        match self {
            Endpoint::Ticks => format!("/api/v1/ticks/{sym}"),
            Endpoint::Bars => format!("/api/v1/bars/{sym}?interval=1s"),
            Endpoint::Portfolio => "/api/v1/portfolio".to_string(),
            Endpoint::Predictions => format!("/api/v1/predictions/{sym}?horizon_s=5&model=ar"),
        }
    }
}

#[derive(Default)]
struct EndpointStats {
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    latency: Option<Histogram<u64>>,
}

/// Per-endpoint outcome inside the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: &'static str,
    pub requests: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    pub latency: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestReport {
    /// `http://host:port` derived from the WebSocket URL.
    pub base: String,
    pub target_rate: f64,
    pub concurrency: usize,
    pub requests: u64,
    pub requests_per_s: f64,
    /// Requests due while every slot was busy; a non-zero count means the server (or the
    /// loadgen) could not keep up with --rate.
    pub skipped: u64,
    pub ok_2xx: u64,
    pub latency: Percentiles,
    pub endpoints: Vec<EndpointReport>,
}

pub struct RestConfig {
    pub target: Arc<Target>,
    pub shared: Arc<Shared>,
    pub rate: f64,
    pub concurrency: usize,
    pub api_key: Option<String>,
    pub symbols: Vec<String>,
    pub end: Instant,
    pub stop: watch::Receiver<bool>,
}

struct State {
    stats: Mutex<HashMap<Endpoint, EndpointStats>>,
    /// Idle keep-alive connections; popped for a request, pushed back after it.
    pool: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
    skipped: Mutex<u64>,
}

/// Runs until `end` (or stop) and returns what was measured.
pub async fn run(cfg: RestConfig, measured_secs: impl Fn() -> f64) -> RestReport {
    let RestConfig {
        target,
        shared,
        rate,
        concurrency,
        api_key,
        symbols,
        end,
        mut stop,
    } = cfg;
    let mut endpoints = vec![Endpoint::Ticks, Endpoint::Bars, Endpoint::Predictions];
    if api_key.is_some() {
        endpoints.insert(2, Endpoint::Portfolio);
    }
    let state = Arc::new(State {
        stats: Mutex::new(HashMap::new()),
        pool: Mutex::new(Vec::new()),
        skipped: Mutex::new(0),
    });
    let slots = Arc::new(Semaphore::new(concurrency));
    let auth: Option<Arc<str>> = api_key.map(|k| format!("Bearer {k}").into());
    let mut rng = SplitMix::new(0x7e57);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut n: usize = 0;
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(end) => break,
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let measuring = shared.measuring.load(Relaxed);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if measuring {
                *state.skipped.lock().expect("lock") += 1;
            }
            continue;
        };
        let ep = endpoints[n % endpoints.len()];
        n += 1;
        let sym = &symbols[(rng.next_u64() % symbols.len() as u64) as usize];
        let path = ep.path(sym);
        let (state, target, auth) = (state.clone(), target.clone(), auth.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let res = timeout(
                REQUEST_TIMEOUT,
                request(&state, &target, &path, auth.as_deref()),
            )
            .await
            .unwrap_or_else(|_| Err("timeout".into()));
            let us = started.elapsed().as_micros() as u64;
            if measuring && shared.measuring.load(Relaxed) {
                let mut stats = state.stats.lock().expect("lock");
                let s = stats.entry(ep).or_default();
                match res {
                    Ok(status) => {
                        *s.statuses.entry(status).or_default() += 1;
                        s.latency
                            .get_or_insert_with(new_histogram)
                            .saturating_record(us.max(1));
                    }
                    Err(e) => *s.errors.entry(e).or_default() += 1,
                }
            }
            drop(permit);
        });
    }
    // Let requests in flight finish (bounded by their own timeout).
    let _ = timeout(REQUEST_TIMEOUT, slots.acquire_many(concurrency as u32)).await;
    report(
        &state,
        target.http_base(),
        rate,
        concurrency,
        measured_secs(),
    )
}

/// One GET; the status, or a short error label.
async fn request(
    state: &State,
    target: &Target,
    path: &str,
    auth: Option<&str>,
) -> Result<u16, String> {
    let pooled = state.pool.lock().expect("lock").pop();
    let mut sender = match pooled {
        Some(s) if !s.is_closed() => s,
        _ => {
            let stream = TcpStream::connect(target.addr)
                .await
                .map_err(|e| format!("connect: {:?}", e.kind()).to_lowercase())?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|_| "handshake".to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        }
    };
    sender.ready().await.map_err(|_| "closed".to_string())?;
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, &target.authority);
    if let Some(a) = auth {
        req = req.header(hyper::header::AUTHORIZATION, a);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|_| "request".to_string())?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|_| "body".to_string())?;
    if !sender.is_closed() {
        state.pool.lock().expect("lock").push(sender);
    }
    Ok(status)
}

fn report(state: &State, base: String, rate: f64, concurrency: usize, secs: f64) -> RestReport {
    let stats = state.stats.lock().expect("lock");
    let mut all = new_histogram();
    let mut endpoints = Vec::new();
    let mut keys: Vec<_> = stats.keys().copied().collect();
    keys.sort();
    let (mut requests, mut ok) = (0, 0);
    for ep in keys {
        let s = &stats[&ep];
        let n = s.statuses.values().sum::<u64>() + s.errors.values().sum::<u64>();
        requests += n;
        ok += s
            .statuses
            .iter()
            .filter(|(c, _)| (200..300).contains(*c))
            .map(|(_, n)| n)
            .sum::<u64>();
        let latency = match &s.latency {
            Some(h) => {
                all.add(h).expect("same bounds");
                Percentiles::from_histogram_us(h)
            }
            None => Percentiles::default(),
        };
        endpoints.push(EndpointReport {
            endpoint: ep.name(),
            requests: n,
            statuses: s.statuses.clone(),
            errors: s.errors.clone(),
            latency,
        });
    }
    RestReport {
        base,
        target_rate: rate,
        concurrency,
        requests,
        requests_per_s: if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        },
        skipped: *state.skipped.lock().expect("lock"),
        ok_2xx: ok,
        latency: Percentiles::from_histogram_us(&all),
        endpoints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_paths() {
        assert_eq!(Endpoint::Ticks.path("AAPL"), "/api/v1/ticks/AAPL");
        assert_eq!(Endpoint::Bars.path("AAPL"), "/api/v1/bars/AAPL?interval=1s");
        assert_eq!(Endpoint::Portfolio.path("AAPL"), "/api/v1/portfolio");
        assert_eq!(
            Endpoint::Predictions.path("BRK.B"),
            "/api/v1/predictions/BRK.B?horizon_s=5&model=ar"
        );
    }
}
