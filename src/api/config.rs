//! `[api]`: REST limits.

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Requests per second per API key (or per client IP without a key).
    pub requests_per_second: u32,
    pub burst: u32,
    /// Largest `limit` a list request may ask for.
    pub max_page_size: usize,
    pub default_page_size: usize,
    /// Largest REST request body (ingest has its own limit).
    pub max_body_bytes: usize,
    /// 1 s bar closes the prediction models are fitted on.
    pub prediction_window: usize,
    /// Order p of the autoregressive model.
    pub ar_order: usize,
    /// Largest `horizon_s` a prediction may ask for.
    pub max_horizon_s: u64,
}

impl ApiConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.requests_per_second >= 1,
            "api.requests_per_second",
            "must be at least 1",
        )?;
        check(self.burst >= 1, "api.burst", "must be at least 1")?;
        check(
            self.max_page_size >= 1,
            "api.max_page_size",
            "must be at least 1",
        )?;
        check(
            (1..=self.max_page_size).contains(&self.default_page_size),
            "api.default_page_size",
            "must be in 1..=api.max_page_size",
        )?;
        check(
            self.max_body_bytes >= 256,
            "api.max_body_bytes",
            "must be at least 256",
        )?;
        check(
            self.ar_order >= 1 && self.prediction_window >= 4 * self.ar_order + 4,
            "api.prediction_window",
            "must be at least 4 * api.ar_order + 4 (and ar_order >= 1)",
        )?;
        check(
            self.max_horizon_s >= 1,
            "api.max_horizon_s",
            "must be at least 1",
        )
    }
}
