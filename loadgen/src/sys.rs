//! Process facts: the open-file limit, the loadgen's own CPU time, and the server's CPU and RSS
//! from `/proc`, so a saturated loadgen is never mistaken for a slow server.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

/// File descriptors kept free beyond the sockets (stdio, epoll, timers, REST connections).
pub const FD_SLACK: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and checks it covers `needed` sockets.
pub fn raise_nofile(needed: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let have: u64 = lim.rlim_cur;
    if have < needed + FD_SLACK {
        bail!(
            "open-file limit is {have} (hard limit {}), but {needed} connections need about {}; \
             raise it first, e.g. `ulimit -n {}` in this shell (as root, or after raising the \
             hard limit in /etc/security/limits.conf)",
            lim.rlim_max,
            needed + FD_SLACK,
            needed + FD_SLACK
        );
    }
    Ok(have)
}

/// User plus system CPU time of this process.
pub fn self_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A CPU-time reading with the wall clock it was taken at.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub cpu: Duration,
    pub at: Instant,
}

impl CpuSample {
    pub fn now_self() -> Self {
        Self {
            cpu: self_cpu(),
            at: Instant::now(),
        }
    }

    pub fn now_pid(pid: u32) -> Option<Self> {
        Some(Self {
            cpu: proc_cpu(pid)?,
            at: Instant::now(),
        })
    }

    /// CPU used between two samples divided by wall time: cores kept busy.
    pub fn cores_since(&self, earlier: &CpuSample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        self.cpu.saturating_sub(earlier.cpu).as_secs_f64() / wall
    }
}

/// utime + stime of `pid` from `/proc/PID/stat`.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|ticks| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_nanos(ticks * 1_000_000_000 / hz)
    })
}

/// utime + stime in clock ticks. The command name may hold spaces and parentheses, so fields
/// are counted from the last `)`: state is field 3, utime 14 and stime 15.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total jiffies of the whole machine, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy)]
pub struct MachineSample {
    busy: u64,
    total: u64,
}

impl MachineSample {
    pub fn now() -> Option<Self> {
        parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Share of all cores busy between two samples (0..=1): counts softirq work on loopback
    /// traffic that neither process is charged for.
    pub fn busy_since(&self, earlier: &MachineSample) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// Fields: user nice system idle iowait irq softirq steal (guest time is inside user).
pub fn parse_proc_stat(stat: &str) -> Option<MachineSample> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    let idle = v[3] + v[4];
    let total: u64 = v.iter().sum();
    Some(MachineSample {
        busy: total - idle,
        total,
    })
}

/// Resident and peak resident memory of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
}

/// `VmRSS` and `VmHWM` of `pid` from `/proc/PID/status`.
pub fn proc_memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_memory(&status)
}

pub fn parse_status_memory(status: &str) -> Option<Memory> {
    let kb = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .split_ascii_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
    };
    let rss = kb("VmRSS:")?;
    Some(Memory {
        rss_mb: rss / 1024.0,
        peak_rss_mb: kb("VmHWM:").unwrap_or(rss) / 1024.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let stat = "1234 (my (odd) srv) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn machine_busy() {
        let a = parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let b = parse_proc_stat("cpu  250 0 150 850 0 0 0 0 0 0\n").unwrap();
        assert!((b.busy_since(&a) - 0.8).abs() < 1e-9);
        assert!(parse_proc_stat("cpu 1 2\n").is_none());
        assert!(MachineSample::now().is_some());
    }

    #[test]
    fn status_memory() {
        let s = "Name:\tnode\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        let m = parse_status_memory(s).unwrap();
        assert_eq!((m.rss_mb, m.peak_rss_mb), (100.0, 200.0));
        assert!(parse_status_memory("Name:\tx\n").is_none());
    }

    #[test]
    fn own_process_readable() {
        let pid = std::process::id();
        assert!(proc_cpu(pid).is_some());
        assert!(proc_memory(pid).unwrap().rss_mb > 0.0);
        let a = CpuSample::now_self();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuSample::now_self();
        assert!(b.cores_since(&a) >= 0.0);
    }
}
