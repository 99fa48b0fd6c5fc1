//! What every component's config section shares: the error that names the offending key, the
//! range-check helper, and millisecond durations.
//!
//! A leaf module, so that each component can own and validate its section (`WsConfig` in `ws`,
//! `DatabaseConfig` in `store`, ...) while `config` composes those sections, with no import cycle
//! between `config` and the components.

use std::path::PathBuf;
use std::time::Duration;

/// A configuration problem, naming the key (`ws.max_frame_bytes`) or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl ConfigError {
    /// A bad value at `key` (the full dotted path, `ws.max_frame_bytes`).
    pub(crate) fn key(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// `Ok` when `ok` holds, else a [`ConfigError::Key`] naming `key`.
pub(crate) fn check(ok: bool, key: &str, message: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::key(key, message))
    }
}

/// Milliseconds, as config keys spell durations (`*_ms`), as a `Duration`.
pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Test helper: the key a failed validation names, `None` when it passed.
#[cfg(test)]
pub(crate) fn failed_key(r: Result<(), ConfigError>) -> Option<String> {
    match r {
        Ok(()) => None,
        Err(ConfigError::Key { key, .. }) => Some(key),
        Err(other) => panic!("expected a key error, got {other}"),
    }
}
