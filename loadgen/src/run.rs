//! One bounded run: ramp, warm-up, measured window, close; with a live progress line.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use crate::args::{Args, Scenario};
use crate::auth::Auth;
use crate::report::{ChannelGap, Connections, Gaps, Loadgen, Report, RunConfig, Server};
use crate::rest::{self, RestConfig};
use crate::stats::{ChannelGaps, Percentiles, total_gaps, worst_channels};
use crate::sys::{self, CpuSample};
use crate::target::Target;
use crate::ws::{self, ConnConfig, ConnOutcome, EventKind, Role, Shared, SplitMix};

/// After the window closes, how long connection tasks get to finish their close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Loadgen CPU above this share of its threads means the numbers may be the loadgen's limit.
const SATURATION_SHARE: f64 = 0.85;
/// Whole-machine CPU above this share means server and loadgen compete for cores.
const BOX_SATURATION_SHARE: f64 = 0.9;

/// Whether connection `i` of a mixed run is a bot: spreads `fraction` evenly over the indices.
pub fn is_bot(i: u64, fraction: f64) -> bool {
    ((i + 1) as f64 * fraction).floor() > (i as f64 * fraction).floor()
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    let mut targets = Vec::new();
    for url in args.url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let url = args.encoding.apply_to_url(url)?;
        targets.push(Arc::new(Target::resolve(&url).await?));
    }
    let Some(target) = targets.first().cloned() else {
        anyhow::bail!("--url names no endpoint");
    };
    let ws_conns = if args.scenario.uses_ws() {
        args.connections
    } else {
        0
    };
    let rest_on = args.scenario.uses_rest() && args.rate > 0.0;
    let rest_slots = if rest_on { args.concurrency as u64 } else { 0 };
    sys::raise_nofile(ws_conns + rest_slots)?;

    let needs_symbols = rest_on
        || matches!(
            args.scenario,
            Scenario::Dashboards | Scenario::Mixed | Scenario::Soak
        );
    let auth = Arc::new(Auth::from_args(&args));
    let symbols = if !args.symbols.is_empty() {
        args.symbols.clone()
    } else if needs_symbols {
        ws::discover_symbols(&target, &auth)
            .await
            .with_context(|| format!("discovering symbols at {}", target.ws_url))?
    } else {
        Vec::new()
    };

    let shared = Arc::new(Shared::new(args.threads * 4, args.encoding));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = stop_tx.send(true);
            }
        });
    }

    let start = Instant::now();
    let ramp = Duration::from_secs_f64(args.ramp);
    let measure_at = start + ramp + Duration::from_secs_f64(args.warmup);
    let end = measure_at + Duration::from_secs_f64(args.duration);

    let conn_cfg = ConnConfig {
        target: target.clone(),
        shared: shared.clone(),
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
        auth: auth.clone(),
        end,
        stop: stop_rx.clone(),
    };
    let spawner = tokio::spawn(spawn_connections(
        ws_conns,
        start,
        ramp,
        roles(&args, symbols.clone()),
        conn_cfg,
        targets,
    ));

    let rest_task = rest_on.then(|| {
        let cfg = RestConfig {
            target: target.clone(),
            shared: shared.clone(),
            rate: args.rate,
            concurrency: args.concurrency,
            api_key: args.api_key.clone(),
            symbols: symbols.clone(),
            end,
            stop: stop_rx.clone(),
        };
        let secs = args.duration;
        tokio::spawn(rest::run(cfg, move || secs))
    });

    let progress = (!args.quiet).then(|| {
        tokio::spawn(progress_line(
            shared.clone(),
            ws_conns,
            start,
            start + ramp,
            measure_at,
            end,
            stop_rx.clone(),
        ))
    });

    // The timeline: wait for the window, sample, wait for its end, sample.
    let mut stop = stop_rx.clone();
    let interrupted = |s: &watch::Receiver<bool>| *s.borrow();
    tokio::select! { _ = sleep_until(measure_at) => {}, _ = stop.changed() => {} }
    shared.measuring.store(true, Relaxed);
    let self0 = CpuSample::now_self();
    let box0 = sys::MachineSample::now();
    let srv0 = args.server_pid.and_then(CpuSample::now_pid);
    let srv_mem0 = args.server_pid.and_then(sys::proc_memory);
    if !interrupted(&stop) {
        tokio::select! { _ = sleep_until(end) => {}, _ = stop.changed() => {} }
    }
    shared.measuring.store(false, Relaxed);
    let self1 = CpuSample::now_self();
    let box1 = sys::MachineSample::now();
    let srv1 = args.server_pid.and_then(CpuSample::now_pid);
    let srv_mem = args.server_pid.and_then(sys::proc_memory);
    let was_interrupted = interrupted(&stop);
    let measured_s = self1.at.duration_since(self0.at).as_secs_f64();
    // Connections still ramping after an early stop must not linger.
    let _ = stop_tx.send(true);

    let handles = spawner.await.context("connection spawner panicked")?;
    let mut outcomes = Vec::with_capacity(handles.len());
    let close_deadline = Instant::now() + CLOSE_WAIT;
    for h in handles {
        let abort = h.abort_handle();
        match timeout(close_deadline.saturating_duration_since(Instant::now()), h).await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(_)) => {}
            Err(_) => abort.abort(),
        }
    }
    let rest_report = match rest_task {
        Some(t) => Some(t.await.context("rest task panicked")?),
        None => None,
    };
    if let Some(p) = progress {
        let _ = p.await;
    }

    let mut report = build_report(
        &args,
        symbols.len(),
        &shared,
        outcomes,
        measured_s,
        was_interrupted,
    );
    report.loadgen.cpu_cores = round3(self1.cores_since(&self0));
    if let (Some(pid), Some(a), Some(b)) = (args.server_pid, srv0, srv1) {
        let mem = srv_mem.unwrap_or_default();
        report.server = Some(Server {
            pid,
            cpu_cores: round3(b.cores_since(&a)),
            rss_mb: round1(mem.rss_mb),
            peak_rss_mb: round1(mem.peak_rss_mb),
            rss_start_mb: srv_mem0.map(|m| round1(m.rss_mb)),
            rss_drift_mb: srv_mem0.map(|m| round1(mem.rss_mb - m.rss_mb)),
        });
    } else if let Some(pid) = args.server_pid {
        report.warnings.push(format!(
            "could not read /proc/{pid}: is --server-pid right?"
        ));
    }
    if report.loadgen.cpu_cores > SATURATION_SHARE * args.threads as f64 {
        report.warnings.push(format!(
            "the loadgen used {:.2} cores of its {} threads: it may be the bottleneck, \
             not the server",
            report.loadgen.cpu_cores, args.threads
        ));
    }
    if let (Some(a), Some(b)) = (box0, box1) {
        report.loadgen.machine_busy = round3(b.busy_since(&a));
        if report.loadgen.machine_busy > BOX_SATURATION_SHARE {
            report.warnings.push(format!(
                "the machine was {:.0}% busy (server {:.2} + loadgen {:.2} cores; the rest is \
                 other processes or kernel loopback work): numbers are bounded by the box",
                report.loadgen.machine_busy * 100.0,
                report.server.as_ref().map_or(0.0, |s| s.cpu_cores),
                report.loadgen.cpu_cores
            ));
        }
    }
    report.rest = rest_report;
    Ok(report)
}

/// The role of every connection, decided up front so the spawner does no work per socket.
fn roles(args: &Args, symbols: Vec<String>) -> impl FnMut(u64) -> Role + Send + 'static {
    let scenario = args.scenario;
    let (k, throttle_ms, fraction) = (
        args.symbols_per_socket,
        args.throttle_ms(),
        args.bot_fraction,
    );
    let book_depth = args.book_depth;
    let mut rng = SplitMix::new(0x1ced_cafe);
    move |i| {
        if scenario == Scenario::Idle {
            return Role::Idle;
        }
        if scenario == Scenario::Books {
            return Role::Books {
                depth: book_depth,
                throttle_ms,
            };
        }
        if scenario == Scenario::Watchlist {
            return Role::Watchlist { throttle_ms };
        }
        if scenario == Scenario::Soak {
            return Role::Churn {
                symbols: symbols.clone(),
                seed: rng.next_u64() ^ i,
            };
        }
        let bot = match scenario {
            Scenario::Bots => true,
            Scenario::Mixed => is_bot(i, fraction),
            _ => false,
        };
        if bot {
            Role::Bot
        } else {
            Role::Dashboard {
                symbols: rng.pick(&symbols, k),
                throttle_ms,
            }
        }
    }
}

/// Opens `n` connections evenly spaced over `ramp`.
async fn spawn_connections(
    n: u64,
    start: Instant,
    ramp: Duration,
    mut role_of: impl FnMut(u64) -> Role,
    cfg: ConnConfig,
    targets: Vec<Arc<Target>>,
) -> Vec<JoinHandle<ConnOutcome>> {
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = start + ramp.mul_f64(i as f64 / n as f64);
        sleep_until(at).await;
        if *cfg.stop.borrow() {
            break;
        }
        // Round-robin over the endpoints.
        let mut conn = cfg.clone();
        conn.target = targets[i as usize % targets.len()].clone();
        handles.push(tokio::spawn(ws::run_conn(i as usize, role_of(i), conn)));
    }
    handles
}

async fn progress_line(
    shared: Arc<Shared>,
    target_conns: u64,
    start: Instant,
    ramp_end: Instant,
    measure_at: Instant,
    end: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut last = (Instant::now(), 0u64, 0u64);
    let mut cpu_last = CpuSample::now_self();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let phase = if now < ramp_end {
            "ramp"
        } else if now < measure_at {
            "warmup"
        } else {
            "measure"
        };
        let frames = shared.frames_seen.load(Relaxed);
        let events = shared.events_seen.load(Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let cpu = CpuSample::now_self();
        pb.set_message(format!(
            "{phase} {:>4.0}s left | open {}/{} failed {} | {:.0} events/s {:.0} frames/s | loadgen {:.2} cores",
            end.duration_since(now).as_secs_f64(),
            shared.open.load(Relaxed),
            target_conns,
            shared.failed.load(Relaxed),
            (events - last.2) as f64 / dt,
            (frames - last.1) as f64 / dt,
            cpu.cores_since(&cpu_last),
        ));
        pb.tick();
        last = (now, frames, events);
        cpu_last = cpu;
        let _ = start;
    }
    pb.finish_and_clear();
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn build_report(
    args: &Args,
    symbols_known: usize,
    shared: &Shared,
    outcomes: Vec<ConnOutcome>,
    measured_s: f64,
    interrupted: bool,
) -> Report {
    let mut conns = Connections {
        attempted: shared.attempted.load(Relaxed),
        established: shared.established.load(Relaxed),
        failed: shared.failed.load(Relaxed),
        ..Connections::default()
    };
    let mut chans: HashMap<String, ChannelGaps> = HashMap::new();
    let (mut snapshots, mut resets, mut replies, mut parse_errors) = (0, 0, 0, 0);
    let (mut live_resets, mut gaps_reset) = (0, 0);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut close_codes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut by_kind = [0u64; EventKind::COUNT];
    for o in &outcomes {
        if let Some(f) = &o.failure {
            *conns.failure_reasons.entry(f.clone()).or_default() += 1;
        }
        if let Some(code) = o.server_close {
            conns.closed_by_server += 1;
            *close_codes.entry(code).or_default() += 1;
        }
        if let Some(d) = &o.dropped {
            conns.dropped += 1;
            *conns.drop_reasons.entry(d.clone()).or_default() += 1;
        }
        conns.clean_closes += u64::from(o.clean_close);
        for (sum, n) in by_kind.iter_mut().zip(o.by_kind) {
            *sum += n;
        }
        snapshots += o.snapshots;
        resets += o.resets;
        live_resets += o.live_resets;
        gaps_reset += o.gaps_reset;
        replies += o.replies;
        parse_errors += o.parse_errors;
        for (code, n) in &o.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
        o.seqs.merge_into(&mut chans);
    }
    let events = shared.events_measured.load(Relaxed);
    let frames = shared.frames_measured.load(Relaxed);
    let bytes = shared.bytes_measured.load(Relaxed);
    let t = total_gaps(&chans);
    let per_s = |n: u64| {
        if measured_s > 0.0 {
            round1(n as f64 / measured_s)
        } else {
            0.0
        }
    };
    let mut warnings = Vec::new();
    if matches!(args.scenario, Scenario::Dashboards | Scenario::Mixed) && args.throttle_ms() > 0 {
        warnings.push(format!(
            "dashboards subscribe ticks with throttle_ms={}: seq gaps on ticks channels are \
             expected there (conflation)",
            args.throttle_ms()
        ));
    }
    if args.scenario == Scenario::Watchlist && args.throttle_ms() > 0 {
        warnings.push(format!(
            "the watchlist subscribes with throttle_ms={}: seq gaps on ticker and bbo channels \
             are expected there (conflation)",
            args.throttle_ms()
        ));
    }
    if args.scenario == Scenario::Books && args.throttle_ms() > 0 {
        warnings.push(format!(
            "books subscribe with throttle_ms={}: seq gaps on book channels are expected there \
             (net deltas)",
            args.throttle_ms()
        ));
    }
    if conns.failed > 0 {
        warnings.push(format!("{} connections failed to open", conns.failed));
    }
    Report {
        scenario: args.scenario.name(),
        url: args.url.clone(),
        config: RunConfig {
            connections: if args.scenario.uses_ws() {
                args.connections
            } else {
                0
            },
            encoding: args.encoding.name(),
            auth: Auth::from_args(args).mode(),
            ramp_s: args.ramp,
            warmup_s: args.warmup,
            duration_s: args.duration,
            threads: args.threads,
            symbols_per_socket: args.symbols_per_socket,
            throttle_ms: args.throttle_ms(),
            book_depth: args.book_depth,
            rate: args.rate,
            concurrency: args.concurrency,
            symbols_known,
        },
        interrupted,
        measured_s: round3(measured_s),
        connections: conns,
        events,
        frames,
        events_per_s: per_s(events),
        frames_per_s: per_s(frames),
        bytes,
        bytes_per_event: if events > 0 {
            round1(bytes as f64 / events as f64)
        } else {
            0.0
        },
        connect_latency: Percentiles::from_histogram_us(&shared.connect.merged()),
        events_by_type: EventKind::ALL
            .iter()
            .filter(|k| by_kind[**k as usize] > 0)
            .map(|k| (k.name(), by_kind[*k as usize]))
            .collect(),
        latency: Percentiles::from_histogram_us(&shared.latency.merged()),
        latency_other: Percentiles::from_histogram_us(&shared.latency_other.merged()),
        latency_book: Percentiles::from_histogram_us(&shared.latency_book.merged()),
        gaps: Gaps {
            gap_events: t.gap_events,
            missed: t.missed,
            out_of_order: t.out_of_order,
            gap_events_with_reset: gaps_reset,
            channels_with_gaps: chans.len(),
            missed_ratio: if events + t.missed > 0 {
                t.missed as f64 / (events + t.missed) as f64
            } else {
                0.0
            },
            worst_channels: worst_channels(&chans, 10)
                .into_iter()
                .map(|(ch, gaps)| ChannelGap { ch, gaps })
                .collect(),
        },
        cycles: shared.cycles.load(Relaxed),
        snapshots,
        resets,
        live_resets,
        replies,
        parse_errors,
        errors_by_code: errors,
        close_codes,
        loadgen: Loadgen {
            cpu_cores: 0.0,
            threads: args.threads,
            machine_busy: 0.0,
            rss_mb: round1(
                sys::proc_memory(std::process::id())
                    .map(|m| m.peak_rss_mb)
                    .unwrap_or(0.0),
            ),
        },
        server: None,
        rest: None,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_fraction_spreads_evenly() {
        let bots = (0..1000).filter(|&i| is_bot(i, 0.1)).count();
        assert_eq!(bots, 100);
        assert_eq!((0..10).filter(|&i| is_bot(i, 0.0)).count(), 0);
        assert_eq!((0..10).filter(|&i| is_bot(i, 1.0)).count(), 10);
    }
}
