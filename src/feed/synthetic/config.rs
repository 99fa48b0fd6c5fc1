//! `[feeds.synthetic]`: the seeded random-walk feed.

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    pub enabled: bool,
    /// How many symbols to generate when `symbol_names` is empty.
    pub symbols: usize,
    /// Explicit symbols; when set they replace the generated ones.
    pub symbol_names: Vec<String>,
    /// Mean ticks per second over all symbols.
    pub rate: f64,
    /// Share of the rate that arrives in bursts, in `[0, 1)`.
    pub burstiness: f64,
    pub seed: u64,
    /// One batch per interval.
    pub interval_ms: u64,
    pub drift_per_s: f64,
    pub volatility_per_sqrt_s: f64,
    /// Levels per side of each symbol's order book (0: no books, trades at the walk's price).
    pub book_levels: usize,
}

// === impl SyntheticConfig ===

impl SyntheticConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.rate.is_finite() && self.rate > 0.0,
            "feeds.synthetic.rate",
            "must be a positive number",
        )?;
        check(
            (0.0..1.0).contains(&self.burstiness),
            "feeds.synthetic.burstiness",
            "must be in [0, 1)",
        )?;
        check(
            self.interval_ms >= 1,
            "feeds.synthetic.interval_ms",
            "must be at least 1",
        )?;
        check(
            !self.enabled || self.symbols >= 1 || !self.symbol_names.is_empty(),
            "feeds.synthetic.symbols",
            "must be at least 1",
        )?;
        check(
            self.volatility_per_sqrt_s.is_finite() && self.volatility_per_sqrt_s >= 0.0,
            "feeds.synthetic.volatility_per_sqrt_s",
            "must be a non-negative number",
        )?;
        check(
            self.drift_per_s.is_finite(),
            "feeds.synthetic.drift_per_s",
            "must be a finite number",
        )?;
        check(
            self.book_levels <= 1000,
            "feeds.synthetic.book_levels",
            "must be at most 1000",
        )?;
        for n in &self.symbol_names {
            check(
                crate::model::is_valid_symbol(n),
                "feeds.synthetic.symbol_names",
                "symbols must match [A-Z0-9._-]{1,32}",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let base = || SyntheticConfig {
            enabled: true,
            symbols: 5,
            symbol_names: vec![],
            rate: 1000.0,
            burstiness: 0.0,
            seed: 1,
            interval_ms: 10,
            drift_per_s: 0.0,
            volatility_per_sqrt_s: 0.002,
            book_levels: 0,
        };
        assert!(base().validate().is_ok());
        let cases = [
            (
                SyntheticConfig {
                    rate: 0.0,
                    ..base()
                },
                "feeds.synthetic.rate",
            ),
            (
                SyntheticConfig {
                    rate: f64::NAN,
                    ..base()
                },
                "feeds.synthetic.rate",
            ),
            (
                SyntheticConfig {
                    burstiness: 1.0,
                    ..base()
                },
                "feeds.synthetic.burstiness",
            ),
            (
                SyntheticConfig {
                    interval_ms: 0,
                    ..base()
                },
                "feeds.synthetic.interval_ms",
            ),
            (
                SyntheticConfig {
                    symbols: 0,
                    ..base()
                },
                "feeds.synthetic.symbols",
            ),
            (
                SyntheticConfig {
                    volatility_per_sqrt_s: -1.0,
                    ..base()
                },
                "feeds.synthetic.volatility_per_sqrt_s",
            ),
            (
                SyntheticConfig {
                    drift_per_s: f64::INFINITY,
                    ..base()
                },
                "feeds.synthetic.drift_per_s",
            ),
            (
                SyntheticConfig {
                    symbol_names: vec!["aapl".into()],
                    ..base()
                },
                "feeds.synthetic.symbol_names",
            ),
        ];
        for (c, want) in cases {
            match c.validate() {
                Err(ConfigError::Key { key, .. }) => assert_eq!(key, want),
                other => panic!("{want}: {other:?}"),
            }
        }
        // No symbols is fine while the feed is off, or when names are given.
        assert!(
            SyntheticConfig {
                enabled: false,
                symbols: 0,
                ..base()
            }
            .validate()
            .is_ok()
        );
        let named = SyntheticConfig {
            symbols: 0,
            symbol_names: vec!["AAPL".into()],
            ..base()
        };
        assert!(named.validate().is_ok());
    }
}
