//! Connection tokens (docs/PROTOCOL.md "Authentication"): none, one fixed `--token`, or one HS256
//! token minted per socket from `--jwt-hs256-secret` for `--jwt-user`. The token goes on the
//! WebSocket URL as `?token=`; a token the server refuses is a 401 before the upgrade, which the
//! report counts as the connect failure `http_401`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::args::Args;

/// Lifetime of a minted token: longer than any run the loadgen allows (ramp + warm-up +
/// duration), so no socket is closed 4001 mid-run.
pub const MINTED_TTL_S: u64 = 3600;

/// How every socket of the run authenticates.
pub enum Auth {
    Anonymous,
    /// The same token on every socket.
    Token(String),
    /// A fresh HS256 token per socket, `sub` = `user`.
    Hs256 {
        key: EncodingKey,
        user: String,
    },
}

impl std::fmt::Debug for Auth {
    // Never prints a secret or a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode())
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    /// The socket's index: every socket's token is its own.
    jti: String,
}

impl Auth {
    /// From the already validated arguments (clap refuses `--token` with the JWT flags, and
    /// either JWT flag alone).
    pub fn from_args(args: &Args) -> Self {
        match (&args.token, &args.jwt_hs256_secret, &args.jwt_user) {
            (Some(t), _, _) => Auth::Token(t.clone()),
            (None, Some(secret), Some(user)) => Auth::Hs256 {
                key: EncodingKey::from_secret(secret.as_bytes()),
                user: user.clone(),
            },
            _ => Auth::Anonymous,
        }
    }

    /// For the report: `anonymous`, `token` or `jwt_hs256`.
    pub fn mode(&self) -> &'static str {
        match self {
            Auth::Anonymous => "anonymous",
            Auth::Token(_) => "token",
            Auth::Hs256 { .. } => "jwt_hs256",
        }
    }

    /// The token socket `idx` presents, if any (minted now for `Hs256`).
    pub fn token_for(&self, idx: usize) -> anyhow::Result<Option<String>> {
        match self {
            Auth::Anonymous => Ok(None),
            Auth::Token(t) => Ok(Some(t.clone())),
            Auth::Hs256 { key, user } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .context("the clock is before 1970")?
                    .as_secs();
                let claims = Claims {
                    sub: user,
                    exp: now + MINTED_TTL_S,
                    iat: now,
                    jti: idx.to_string(),
                };
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
                    .map(Some)
                    .context("signing a token")
            }
        }
    }
}

/// `url` with `token=<token>` added to its query (percent-encoded), before any fragment.
pub fn url_with_token(url: &str, token: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let sep = match base.find('?') {
        None => "?",
        Some(_) if base.ends_with(['?', '&']) => "",
        Some(_) => "&",
    };
    let mut out = format!("{base}{sep}token=");
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn token_goes_on_the_query() {
        let cases = [
            (
                "ws://127.0.0.1:8080/ws",
                "ws://127.0.0.1:8080/ws?token=a.b-c_d",
            ),
            (
                "ws://127.0.0.1:8080/ws?encoding=msgpack",
                "ws://127.0.0.1:8080/ws?encoding=msgpack&token=a.b-c_d",
            ),
            ("ws://h/ws?", "ws://h/ws?token=a.b-c_d"),
            ("ws://h/ws#top", "ws://h/ws?token=a.b-c_d#top"),
        ];
        for (url, want) in cases {
            assert_eq!(url_with_token(url, "a.b-c_d"), want, "{url}");
        }
        // Anything outside the unreserved set is escaped, so a token cannot add parameters.
        assert_eq!(
            url_with_token("ws://h/ws", "a+b&c=d /"),
            "ws://h/ws?token=a%2Bb%26c%3Dd%20%2F"
        );
    }

    #[derive(Deserialize)]
    struct Read {
        sub: String,
        exp: u64,
        iat: u64,
        jti: String,
    }

    #[test]
    fn minted_tokens_verify_with_the_secret_and_differ_per_socket() {
        let args = Args::try_parse_from([
            "tickcast-loadgen",
            "--jwt-hs256-secret",
            SECRET,
            "--jwt-user",
            "alice",
        ])
        .expect("parses");
        let auth = Auth::from_args(&args);
        assert_eq!(auth.mode(), "jwt_hs256");
        let a = auth.token_for(0).expect("signs").expect("a token");
        let b = auth.token_for(1).expect("signs").expect("a token");
        assert_ne!(a, b);
        let mut v = Validation::new(Algorithm::HS256);
        v.set_required_spec_claims(&["exp", "sub"]);
        let key = DecodingKey::from_secret(SECRET.as_bytes());
        let claims = jsonwebtoken::decode::<Read>(&a, &key, &v)
            .expect("verifies")
            .claims;
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.exp - claims.iat, MINTED_TTL_S);
        assert_eq!(claims.jti, "0");
        // Another secret does not verify it.
        let other = DecodingKey::from_secret(b"another secret, also 32 bytes long");
        assert!(jsonwebtoken::decode::<Read>(&a, &other, &v).is_err());
    }

    #[test]
    fn fixed_token_and_anonymous() {
        let args = Args::try_parse_from(["tickcast-loadgen", "--token", "t0k"]).expect("parses");
        let auth = Auth::from_args(&args);
        assert_eq!(auth.mode(), "token");
        assert_eq!(
            auth.token_for(7).expect("no signing").as_deref(),
            Some("t0k")
        );
        let auth = Auth::from_args(&Args::try_parse_from(["tickcast-loadgen"]).expect("parses"));
        assert_eq!(auth.mode(), "anonymous");
        assert_eq!(auth.token_for(0).expect("nothing to sign"), None);
        // Debug never shows the token.
        assert_eq!(format!("{:?}", Auth::Token("secret".into())), "token");
    }
}
