//! The binary refuses bad configuration before binding, naming the key, with exit code 64.

use std::process::Command;

fn tickcast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
}

#[test]
fn unknown_or_bad_keys_stop_startup_naming_the_key() {
    let cases = [
        ("TICKCAST_WS__MAX_SUBSCRIPTONS", "5", "max_subscriptons"),
        (
            "TICKCAST_WS__MAX_SUBSCRIPTIONS",
            "many",
            "ws.max_subscriptions",
        ),
        (
            "TICKCAST_FEEDS__SYNTHETIC__RATE",
            "0",
            "feeds.synthetic.rate",
        ),
        (
            "TICKCAST_FEEDS__MAX_FUTURE_SKEW_MS",
            "0",
            "feeds.max_future_skew_ms",
        ),
        // Past a day (u64::MAX overflowed the issued token's `exp`).
        (
            "TICKCAST_AUTH__TOKEN_TTL_S",
            "18446744073709551615",
            "auth.token_ttl_s",
        ),
        ("TICKCAST_AUTH__JWT_AUDIENCE", "", "auth.jwt_audience"),
    ];
    for (key, value, needle) in cases {
        let out = tickcast()
            .arg("serve")
            .env(key, value)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(64), "{key}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{key}={value}: {err}");
    }
}

#[test]
fn config_file_layer_is_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("tickcast-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[ring]\ncapacity = 77\n").unwrap();
    let out = tickcast()
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("capacity: 77"));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[ring]\ncapacity = \"big\"\n").unwrap();
    let out = tickcast()
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ring.capacity"));
    let out = tickcast()
        .args(["serve", "--config"])
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn check_config_masks_secrets() {
    let out = tickcast()
        .arg("check-config")
        .env("TICKCAST_FEEDS__HTTP__TOKEN", "ingest-secret-123")
        .env(
            "DATABASE_URL",
            "postgres://app:db-secret-456@127.0.0.1:5432/ticks",
        )
        .env(
            "TICKCAST_CLUSTER__NATS_URL",
            "nats://a:nats-secret-1@n1:4222,nats://b:nats-secret-2@n2:4222",
        )
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!printed.contains("ingest-secret-123"), "{printed}");
    assert!(!printed.contains("db-secret-456"), "{printed}");
    assert!(!printed.contains("nats-secret"), "{printed}");
    assert!(
        printed.contains("nats://a:***@n1:4222,nats://b:***@n2:4222"),
        "{printed}"
    );
    assert!(
        printed.contains("postgres://app:***@127.0.0.1:5432/ticks"),
        "{printed}"
    );
}

#[test]
fn check_config_masks_every_url_credential_form() {
    // (variable, value, the secret it holds, what is printed instead)
    let cases = [
        (
            "TICKCAST_CLUSTER__NATS_URL",
            "nats://s3cr3t-token@nats.example:4222",
            "s3cr3t-token",
            "nats://***@nats.example:4222",
        ),
        (
            "TICKCAST_CLUSTER__NATS_URL",
            "nats://nats.example:4222?token=s3cr3t-query",
            "s3cr3t-query",
            "nats://nats.example:4222?token=***",
        ),
        (
            "TICKCAST_CLUSTER__NATS_URL",
            "n1:4222,tok-s3cr3t@n2:4222,nats://u:pw-s3cr3t@n3",
            "s3cr3t",
            "n1:4222,***@n2:4222,nats://u:***@n3",
        ),
        (
            "DATABASE_URL",
            "postgres://app@db/ticks?password=pg-s3cr3t&sslmode=require",
            "pg-s3cr3t",
            "postgres://app@db/ticks?password=***&sslmode=require",
        ),
        (
            "TICKCAST_FEEDS__UPSTREAM__URL",
            "wss://venue.example/ws?apikey=venue-s3cr3t",
            "venue-s3cr3t",
            "wss://venue.example/ws?apikey=***",
        ),
        (
            "TICKCAST_FEEDS__UPSTREAM__URL",
            "wss://user:venue-s3cr3t@venue.example/ws",
            "venue-s3cr3t",
            "wss://user:***@venue.example/ws",
        ),
    ];
    for (var, value, secret, masked) in cases {
        let out = tickcast()
            .arg("check-config")
            .env(var, value)
            .output()
            .expect("runs");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{var}={value}: {printed}");
        assert!(!printed.contains(secret), "{var}={value}: {printed}");
        assert!(printed.contains(masked), "{var}={value}: {printed}");
    }
}

#[test]
fn cluster_roles_are_checked_before_startup() {
    // An edge or ingest node shares history through PostgreSQL; the default SQLite is refused.
    let out = tickcast()
        .args(["serve", "--role", "edge"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`cluster.role`") && err.contains("postgres"),
        "{err}"
    );
    // An unknown role, by flag or by key.
    let out = tickcast()
        .args(["serve", "--role", "leader"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "clap refuses the value");
    let out = tickcast()
        .arg("serve")
        .env("TICKCAST_CLUSTER__ROLE", "leader")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.role"));
    // NATS that never answers: start-up fails after connect_timeout_ms, naming the key; neither
    // the retries' log lines nor the error print the URL's password.
    let out = tickcast()
        .args(["serve", "--role", "ingest"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
        .env(
            "TICKCAST_CLUSTER__NATS_URL",
            "nats://u:nats-pw-1@127.0.0.1:1",
        )
        .env("TICKCAST_CLUSTER__CONNECT_TIMEOUT_MS", "300")
        .env("TICKCAST_SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster.nats_url"), "{err}");
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("nats not reachable yet"), "{logs}");
    for output in [&err, &logs] {
        assert!(!output.contains("nats-pw-1"), "{output}");
        assert!(output.contains("nats://u:***@127.0.0.1:1"), "{output}");
    }
}
