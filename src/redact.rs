//! Credentials out of URLs before they are printed or logged: the one redaction every log line
//! and printed config that carries a URL goes through (`database.url`, `cluster.nats_url`,
//! upstream feed URLs). A leaf: it imports nothing of the crate.

/// What replaces a secret.
pub const MASK: &str = "***";

/// Query parameters that carry a secret (compared without case).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "passwd",
    "pwd",
    "sslpassword",
    "token",
    "auth_token",
    "access_token",
    "jwt",
    "nkey",
    "secret",
    "api_key",
    "apikey",
    "key",
    "signature",
];

/// Schemes whose user name alone (`postgres://app@db`) is no secret; in any other URL a lone
/// userinfo is a token (`nats://s3cr3t@host`) and is masked whole.
const USER_NAME_SCHEMES: &[&str] = &["postgres", "postgresql", "mysql", "sqlite"];

/// `url` with every credential masked: the password of `user:pass@` (the user kept), a lone
/// `token@` (except a database user name), and secret query parameters (`?password=`,
/// `?token=`, ...). A comma-separated list of servers (as NATS takes) is redacted server by
/// server; a server without a scheme (`s3cr3t@host:4222`) too. Anything without credentials
/// comes back unchanged.
pub fn url(url: &str) -> String {
    url.split(',').map(one).collect::<Vec<_>>().join(",")
}

fn one(url: &str) -> String {
    let (scheme, rest_start) = match url.find("://") {
        Some(i) => (Some(&url[..i]), i + 3),
        None => (None, 0),
    };
    // The userinfo ends at the last `@` before the query: a password may hold a `/` or an `@`
    // unencoded, and masking too much is better than printing a secret.
    let query_start = url[rest_start..]
        .find(['?', '#'])
        .map_or(url.len(), |i| rest_start + i);
    let mut out = String::with_capacity(url.len());
    match url[rest_start..query_start].rfind('@') {
        Some(at) => {
            let userinfo = &url[rest_start..rest_start + at];
            out.push_str(&url[..rest_start]);
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None if scheme.is_some_and(|s| {
                    USER_NAME_SCHEMES.iter().any(|n| s.eq_ignore_ascii_case(n))
                }) =>
                {
                    out.push_str(userinfo)
                }
                None => out.push_str(MASK),
            }
            out.push_str(&url[rest_start + at..query_start]);
        }
        None => out.push_str(&url[..query_start]),
    }
    let tail = &url[query_start..];
    match tail.strip_prefix('?') {
        Some(query) => {
            let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) => {
                        format!("{k}={MASK}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
            out.push_str(fragment);
        }
        None => out.push_str(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn every_credential_form_is_masked_and_the_rest_kept() {
        for (given, redacted) in [
            // user:pass@, the user kept (a percent-encoded password too).
            (
                "postgres://app:s3cr%40t@db:5432/ticks",
                "postgres://app:***@db:5432/ticks",
            ),
            (
                "nats://alice:s3cr3t@nats:4222",
                "nats://alice:***@nats:4222",
            ),
            // An unencoded `@` or `/` in the password does not leak its tail.
            ("nats://u:p@ss/w@host:4222", "nats://u:***@host:4222"),
            // A lone userinfo is a token, except a database's user name.
            ("nats://s3cr3t@host", "nats://***@host"),
            ("tls://s3cr3t@host:4222", "tls://***@host:4222"),
            (
                "postgres://root@127.0.0.1/test",
                "postgres://root@127.0.0.1/test",
            ),
            // Secret query parameters, any case; others kept.
            (
                "postgres://app@db/ticks?password=hunter2&sslmode=require",
                "postgres://app@db/ticks?password=***&sslmode=require",
            ),
            (
                "wss://venue.example/ws?Token=abc&stream=trades#x",
                "wss://venue.example/ws?Token=***&stream=trades#x",
            ),
            (
                "wss://venue.example/ws?apikey=abc",
                "wss://venue.example/ws?apikey=***",
            ),
            // Several servers, with and without a scheme.
            (
                "nats://a:pw1@h1:4222,nats://tok@h2:4222,h3:4222",
                "nats://a:***@h1:4222,nats://***@h2:4222,h3:4222",
            ),
            ("s3cr3t@h1:4222,u:pw@h2", "***@h1:4222,u:***@h2"),
            // Nothing to mask.
            (
                "sqlite://tickcast.db?mode=rwc",
                "sqlite://tickcast.db?mode=rwc",
            ),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            (
                "wss://stream.binance.com:9443/ws",
                "wss://stream.binance.com:9443/ws",
            ),
            ("", ""),
        ] {
            assert_eq!(url(given), redacted, "{given}");
        }
    }
}
