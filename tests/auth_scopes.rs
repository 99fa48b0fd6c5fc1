//! Users' stored scopes (`tickcast user add/set --channels --limits`) carried into the tokens
//! their API keys are exchanged for, on SQLite and PostgreSQL.

use serde_json::json;

use crate::auth::{SECRET, code, connect_with, exchange};
use crate::util;

/// Runs `tickcast user ARGS` against the database at `url`: (exit code, stdout, stderr).
fn user_cli(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("user")
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_stored_scope_restricts_the_tokens_its_key_gets() {
    for db in util::backends().await {
        let mut c = db.config();
        c.auth.jwt_hs256_secret = Some(SECRET.into());
        let srv = util::start(c).await;
        for symbol in ["AAPL", "MSFT", "BTC-USD"] {
            srv.ingest_n(symbol, 1, 0.0).await;
        }
        srv.wait_seq("BTC-USD", 1).await;
        let (exit, key, err) = user_cli(
            &db.url,
            &[
                "add",
                "paul",
                "--channels",
                "ticks:AAPL,ticks:BTC-*",
                "--limits",
                "subscriptions=1",
            ],
        );
        assert_eq!(exit, Some(0), "{}: {err}", db.backend);
        let mut c = connect_with(&srv, &exchange(&srv, &key).await).await;
        c.subscribe(json!({"op":"subscribe","id":1,"channels":["ticks:AAPL"]}))
            .await;
        c.send(json!({"op":"subscribe","id":2,"channels":["ticks:MSFT"]}))
            .await;
        let e = c.event_of("error").await;
        assert_eq!(
            (code(&e), e["id"].as_i64()),
            ("forbidden", Some(2)),
            "{}: {e}",
            db.backend
        );
        // Permitted, but past the user's one subscription.
        c.send(json!({"op":"subscribe","id":3,"channels":["ticks:BTC-USD"]}))
            .await;
        let e = c.event_of("error").await;
        assert_eq!(code(&e), "too_many_subscriptions", "{}: {e}", db.backend);

        // `user set` changes what the next token may do.
        let (exit, printed, err) = user_cli(&db.url, &["set", "paul", "--clear-channels"]);
        assert_eq!(exit, Some(0), "{err}");
        assert_eq!(printed, r#"{"limits":{"subscriptions":1}}"#);
        let mut c = connect_with(&srv, &exchange(&srv, &key).await).await;
        c.subscribe(json!({"op":"subscribe","id":4,"channels":["ticks:MSFT"]}))
            .await;

        // Bad scopes are refused naming what is wrong, and change nothing.
        for (args, named) in [
            (
                &["add", "quinn", "--channels", "nope:AAPL"][..],
                "nope:AAPL",
            ),
            (&["add", "quinn", "--limits", "bogus=1"][..], "bogus"),
            (&["set", "paul", "--limits", "connections=0"][..], "0"),
            (&["set", "nobody", "--channels", "ticks:*"][..], "nobody"),
        ] {
            let (exit, _, err) = user_cli(&db.url, args);
            assert_eq!(exit, Some(1), "{args:?}: {err}");
            assert!(err.contains(named), "{args:?}: {err}");
        }
        assert_eq!(
            srv.server()
                .store()
                .user_scope("quinn")
                .await
                .expect("read"),
            None
        );
    }
}

/// Users from before migration 0008 (no stored scope) keep what their tokens had: everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_from_before_scopes_keep_unrestricted_tokens() {
    for db in util::backends().await {
        let key = {
            let store = tickcast::store::Store::open(&db.config().database).expect("store");
            store.migrate_to(7).await.expect("schema 7");
            let (_, key) = store.create_user("rita").await.expect("user");
            store.close().await;
            key
        };
        let mut c = db.config();
        c.auth.jwt_hs256_secret = Some(SECRET.into());
        let srv = util::start(c).await;
        srv.ingest_n("MSFT", 1, 0.0).await;
        srv.wait_seq("MSFT", 1).await;
        assert_eq!(
            srv.server().store().user_scope("rita").await.expect("read"),
            Some(tickcast::auth::Scope::default()),
            "{}",
            db.backend
        );
        let mut c = connect_with(&srv, &exchange(&srv, &key).await).await;
        let ack = c
            .subscribe(json!({"op":"subscribe","channels":["ticks:MSFT","ticks:*","bars.1m:*"]}))
            .await;
        assert_eq!(
            ack["channels"],
            json!(["ticks:MSFT", "ticks:*", "bars.1m:*"]),
            "{}",
            db.backend
        );
    }
}
