//! Who a WebSocket connection is: a signed token (JWT) presented at connect (`?token=`) or in an
//! `auth` op, verified here against `[auth]`'s key, and the permissions it carries: the channel
//! patterns its holder may subscribe and its limits. Anonymous connections get the server's
//! defaults and, unless `auth.anonymous = false`, every public channel.

mod config;
mod connections;
mod patterns;
mod scope;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use config::AuthConfig;
pub use connections::{ConnectionsExhausted, UserConnections, UserSlot};
pub use patterns::ChannelPatterns;
pub use scope::Scope;

use crate::config_section::ConfigError;
use crate::model::Kind;

/// Why a token was refused (the text goes to the client).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("this server has no [auth] key configured; tokens cannot be verified")]
    Disabled,
    #[error("this server verifies tokens with a public key and cannot sign any")]
    CannotSign,
}

/// Per-token limits (the `limits` claim); each overrides the server's default for anonymous
/// connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLimits {
    /// Subscriptions the connection may hold (`ws.max_subscriptions` otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<usize>,
    /// Every subscription of the connection is throttled to at least this (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_throttle_ms: Option<u64>,
    /// Ops per second (`ws.ops_per_second` otherwise), with a burst of twice that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_per_second: Option<u32>,
    /// Connections the user may hold open on this node at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
}

/// The claims tickcast reads.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    limits: Option<TokenLimits>,
}

/// An authenticated holder: what a verified token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// `sub`: the user name of `tickcast user add`.
    pub user: String,
    /// `exp`, seconds since the Unix epoch.
    pub expires_s: u64,
    /// `None`: every channel.
    pub channels: Option<ChannelPatterns>,
    pub limits: TokenLimits,
}

impl Principal {
    /// May this holder subscribe `kind:symbol` (`symbol` `None` for the kind's wildcard)?
    pub fn may_subscribe(&self, kind: Kind, symbol: Option<&str>) -> bool {
        self.channels
            .as_ref()
            .is_none_or(|p| p.allows(kind, symbol))
    }
}

/// The claims of a token this server issues for an API key.
#[derive(Serialize)]
struct Issued<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    /// The user's stored scope (`channels`, `limits`), so the token restricts what the key does.
    #[serde(flatten)]
    scope: &'a Scope,
}

/// Verifies tokens with the configured key (and, with an HS256 secret, issues them).
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Only a shared secret can sign.
    signer: Option<EncodingKey>,
    ttl_s: u64,
    /// `auth.jwt_issuer` and `auth.jwt_audience`: required of every token, put in issued ones.
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl Verifier {
    /// The verifier `[auth]` asks for; `None` when it names no key. A key that cannot be read
    /// is a config error naming its key.
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Arc<Verifier>>, ConfigError> {
        // At most one key, a long enough secret: the section's own rules.
        cfg.validate()?;
        let signer = cfg
            .jwt_hs256_secret
            .as_ref()
            .map(|secret| EncodingKey::from_secret(secret.as_bytes()));
        let (key, algorithm) = match (&cfg.jwt_hs256_secret, &cfg.jwt_public_key_file) {
            (Some(secret), _) => (
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ),
            (None, Some(path)) => {
                let bad = |m: String| ConfigError::key("auth.jwt_public_key_file", m);
                let pem = std::fs::read(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                // An RSA key means RS256; an Ed25519 key means EdDSA.
                match DecodingKey::from_rsa_pem(&pem) {
                    Ok(k) => (k, Algorithm::RS256),
                    Err(_) => (
                        DecodingKey::from_ed_pem(&pem).map_err(|e| {
                            bad(format!("not an RSA or Ed25519 public key in PEM: {e}"))
                        })?,
                        Algorithm::EdDSA,
                    ),
                }
            }
            (None, None) => return Ok(None),
        };
        let mut validation = Validation::new(algorithm);
        // `exp` is the moment the connection ends, `nbf` the first it may start: no grace on
        // either.
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &cfg.jwt_issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        // Without an expected audience, a token for some audience is not for this server.
        if let Some(aud) = &cfg.jwt_audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Some(Arc::new(Verifier {
            key,
            validation,
            signer,
            ttl_s: cfg.token_ttl_s,
            issuer: cfg.jwt_issuer.clone(),
            audience: cfg.jwt_audience.clone(),
        })))
    }

    /// A token for `user` within `scope`, valid for `auth.token_ttl_s` from `now_s`; with its
    /// `exp`.
    pub fn issue(&self, user: &str, scope: &Scope, now_s: u64) -> Result<(String, u64), AuthError> {
        let signer = self.signer.as_ref().ok_or(AuthError::CannotSign)?;
        // `auth.token_ttl_s` is at most a day; saturating all the same.
        let exp = now_s.saturating_add(self.ttl_s);
        let claims = Issued {
            sub: user,
            exp,
            iat: now_s,
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
            scope,
        };
        jsonwebtoken::encode(&Header::default(), &claims, signer)
            .map(|t| (t, exp))
            .map_err(|e| AuthError::Invalid(format!("cannot sign: {e}")))
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong `iss`".into()),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong `aud`".into()),
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("wrong algorithm".into()),
                ErrorKind::MissingRequiredClaim(c) => AuthError::Invalid(format!("no `{c}` claim")),
                ErrorKind::Json(e) => AuthError::Invalid(format!("claims: {e}")),
                _ => AuthError::Invalid("malformed token".into()),
            },
        )?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty `sub`".into()));
        }
        if let Some(limits) = &claims.limits {
            limits.check().map_err(AuthError::Invalid)?;
        }
        let channels = claims
            .channels
            .map(|p| ChannelPatterns::parse(&p))
            .transpose()
            .map_err(AuthError::Invalid)?;
        Ok(Principal {
            user: claims.sub,
            expires_s: claims.exp,
            channels,
            limits: claims.limits.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests;
