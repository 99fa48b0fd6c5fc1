//! REST history reads: through `database.read_url` (a replica) while ingest writes to
//! `database.url`, and on SQLite interrupted once past `database.query_timeout_ms`, their
//! connection then serving again.

use std::time::Duration;

use sqlx::Connection;

use crate::util::{self, TestDb};

/// The last statement of each session of `database` with this `application_name`.
async fn sessions(admin: &mut sqlx::PgConnection, database: &str, app: &str) -> Vec<String> {
    sqlx::query_as::<_, (String,)>(
        "SELECT query FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
    )
    .bind(database)
    .bind(app)
    .fetch_all(admin)
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.0)
    .collect()
}

#[tokio::test]
async fn history_reads_go_through_read_url_and_writes_through_url() {
    let db = TestDb::postgres().await;
    let mut c = db.config();
    c.database.url = format!("{}?application_name=tickcast-primary", db.url);
    // A replica's session: read-only, and named, so pg_stat_activity tells the pools apart.
    c.database.read_url = format!(
        "{}?application_name=tickcast-replica&options=-c%20default_transaction_read_only%3Don",
        db.url
    );
    c.database.read_pool_size = 1;
    let mut srv = util::start(c).await;
    srv.ingest_n("RR", 20, 1.0).await;
    srv.wait_persisted(20).await;

    let (status, _, bars) = srv.get("/api/v1/bars/RR?interval=1s", None).await;
    assert_eq!(status, 200, "{bars}");
    let (status, _, page) = srv.get("/api/v1/ticks/RR?limit=1000", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["ticks"].as_array().map(Vec::len), Some(20), "{page}");

    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&util::pg_admin_url())
        .await
        .unwrap();
    let replica = sessions(&mut admin, &name, "tickcast-replica").await;
    let primary = sessions(&mut admin, &name, "tickcast-primary").await;
    // The replica's one connection served the page last; the primary's never read history.
    assert!(
        replica
            .iter()
            .any(|q| q.contains("FROM ticks WHERE symbol")),
        "replica sessions: {replica:?}"
    );
    assert!(
        primary
            .iter()
            .all(|q| !q.contains("FROM ticks WHERE symbol") && !q.contains("FROM bars WHERE")),
        "primary sessions: {primary:?}"
    );
    assert!(!primary.is_empty(), "the recorder writes through url");
    assert!(
        replica.iter().all(|q| !q.contains("INSERT")),
        "nothing writes through read_url: {replica:?}"
    );
    let _ = admin.close().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_sqlite_read_past_its_bound_is_interrupted_and_its_connection_serves_again() {
    let mut c = util::config();
    c.database.query_timeout_ms = 1000;
    // One read connection: the request after the slow one needs that same connection back.
    c.database.read_pool_size = 1;
    let url = c.database.url.clone();
    let mut srv = util::start(c).await;
    srv.ingest_n("SLOW", 10, 1.0).await;
    srv.wait_persisted(10).await;
    // The pipeline's 1 s bar of them, read after the slow read.
    let store = srv.server().store().clone();
    util::wait_until("a stored 1 s bar", Duration::from_secs(20), async || {
        store
            .count_bars(tickcast::store::BAR_1S_NS)
            .await
            .unwrap_or(0)
            > 0
    })
    .await;

    // `ticks` becomes a view over a recursive CTE that counts far past any bound (its rows never
    // match, computed per row so the planner cannot see that; it only burns CPU): the page query behind /ticks runs until interrupted.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "ALTER TABLE ticks RENAME TO ticks_kept",
        "CREATE VIEW ticks AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
         WHERE i < 1000000000000) SELECT i AS id, 'N' || i AS symbol, i AS ts, i AS ingest_ts, \
         0 AS epoch, i AS seq, 1.0 AS price, 1.0 AS size, 0 AS side FROM n",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let slow = tokio::time::timeout(
        Duration::from_secs(30),
        srv.get("/api/v1/ticks/SLOW?limit=10", None),
    )
    .await
    .expect("the slow read is answered, not left waiting");
    assert_eq!(slow.0, 503, "{}", slow.2);
    assert_eq!(slow.2["code"], "database_unavailable", "{}", slow.2);

    let _ = conn.close().await;
    // The one read connection is back and idle: had the statement gone on running, this read
    // (of stored bars, not the view) would wait behind it and fail too.
    let (status, _, page) = tokio::time::timeout(
        Duration::from_secs(30),
        srv.get("/api/v1/bars/SLOW?interval=1s", None),
    )
    .await
    .expect("the next read is answered");
    assert_eq!(status, 200, "{page}");
    assert!(
        page["bars"].as_array().is_some_and(|b| !b.is_empty()),
        "{page}"
    );
    srv.shutdown().await;
}
