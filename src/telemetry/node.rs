//! Gauges of the node's state that live outside [`super::metrics::Metrics`], read when
//! `/metrics` is scraped: the database breaker, draining, and memory against its budget (the
//! alert rules in deploy/prometheus/alerts.yml read them).

use std::fmt::Write as _;

/// What one scrape reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeGauges {
    /// `cluster.role`: all, ingest or edge (alert rules tell a standby from a stalled feed).
    pub role: &'static str,
    /// The recorder's circuit breaker is open (writes failing).
    pub breaker_open: bool,
    /// The node is draining (SIGTERM or `POST /admin/drain`).
    pub draining: bool,
    /// `server.memory_budget_bytes` (0: none).
    pub memory_budget_bytes: u64,
    /// The process's resident memory, when the OS tells it.
    pub resident_bytes: Option<u64>,
    /// MessagePack forms of events made on demand and still held (`encoding::msgpack_made_bytes`).
    pub msgpack_made_bytes: u64,
}

impl NodeGauges {
    /// Appends the gauges in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP tickcast_node_info the node's cluster role (always 1)\n\
             # TYPE tickcast_node_info gauge\ntickcast_node_info{{role=\"{}\"}} 1",
            self.role
        );
        gauge(
            out,
            "tickcast_db_breaker_open",
            "1 while the database circuit breaker is open (writes failing, one probe at a time)",
            u64::from(self.breaker_open),
        );
        gauge(
            out,
            "tickcast_draining",
            "1 once the node drains: new sockets refused, clients told to reconnect elsewhere",
            u64::from(self.draining),
        );
        gauge(
            out,
            "tickcast_memory_budget_bytes",
            "server.memory_budget_bytes, the memory this node is sized for (0: none set)",
            self.memory_budget_bytes,
        );
        gauge(
            out,
            "tickcast_msgpack_made_bytes",
            "MessagePack forms of events made for MessagePack connections and still held (rings \
             and queues), on top of tickcast_ring_bytes",
            self.msgpack_made_bytes,
        );
        if let Some(rss) = self.resident_bytes {
            gauge(
                out,
                "process_resident_memory_bytes",
                "resident memory of the process",
                rss,
            );
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Resident memory from `/proc/self/status` (`VmRSS`), Linux only; `None` elsewhere or when
/// it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\ttickcast\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_resident_memory() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn renders_every_gauge_with_help_and_type() {
        let mut out = String::new();
        NodeGauges {
            role: "edge",
            breaker_open: true,
            draining: false,
            memory_budget_bytes: 1 << 30,
            resident_bytes: Some(4096),
            msgpack_made_bytes: 123,
        }
        .render(&mut out);
        for line in [
            "# TYPE tickcast_db_breaker_open gauge\ntickcast_db_breaker_open 1\n",
            "tickcast_draining 0\n",
            "# TYPE tickcast_node_info gauge\ntickcast_node_info{role=\"edge\"} 1\n",
            "tickcast_memory_budget_bytes 1073741824\n",
            "# TYPE tickcast_msgpack_made_bytes gauge\ntickcast_msgpack_made_bytes 123\n",
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 4096\n",
        ] {
            assert!(out.contains(line), "{line}\n{out}");
        }
    }
}
