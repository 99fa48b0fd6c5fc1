use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn config(secret: Option<&str>, key_file: Option<std::path::PathBuf>) -> AuthConfig {
    AuthConfig {
        jwt_hs256_secret: secret.map(str::to_owned),
        jwt_public_key_file: key_file,
        anonymous: true,
        token_ttl_s: 900,
        jwt_issuer: None,
        jwt_audience: None,
        auth_timeout_s: 10,
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn hs256(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn hs256_tokens_verify_with_their_claims() {
    let v = Verifier::from_config(&config(Some(SECRET), None))
        .unwrap()
        .unwrap();
    let exp = now_s() + 60;
    let token = hs256(
        json!({"sub": "alice", "exp": exp, "channels": ["ticks:BTC-*"],
               "limits": {"subscriptions": 3, "min_throttle_ms": 100}}),
        SECRET,
    );
    let p = v.verify(&token).unwrap();
    assert_eq!((p.user.as_str(), p.expires_s), ("alice", exp));
    assert_eq!(
        p.limits,
        TokenLimits {
            subscriptions: Some(3),
            min_throttle_ms: Some(100),
            ..TokenLimits::default()
        }
    );
    assert!(p.may_subscribe(Kind::Ticks, Some("BTC-USD")));
    assert!(!p.may_subscribe(Kind::Ticks, Some("AAPL")));
    // No `channels` claim: every channel.
    let open = v
        .verify(&hs256(json!({"sub": "bob", "exp": exp}), SECRET))
        .unwrap();
    assert!(open.may_subscribe(Kind::Ticks, None));
}

#[test]
fn bad_tokens_get_specific_errors() {
    let v = Verifier::from_config(&config(Some(SECRET), None))
        .unwrap()
        .unwrap();
    let exp = now_s() + 60;
    let cases = [
        (
            hs256(json!({"sub": "a", "exp": now_s() - 1}), SECRET),
            AuthError::Expired,
        ),
        (
            hs256(
                json!({"sub": "a", "exp": exp}),
                "another-secret-of-at-least-32-bytes",
            ),
            AuthError::Invalid("bad signature".into()),
        ),
        (
            hs256(json!({"sub": "", "exp": exp}), SECRET),
            AuthError::Invalid("empty `sub`".into()),
        ),
        (
            "not.a.token".to_string(),
            AuthError::Invalid("malformed token".into()),
        ),
    ];
    for (token, want) in cases {
        assert_eq!(v.verify(&token).unwrap_err(), want, "{token}");
    }
    let err = v.verify(&hs256(json!({"exp": exp}), SECRET)).unwrap_err();
    assert!(matches!(err, AuthError::Invalid(m) if m.contains("`sub`")));
    let err = v
        .verify(&hs256(
            json!({"sub": "a", "exp": exp, "channels": ["nope:X"]}),
            SECRET,
        ))
        .unwrap_err();
    assert!(matches!(err, AuthError::Invalid(m) if m.contains("nope:X")));
    let err = v
        .verify(&hs256(
            json!({"sub": "a", "exp": exp, "limits": {"bogus": 1}}),
            SECRET,
        ))
        .unwrap_err();
    assert!(matches!(err, AuthError::Invalid(m) if m.contains("bogus")));
}

#[test]
fn eddsa_tokens_verify_with_the_public_key_file() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let dir = std::env::temp_dir().join(format!("tickcast-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ed25519.pub.pem");
    std::fs::write(&file, pair.public_key_pem()).unwrap();
    let v = Verifier::from_config(&config(None, Some(file.clone())))
        .unwrap()
        .unwrap();
    let signing = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
    let token = encode(
        &Header::new(Algorithm::EdDSA),
        &json!({"sub": "carol", "exp": now_s() + 60}),
        &signing,
    )
    .unwrap();
    assert_eq!(v.verify(&token).unwrap().user, "carol");
    // An HS256 token is refused by an EdDSA server, even one signed with the key's text.
    let forged = hs256(
        json!({"sub": "mallory", "exp": now_s() + 60}),
        &pair.public_key_pem(),
    );
    assert!(matches!(v.verify(&forged), Err(AuthError::Invalid(_))));
    // A key file that is not a key is a config error naming the key.
    std::fs::write(&file, "not a key").unwrap();
    let err = Verifier::from_config(&config(None, Some(file))).unwrap_err();
    assert!(
        err.to_string().contains("auth.jwt_public_key_file"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_rules_name_their_key() {
    use crate::config_section::failed_key;
    assert_eq!(failed_key(config(None, None).validate()), None);
    assert_eq!(
        failed_key(config(Some("short"), None).validate()).as_deref(),
        Some("auth.jwt_hs256_secret")
    );
    assert_eq!(
        failed_key(config(Some(SECRET), Some("k.pem".into())).validate()).as_deref(),
        Some("auth.jwt_public_key_file")
    );
    let closed = AuthConfig {
        anonymous: false,
        ..config(None, None)
    };
    assert_eq!(
        failed_key(closed.validate()).as_deref(),
        Some("auth.anonymous")
    );
    // A lifetime past a day (u64::MAX overflowed `now + ttl`), or none.
    for ttl in [0, 86_401, u64::MAX] {
        let c = AuthConfig {
            token_ttl_s: ttl,
            ..config(Some(SECRET), None)
        };
        assert_eq!(
            failed_key(c.validate()).as_deref(),
            Some("auth.token_ttl_s"),
            "{ttl}"
        );
    }
    let empty = AuthConfig {
        jwt_audience: Some(" ".into()),
        ..config(Some(SECRET), None)
    };
    assert_eq!(
        failed_key(empty.validate()).as_deref(),
        Some("auth.jwt_audience")
    );
}

#[test]
fn a_token_not_yet_valid_is_refused() {
    let v = Verifier::from_config(&config(Some(SECRET), None))
        .unwrap()
        .unwrap();
    let exp = now_s() + 7200;
    let later = hs256(
        json!({"sub": "a", "exp": exp, "nbf": now_s() + 3600}),
        SECRET,
    );
    assert_eq!(v.verify(&later).unwrap_err(), AuthError::NotYetValid);
    let now = hs256(json!({"sub": "a", "exp": exp, "nbf": now_s()}), SECRET);
    assert_eq!(v.verify(&now).unwrap().user, "a");
}

#[test]
fn an_expected_issuer_and_audience_are_required() {
    let strict = AuthConfig {
        jwt_issuer: Some("https://id.example".into()),
        jwt_audience: Some("tickcast".into()),
        ..config(Some(SECRET), None)
    };
    let v = Verifier::from_config(&strict).unwrap().unwrap();
    let exp = now_s() + 60;
    let ok = json!({"sub": "a", "exp": exp, "iss": "https://id.example", "aud": "tickcast"});
    assert_eq!(v.verify(&hs256(ok.clone(), SECRET)).unwrap().user, "a");
    let with = |k: &str, val: serde_json::Value| {
        let mut c = ok.clone();
        c[k] = val;
        hs256(c, SECRET)
    };
    let without = |k: &str| {
        let mut c = ok.clone();
        c.as_object_mut().unwrap().remove(k);
        hs256(c, SECRET)
    };
    for (token, want) in [
        (with("iss", json!("https://other.example")), "wrong `iss`"),
        (with("aud", json!("another-service")), "wrong `aud`"),
        (without("iss"), "no `iss` claim"),
        (without("aud"), "no `aud` claim"),
    ] {
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::Invalid(want.into())
        );
    }
    // Tokens this server issues carry both.
    let (token, _) = v.issue("b", &Scope::default(), now_s()).unwrap();
    assert_eq!(v.verify(&token).unwrap().user, "b");
    // Without an expected audience, a token for some audience is refused all the same.
    let open = Verifier::from_config(&config(Some(SECRET), None))
        .unwrap()
        .unwrap();
    assert_eq!(
        open.verify(&with("aud", json!("another-service")))
            .unwrap_err(),
        AuthError::Invalid("wrong `aud`".into())
    );
}

#[test]
fn an_hs256_server_issues_tokens_it_verifies() {
    let v = Verifier::from_config(&config(Some(SECRET), None))
        .unwrap()
        .unwrap();
    let now = now_s();
    let (token, exp) = v.issue("dave", &Scope::default(), now).unwrap();
    assert_eq!(exp, now + 900);
    let p = v.verify(&token).unwrap();
    assert_eq!(
        (p.user.as_str(), p.expires_s, p.channels, p.limits),
        ("dave", exp, None, TokenLimits::default())
    );
    // A user's scope travels in the token.
    let scope = Scope {
        channels: Some(vec!["ticks:AAPL".into()]),
        limits: Some(TokenLimits {
            subscriptions: Some(1),
            ..TokenLimits::default()
        }),
    };
    let (token, _) = v.issue("erin", &scope, now).unwrap();
    let p = v.verify(&token).unwrap();
    assert!(p.may_subscribe(Kind::Ticks, Some("AAPL")));
    assert!(!p.may_subscribe(Kind::Ticks, Some("MSFT")));
    assert_eq!(p.limits.subscriptions, Some(1));
}
