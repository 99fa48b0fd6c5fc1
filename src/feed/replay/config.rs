//! `[feeds.replay]`: which file to play, in which format, how fast.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

/// Replay file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayFormat {
    /// By the file's extension (see [`resolve_format`]).
    Auto,
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    pub enabled: bool,
    pub path: PathBuf,
    pub format: ReplayFormat,
    /// 1.0 plays at the file's own pace, N at N times it, 0 as fast as ingest takes it.
    pub speed: f64,
    /// Restart at the end, with time still increasing.
    #[serde(rename = "loop")]
    pub looping: bool,
}

/// The file's format: `format` when explicit, else by extension (`.csv`; `.jsonl`, `.ndjson`).
pub fn resolve_format(format: ReplayFormat, path: &Path) -> Option<ReplayFormat> {
    match format {
        ReplayFormat::Csv | ReplayFormat::Jsonl => Some(format),
        ReplayFormat::Auto => {
            let ext = path.extension()?.to_str()?.to_ascii_lowercase();
            match ext.as_str() {
                "csv" => Some(ReplayFormat::Csv),
                "jsonl" | "ndjson" => Some(ReplayFormat::Jsonl),
                _ => None,
            }
        }
    }
}

// === impl ReplayConfig ===

impl ReplayConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.speed.is_finite() && self.speed >= 0.0,
            "feeds.replay.speed",
            "must be >= 0 (0 = as fast as possible)",
        )?;
        check(
            !self.enabled || resolve_format(self.format, &self.path).is_some(),
            "feeds.replay.path",
            "extension is not .csv, .jsonl or .ndjson; set feeds.replay.format",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_section::failed_key as key_of;

    #[test]
    fn format_by_extension() {
        let cases = [
            (ReplayFormat::Auto, "a/b.csv", Some(ReplayFormat::Csv)),
            (ReplayFormat::Auto, "b.JSONL", Some(ReplayFormat::Jsonl)),
            (ReplayFormat::Auto, "b.ndjson", Some(ReplayFormat::Jsonl)),
            (ReplayFormat::Auto, "b.txt", None),
            (ReplayFormat::Auto, "noext", None),
            (ReplayFormat::Csv, "b.txt", Some(ReplayFormat::Csv)),
        ];
        for (format, path, want) in cases {
            assert_eq!(resolve_format(format, Path::new(path)), want, "{path}");
        }
    }

    fn cfg(enabled: bool, path: &str, speed: f64) -> ReplayConfig {
        ReplayConfig {
            enabled,
            path: path.into(),
            format: ReplayFormat::Auto,
            speed,
            looping: false,
        }
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(key_of(cfg(true, "a.csv", 0.0).validate()), None);
        // An unknown extension only matters while the feed is on.
        assert_eq!(key_of(cfg(false, "a.txt", 1.0).validate()), None);
        assert_eq!(
            key_of(cfg(true, "a.txt", 1.0).validate()).as_deref(),
            Some("feeds.replay.path")
        );
        for speed in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                key_of(cfg(false, "a.csv", speed).validate()).as_deref(),
                Some("feeds.replay.speed"),
                "{speed}"
            );
        }
    }
}
