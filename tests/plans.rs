//! Bounded reads: every query a REST history page runs is planned as an index probe or an
//! index range scan, never an aggregate over every matching row or a sort under a limit, on both
//! backends, before and after the statistics refresh the recorder runs after bulk writes.

use tickcast::store::{
    BAR_1S_NS, BarRecord, Db, HISTORY_QUERIES, IndicatorRecord, RUN_QUERIES, Store, TickRow,
};

use crate::util::{self, TestDb};

const T0: i64 = 1_764_070_000_000_000_000;
/// As in a real store, one symbol is a small part of every time range.
const SYMBOLS: i64 = 40;

/// Bars and ticks of many symbols, enough for a planner to prefer an index for one page.
async fn load(store: &Store) {
    let bars: Vec<BarRecord> = (0..40_000i64)
        .map(|i| {
            let symbol = format!("S{}", i % SYMBOLS);
            util::flat_bar(&symbol, BAR_1S_NS, T0 + (i / SYMBOLS) * BAR_1S_NS)
        })
        .collect();
    // Their days' partitions first, as the recorder and the import do (PostgreSQL).
    let times = bars.iter().map(|b| b.start);
    store
        .ensure_partitions_for(times.chain([T0 + 40_000 * 1_000_000]))
        .await
        .unwrap();
    for chunk in bars.chunks(2000) {
        store.insert_bars(chunk).await.unwrap();
    }
    let ticks: Vec<TickRow> = (0..40_000i64)
        .map(|i| TickRow {
            symbol: format!("S{}", i % SYMBOLS).into(),
            ts: T0 + i * 1_000_000,
            ingest_ts: T0 + i * 1_000_000,
            epoch: 1,
            seq: i,
            price: 1.0,
            size: 1.0,
            side: None,
        })
        .collect();
    for chunk in ticks.chunks(2000) {
        store.insert_ticks(chunk).await.unwrap();
    }
    let rows = indicator_rows(T0);
    for chunk in rows.chunks(2000) {
        store.insert_indicators(chunk).await.unwrap();
    }
}

/// Indicator history of many symbols from `t0`: one row per symbol per second, 40,000 rows.
fn indicator_rows(t0: i64) -> Vec<IndicatorRecord> {
    (0..40_000i64)
        .map(|i| IndicatorRecord {
            symbol: format!("S{}", i % SYMBOLS).into(),
            start: t0 + (i / SYMBOLS) * BAR_1S_NS,
            epoch: 1,
            fields: r#"{"sma_20":1.0,"vwap":1.0}"#.into(),
        })
        .collect()
}

/// The query with its `$N` parameters as literals: one symbol, a page-sized range.
fn with_literals(sql: &str, params: usize) -> String {
    let values = literals(sql, params);
    let mut sql = sql.to_owned();
    for (i, v) in values.iter().enumerate().rev() {
        sql = sql.replace(&format!("${}", i + 1), v);
    }
    sql
}

/// The values of a query's `$N` parameters: one symbol, a page-sized range.
fn literals(sql: &str, params: usize) -> Vec<String> {
    if sql.contains("FROM indicators") {
        // The indicators page binds (symbol, from, to, limit).
        return vec![
            "'S1'".to_owned(),
            (T0 + 200 * BAR_1S_NS).to_string(),
            (T0 + 300 * BAR_1S_NS).to_string(),
            "100".to_owned(),
        ];
    }
    let values = [
        "'S1'".to_owned(),
        BAR_1S_NS.to_string(),
        (T0 + 200 * BAR_1S_NS).to_string(),
        (T0 + 300 * BAR_1S_NS).to_string(),
        "0".to_owned(),
        "100".to_owned(),
    ];
    // The ticks page binds (symbol, from, to, cursor ts, cursor id, limit). The newest-first
    // page is checked as "the latest N" asks for it: its first page, cursor at the end of time.
    // (A cursor 5 s into this small table leaves 5,000 rows before it, all symbols', and
    // PostgreSQL then scans them on `ticks_ts` with an incremental sort: bounded by that range.)
    let cursor = if sql.contains("ts DESC") {
        [i64::MAX.to_string(), i64::MAX.to_string()]
    } else {
        [(T0 + 5_000_000_000).to_string(), "0".to_owned()]
    };
    if params == 5 {
        // A bars page: (symbol, interval, from, to, limit), over a range longer than the page
        // as a page from a time reads it (a range of exactly the page may be sorted whole).
        vec![
            values[0].clone(),
            values[1].clone(),
            values[2].clone(),
            (T0 + 1_000 * BAR_1S_NS).to_string(),
            "100".to_owned(),
        ]
    } else if params == 6 {
        vec![
            values[0].clone(),
            T0.to_string(),
            (T0 + 1_000_000_000_000).to_string(),
            cursor[0].clone(),
            cursor[1].clone(),
            "100".to_owned(),
        ]
    } else {
        values[..params].to_vec()
    }
}

/// A run query ([`RUN_QUERIES`]) with its parameters as literals: `S1`'s ticks of run 1 (every
/// tick `load` writes), from 5 s in (by time, or by seq 5,000), before seq 40,000, 100 of them.
fn run_literals(sql: &str, params: usize) -> String {
    let since = if params == 4 {
        (T0 + 5_000_000_000).to_string()
    } else {
        "5000".to_owned()
    };
    let values = [
        "'S1'".to_owned(),
        "1".to_owned(),
        since,
        "40000".to_owned(),
        "100".to_owned(),
    ];
    let mut sql = sql.to_owned();
    for (i, v) in values[..params].iter().enumerate().rev() {
        sql = sql.replace(&format!("${}", i + 1), v);
    }
    sql
}

/// What is wrong with one query's plan, if anything.
async fn plan_faults(store: &Store, name: &str, sql: &str, params: usize) -> Vec<String> {
    let sql = if RUN_QUERIES.iter().any(|(n, ..)| *n == name) {
        run_literals(sql, params)
    } else {
        with_literals(sql, params)
    };
    let limited = sql.contains("LIMIT");
    let mut faults = Vec::new();
    match store.db() {
        Db::Postgres(p) => {
            let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {sql}"))
                .fetch_all(p)
                .await
                .unwrap();
            let plan: Vec<String> = rows.into_iter().map(|r| r.0).collect();
            let text = plan.join("\n");
            // A sort under a Limit reads the whole range first. (The range scan itself may be
            // sorted: PostgreSQL picks `bars_ts` for a short range on a small table, which is
            // still bounded by the range.)
            let forbidden: &[&str] = if limited {
                &["Aggregate", "Seq Scan", "Sort"]
            } else {
                &["Aggregate", "Seq Scan"]
            };
            // Plan nodes, not their details: a Merge Append of ordered index scans (several
            // days) says `Sort Key:` and sorts nothing.
            let nodes: Vec<&str> = plan
                .iter()
                .filter_map(|l| l.split_once("  (cost=").map(|(node, _)| node))
                .map(|n| n.trim_start().trim_start_matches("->").trim_start())
                .collect();
            for bad in forbidden {
                if nodes.iter().any(|n| n.contains(bad)) {
                    faults.push(format!("{name}: {bad} in\n{text}"));
                }
            }
            if !text.contains("Index") {
                faults.push(format!("{name}: no index scan in\n{text}"));
            }
            if limited && !plan[0].trim_start().starts_with("Limit") {
                faults.push(format!("{name}: not a Limit over the scan:\n{text}"));
            }
        }
        Db::Sqlite(p) => {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(p)
                    .await
                    .unwrap();
            let text = rows
                .iter()
                .map(|r| r.3.clone())
                .collect::<Vec<_>>()
                .join("\n");
            if !text.contains("USING") || !text.contains("INDEX") {
                faults.push(format!("{name}: no index in\n{text}"));
            }
            if text.contains("TEMP B-TREE") {
                faults.push(format!("{name}: sorts in\n{text}"));
            }
            // The bytecode: an aggregate steps once per matching row.
            let ops: Vec<(i64, String)> = sqlx::query_as(&format!("EXPLAIN {sql}"))
                .fetch_all(p)
                .await
                .unwrap();
            if ops.iter().any(|(_, op)| op.starts_with("Agg")) {
                faults.push(format!("{name}: aggregates ({text})"));
            }
        }
    }
    faults
}

#[tokio::test]
async fn every_history_query_is_bounded_by_its_page_in_its_plan() {
    for db in util::backends().await {
        let mut cfg = util::config().database;
        cfg.url = db.url.clone();
        let store = Store::open(&cfg).unwrap();
        store.migrate().await.unwrap();
        load(&store).await;
        // Right after a bulk load (statistics stale or absent), then after the refresh.
        for stage in ["before statistics", "after statistics"] {
            if stage == "after statistics" {
                store.refresh_statistics().await.unwrap();
            }
            let mut faults = Vec::new();
            for (name, sql, params) in HISTORY_QUERIES.into_iter().chain(RUN_QUERIES) {
                faults.extend(plan_faults(&store, name, sql, params).await);
            }
            assert!(faults.is_empty(), "{} {stage}: {faults:#?}", db.backend);
        }
        store.close().await;
        drop::<TestDb>(db);
    }
}

/// The parameter types of a history query, for `PREPARE` (by its parameter count).
fn param_types(params: usize) -> &'static str {
    match params {
        4 => "(text, int8, int8, int8)",
        5 => "(text, int8, int8, int8, int8)",
        _ => "(text, int8, int8, int8, int8, int8)",
    }
}

/// The partitions (`ticks_YYYYMMDD`, `bars_YYYYMMDD`, `*_default`) a plan reads.
fn partitions_in(plan: &str) -> std::collections::BTreeSet<String> {
    plan.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            let (table, day) = w.split_once('_').unwrap_or(("", ""));
            matches!(table, "ticks" | "bars" | "indicators")
                && (day == "default" || (day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit())))
        })
        .map(str::to_owned)
        .collect()
}

/// On a partitioned PostgreSQL store each history query reads only the days its range covers:
/// pruned when planned with the times as literals, and at execution in the generic plan of the
/// prepared statement (what a long-lived connection ends up running), where the other days
/// show as removed subplans.
#[tokio::test]
async fn history_queries_read_only_the_days_they_cover() {
    use tickcast::store::partitions::{DAY_NS, day_of};
    let db = TestDb::postgres().await;
    let store = Store::open(&db.config().database).unwrap();
    store.migrate().await.unwrap();
    // Eleven days, T0's in the middle, each with the same ticks and bars as `load` makes.
    let first = day_of(T0) - 5 * DAY_NS;
    store
        .ensure_partitions(first, first + 10 * DAY_NS)
        .await
        .unwrap();
    for d in 0..11 {
        let shift = first + d * DAY_NS - day_of(T0);
        let bars: Vec<BarRecord> = (0..4_000i64)
            .map(|i| {
                let symbol = format!("S{}", i % SYMBOLS);
                util::flat_bar(&symbol, BAR_1S_NS, T0 + shift + (i / SYMBOLS) * BAR_1S_NS)
            })
            .collect();
        store.insert_bars(&bars).await.unwrap();
        let ticks: Vec<TickRow> = (0..4_000i64)
            .map(|i| TickRow {
                symbol: format!("S{}", i % SYMBOLS).into(),
                ts: T0 + shift + i * 1_000_000,
                ingest_ts: T0,
                epoch: 1,
                seq: d * 10_000 + i,
                price: 1.0,
                size: 1.0,
                side: None,
            })
            .collect();
        store.insert_ticks(&ticks).await.unwrap();
        let rows = indicator_rows(T0 + shift);
        store.insert_indicators(&rows[..4_000]).await.unwrap();
    }
    store.refresh_statistics().await.unwrap();
    let Db::Postgres(pool) = store.db() else {
        unreachable!()
    };
    let mut conn = pool.acquire().await.unwrap();
    for (name, sql, params) in HISTORY_QUERIES {
        let literal = with_literals(sql, params);
        let plan: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {literal}"))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n");
        let read = partitions_in(&plan);
        assert_eq!(
            read.len(),
            1,
            "{name}: one day read, not {read:?}, in\n{plan}"
        );

        sqlx::query(&format!("PREPARE q {} AS {sql}", param_types(params)))
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut *conn)
            .await
            .unwrap();
        // The same values, as parameters of the prepared statement.
        let args = literals(sql, params).join(", ");
        let generic: Vec<(String,)> = sqlx::query_as(&format!(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE q({args})"
        ))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let generic = generic
            .into_iter()
            .map(|r| r.0)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            generic.contains("Subplans Removed"),
            "{name}: no run-time pruning in\n{generic}"
        );
        for q in ["DEALLOCATE q", "RESET plan_cache_mode"] {
            sqlx::query(q).execute(&mut *conn).await.unwrap();
        }
    }
    drop(conn);
    store.close().await;
}
