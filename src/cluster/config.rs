//! `[cluster]`: which role this process plays and where the JetStream stream lives.

use std::time::Duration;

use serde::Deserialize;

use crate::config_section::{ConfigError, check, ms};

/// What this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in one process, no other service (the default).
    #[default]
    All,
    /// Feeds, sequencer, pipeline and recorder; publishes every event to the stream. Only the
    /// node holding the lease runs its feeds; the others stand by.
    Ingest,
    /// `/ws` and REST from the stream; history from the shared database.
    Edge,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Edge => "edge",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "all" => Some(Role::All),
            "ingest" => Some(Role::Ingest),
            "edge" => Some(Role::Edge),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub role: Role,
    /// `nats://host:port` (several, comma-separated, for a NATS cluster).
    pub nats_url: String,
    /// How long start-up waits for NATS before it fails.
    pub connect_timeout_ms: u64,
    /// The JetStream stream of sequenced events (created by ingest if missing).
    pub stream: String,
    /// Subject prefix: events go to `<prefix>.<kind>.<symbol>`.
    pub subject_prefix: String,
    /// Stream retention by age.
    pub max_age_ms: u64,
    /// Stream retention by size.
    pub max_bytes: u64,
    /// JetStream replicas of the stream and the lease bucket (1 on a single NATS server).
    pub replicas: usize,
    /// The KV bucket holding the ingest leader's lease.
    pub lease_bucket: String,
    /// A lease not renewed for this long expires and a standby takes over.
    pub lease_ttl_ms: u64,
    /// The leader counts on a renewal for the TTL minus this after sending it: it stops
    /// publishing that much before its lease can have expired.
    pub lease_margin_ms: u64,
    /// Encoded events ingest may hold while NATS is slow or down; past it events are dropped
    /// (counted) and edges see a `seq` jump.
    pub publish_buffer_bytes: usize,
    /// How far back a starting edge reads the stream to fill its rings.
    pub warm_ms: u64,
    /// Most events one resume may read from the stream (a longer gap gets `reset`).
    pub resume_max_events: usize,
    /// Most gaps one subscribe may read from the stream (the others get `reset`).
    pub resume_max_reads: usize,
}

impl ClusterConfig {
    pub fn validate(&self, database_is_postgres: bool) -> Result<(), ConfigError> {
        if self.role == Role::All {
            return Ok(());
        }
        check(
            !self.nats_url.trim().is_empty(),
            "cluster.nats_url",
            "must be set when cluster.role is ingest or edge",
        )?;
        check(
            database_is_postgres,
            "cluster.role",
            "ingest and edge nodes share history through PostgreSQL: set DATABASE_URL (or \
             database.url) to a postgres:// URL",
        )?;
        check(
            is_token(&self.stream),
            "cluster.stream",
            "must be a non-empty name of letters, digits, `-` and `_`",
        )?;
        check(
            is_token(&self.lease_bucket),
            "cluster.lease_bucket",
            "must be a non-empty name of letters, digits, `-` and `_`",
        )?;
        check(
            self.subject_prefix.split('.').all(is_token),
            "cluster.subject_prefix",
            "must be dot-separated tokens of letters, digits, `-` and `_`",
        )?;
        check(
            self.max_age_ms >= 1_000,
            "cluster.max_age_ms",
            "must be at least 1000",
        )?;
        check(
            self.max_bytes >= 1 << 20,
            "cluster.max_bytes",
            "must be at least 1048576",
        )?;
        check(
            (1..=5).contains(&self.replicas),
            "cluster.replicas",
            "must be 1 to 5",
        )?;
        check(
            self.lease_ttl_ms >= 1_000,
            "cluster.lease_ttl_ms",
            "must be at least 1000",
        )?;
        check(
            self.lease_margin_ms.saturating_mul(2) <= self.lease_ttl_ms,
            "cluster.lease_margin_ms",
            "must be at most half of cluster.lease_ttl_ms",
        )?;
        check(
            self.publish_buffer_bytes >= 1 << 16,
            "cluster.publish_buffer_bytes",
            "must be at least 65536",
        )?;
        check(
            self.connect_timeout_ms >= 100,
            "cluster.connect_timeout_ms",
            "must be at least 100",
        )?;
        check(
            self.resume_max_events >= 1,
            "cluster.resume_max_events",
            "must be at least 1",
        )?;
        check(
            self.resume_max_reads >= 1,
            "cluster.resume_max_reads",
            "must be at least 1",
        )
    }

    pub(crate) fn lease_ttl(&self) -> Duration {
        ms(self.lease_ttl_ms)
    }

    pub(crate) fn lease_margin(&self) -> Duration {
        ms(self.lease_margin_ms)
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge() -> ClusterConfig {
        ClusterConfig {
            role: Role::Edge,
            nats_url: "nats://127.0.0.1:4222".into(),
            connect_timeout_ms: 5_000,
            stream: "TICKCAST".into(),
            subject_prefix: "tickcast".into(),
            max_age_ms: 3_600_000,
            max_bytes: 1 << 30,
            replicas: 1,
            lease_bucket: "tickcast_leader".into(),
            lease_ttl_ms: 5_000,
            lease_margin_ms: 500,
            publish_buffer_bytes: 64 << 20,
            warm_ms: 60_000,
            resume_max_events: 100_000,
            resume_max_reads: 16,
        }
    }

    #[test]
    fn each_bad_key_is_named() {
        assert!(edge().validate(true).is_ok());
        let all = ClusterConfig {
            role: Role::All,
            nats_url: String::new(),
            ..edge()
        };
        assert!(all.validate(false).is_ok(), "role all needs nothing");
        let cases: Vec<(ClusterConfig, bool, &str)> = vec![
            (
                ClusterConfig {
                    nats_url: " ".into(),
                    ..edge()
                },
                true,
                "cluster.nats_url",
            ),
            (edge(), false, "cluster.role"),
            (
                ClusterConfig {
                    stream: "a.b".into(),
                    ..edge()
                },
                true,
                "cluster.stream",
            ),
            (
                ClusterConfig {
                    subject_prefix: "a..b".into(),
                    ..edge()
                },
                true,
                "cluster.subject_prefix",
            ),
            (
                ClusterConfig {
                    subject_prefix: "a.>".into(),
                    ..edge()
                },
                true,
                "cluster.subject_prefix",
            ),
            (
                ClusterConfig {
                    lease_ttl_ms: 10,
                    ..edge()
                },
                true,
                "cluster.lease_ttl_ms",
            ),
            (
                ClusterConfig {
                    lease_margin_ms: 2_501,
                    ..edge()
                },
                true,
                "cluster.lease_margin_ms",
            ),
            (
                ClusterConfig {
                    replicas: 0,
                    ..edge()
                },
                true,
                "cluster.replicas",
            ),
            (
                ClusterConfig {
                    resume_max_reads: 0,
                    ..edge()
                },
                true,
                "cluster.resume_max_reads",
            ),
        ];
        for (c, pg, key) in cases {
            let err = c.validate(pg).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
        assert_eq!(Role::parse("edge"), Some(Role::Edge));
        assert_eq!(Role::parse("leader"), None);
    }
}
