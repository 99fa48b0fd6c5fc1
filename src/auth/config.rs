//! `[auth]`: how WebSocket connections prove who they are.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

/// Longest `auth.token_ttl_s`: a day (connections refresh with an `auth` op).
const MAX_TOKEN_TTL_S: u64 = 86_400;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 tokens are signed with this shared secret (at least 32 bytes).
    pub jwt_hs256_secret: Option<String>,
    /// RS256 or EdDSA tokens are verified with the public key in this PEM file.
    pub jwt_public_key_file: Option<PathBuf>,
    /// Connections without a token may subscribe to public channels.
    pub anonymous: bool,
    /// Lifetime of the tokens `POST /api/v1/auth/token` issues for an API key (HS256 only).
    pub token_ttl_s: u64,
    /// When set, a token must carry this `iss` (tokens this server issues do).
    pub jwt_issuer: Option<String>,
    /// When set, a token's `aud` must name this audience (tokens this server issues do).
    pub jwt_audience: Option<String>,
    /// With `anonymous = false`: a connection that has not authenticated this many seconds
    /// after it opened is closed (4001 `authentication required`).
    pub auth_timeout_s: u64,
}

impl AuthConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            !(self.jwt_hs256_secret.is_some() && self.jwt_public_key_file.is_some()),
            "auth.jwt_public_key_file",
            "set either auth.jwt_hs256_secret or auth.jwt_public_key_file, not both",
        )?;
        check(
            self.jwt_hs256_secret.as_ref().is_none_or(|s| s.len() >= 32),
            "auth.jwt_hs256_secret",
            "must be at least 32 bytes",
        )?;
        check(
            (1..=MAX_TOKEN_TTL_S).contains(&self.token_ttl_s),
            "auth.token_ttl_s",
            "must be between 1 and 86400 (a day)",
        )?;
        for (value, key) in [
            (&self.jwt_issuer, "auth.jwt_issuer"),
            (&self.jwt_audience, "auth.jwt_audience"),
        ] {
            check(
                value.as_ref().is_none_or(|v| !v.trim().is_empty()),
                key,
                "must not be empty (leave it out to accept any)",
            )?;
        }
        check(
            (1..=300).contains(&self.auth_timeout_s),
            "auth.auth_timeout_s",
            "must be between 1 and 300",
        )?;
        check(
            self.anonymous || self.jwt_hs256_secret.is_some() || self.jwt_public_key_file.is_some(),
            "auth.anonymous",
            "false needs a key (auth.jwt_hs256_secret or auth.jwt_public_key_file): no one could connect",
        )
    }

    /// For printing: the secret masked.
    pub fn redacted(&self) -> AuthConfig {
        AuthConfig {
            jwt_hs256_secret: self
                .jwt_hs256_secret
                .as_ref()
                .map(|_| crate::redact::MASK.into()),
            ..self.clone()
        }
    }
}
