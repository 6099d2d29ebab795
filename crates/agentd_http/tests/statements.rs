//! What one turn costs the database, counted in PostgreSQL's own statement log (a private cluster with
//! `log_statement=all`): a streaming one-image turn on a new conversation, under the default limits, is 3
//! statements (the issue allows 10 besides BEGIN/COMMIT, in 3 transactions), each a transaction of its own with
//! no BEGIN or COMMIT — admission (one call of `agentd_open_turn`, which takes the rate cell, counts live runs
//! and writes the conversation, the first event and the user message), the image's row, and the finished turn.
//! The run event log's own statements (the journal's chunk writes and the announcement of the terminal chunk)
//! count apart, as do authentication's tenant lookups; the run log's first and last chunks are written inside
//! the opening and finishing statements, which count.
//! A tenant refused by the rate limit costs no statement until the refusal lapses. A reader following a run
//! reads its rows once: new events reach it in the notes of the chunks written, not by a query per chunk.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_fake_upstream::Scenario;
use agentd_testkit::{PrivatePostgres, TestApp};
use serde_json::json;
use std::collections::BTreeSet;

/// The turn's statements, as `(virtual transaction id, SQL)`, from the log written since `from`.
fn turn_statements(pg: &PrivatePostgres, from: u64) -> Vec<(String, String)> {
    pg.log_since(from)
        .lines()
        .filter_map(|line| {
            let (vxid, rest) = line.split_once('|')?;
            let sql = rest.strip_prefix("LOG:  statement: ").or_else(|| {
                rest.strip_prefix("LOG:  execute ")
                    .and_then(|r| r.split_once(": ").map(|(_, s)| s))
            })?;
            Some((vxid.to_owned(), sql.trim().to_owned()))
        })
        .filter(|(_, sql)| {
            // The run log's own statements (a finished turn's single statement writes its terminal chunk
            // among the rest, and counts).
            let run_log = ["INSERT INTO run_events", "WITH v (run_id"]
                .iter()
                .any(|p| sql.starts_with(p))
                || (sql.starts_with("SELECT") && sql.contains("FROM run_events"));
            !run_log
                && sql != "SELECT 1"
                && !["pg_notify", "LISTEN", "FROM tenants"]
                    .iter()
                    .any(|apart| sql.contains(apart))
        })
        .collect()
}

#[tokio::test]
async fn a_streaming_image_turn_is_three_statements_without_begin_or_commit() {
    let pg = PrivatePostgres::start(&["log_statement=all", "log_line_prefix='%v|'"]);
    let db = agentd_testkit::fresh_postgres_at(&pg.admin_url).await;
    let app = TestApp::builder(db)
        .turns(|t| {
            // The defaults, so the rate limit and the concurrency guard are part of the count.
            t.rate_limit_per_minute = 60;
            t.concurrent_limit = 5;
        })
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    // A first request provisions the tenant; the count starts after it.
    assert_eq!(app.get("/v1/agents", &tok).await.status(), 200);
    let from = pg.log_len();
    let msg = format!("draw a cat {}", Scenario::image().partials(1).directive());
    let s = app
        .stream(&tok, json!({"agent": "designer", "message": msg}))
        .await;
    assert_eq!(s.names().last(), Some(&"run.completed"), "{:?}", s.names());
    assert!(s.names().contains(&"attachment"));
    // The journal writer is asynchronous; the turn's own writes are all committed before run.completed.
    let stmts = turn_statements(&pg, from);
    let work: Vec<&(String, String)> = stmts
        .iter()
        .filter(|(_, sql)| !matches!(sql.as_str(), "BEGIN" | "COMMIT"))
        .collect();
    let transactions: BTreeSet<&str> = work.iter().map(|(vxid, _)| vxid.as_str()).collect();
    let listing: String = stmts.iter().map(|(v, s)| format!("  {v:>6}  {s}\n")).collect();
    println!(
        "one streaming one-image turn: {} statements in {} transactions\n{listing}",
        work.len(),
        transactions.len()
    );
    assert!(work.len() <= 3, "{} statements:\n{listing}", work.len());
    assert_eq!(
        transactions.len(),
        work.len(),
        "each statement commits by itself:\n{listing}"
    );
    assert!(
        stmts.iter().all(|(_, s)| s != "BEGIN" && s != "COMMIT"),
        "no explicit transaction:\n{listing}"
    );
    // Each of the three is what it should be (what the opening writes is checked statement by statement in
    // agentd_db's conformance tests).
    assert!(
        work[0].1.contains("agentd_open_turn("),
        "admission is one call that opens the conversation with its limits:\n{listing}"
    );
    assert!(
        work.iter()
            .any(|(_, s)| s.starts_with("INSERT INTO stored_objects")),
        "the image's row is written when it is stored:\n{listing}"
    );
    assert!(
        work.iter().any(|(_, s)| s.contains("INSERT INTO usage_events")
            && s.contains("UPDATE conversations SET last_response_id")
            && s.contains("INSERT INTO run_events")),
        "the finished turn is one statement:\n{listing}"
    );
}

#[tokio::test]
async fn a_tenant_past_its_rate_limit_costs_no_statement() {
    let pg = PrivatePostgres::start(&["log_statement=all", "log_line_prefix='%v|'"]);
    let db = agentd_testkit::fresh_postgres_at(&pg.admin_url).await;
    let app = TestApp::builder(db)
        .turns(|t| t.rate_limit_per_minute = 2)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let hi = || json!({"agent": "assistant", "message": "hi"});
    for _ in 0..2 {
        assert_eq!(app.chat(&tok, hi()).await.status(), 200);
    }
    // The first refusal asks the database (one call of the opening, which writes nothing when it refuses)…
    let before = pg.log_len();
    assert_eq!(app.chat(&tok, hi()).await.status(), 429);
    // (The log is written by another process: give it a moment.)
    for _ in 0..100 {
        if pg.log_since(before).contains("agentd_open_turn(") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let refusal = turn_statements(&pg, before);
    assert!(
        refusal.len() == 1 && refusal[0].1.contains("agentd_open_turn("),
        "{refusal:?}"
    );
    // …and every one after it, until the cell's instant, is answered from memory.
    let from = pg.log_len();
    for _ in 0..20 {
        let res = app.chat(&tok, hi()).await;
        assert_eq!(res.status(), 429);
        let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "retry-after {retry}");
    }
    let stmts = turn_statements(&pg, from);
    assert!(stmts.is_empty(), "refused turns ran statements: {stmts:?}");
    // Another tenant is not affected.
    let other = app.token("other", "u1", None);
    assert_eq!(app.chat(&other, hi()).await.status(), 200);
}

/// A turn of `scenario` streamed on a private cluster that logs every statement, and followed by a second reader
/// from id 1 once `settle` has passed: the follower's events (checked to be the original stream's, ending with
/// `run.completed`) and how many times it read the run's rows.
async fn follow_and_count_row_reads(
    scenario: Scenario,
    settle: std::time::Duration,
) -> (Vec<agentd_testkit::SseEvent>, usize) {
    let pg = PrivatePostgres::start(&["log_statement=all", "log_line_prefix='%v|'"]);
    let db = agentd_testkit::fresh_postgres_at(&pg.admin_url).await;
    let app = TestApp::builder(db).start().await;
    let tok = app.token("acme", "u1", None);
    let msg = format!("hi {}", scenario.directive());
    let (original, started) = app
        .stream_started(&tok, json!({"agent": "assistant", "message": msg}))
        .await;
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let rest = tokio::spawn(async move { original.text().await.unwrap() });
    tokio::time::sleep(settle).await;

    let from = pg.log_len();
    let followed = app.resume(&tok, &run_id, Some(1)).await;
    let live = agentd_testkit::parse_sse(&rest.await.unwrap());
    let ids = |evs: &[agentd_testkit::SseEvent]| evs.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&followed),
        ids(&live),
        "the follower saw the original stream's events"
    );
    assert_eq!(followed.last().map(|e| e.event.as_str()), Some("run.completed"));
    let reads = pg
        .log_since(from)
        .lines()
        .filter(|l| l.contains("FROM run_events WHERE run_id") && l.contains("last_id >"))
        .count();
    (followed, reads)
}

#[tokio::test]
async fn following_a_run_reads_its_rows_once() {
    let scenario = Scenario::text()
        .deltas(40)
        .gap(std::time::Duration::from_millis(25));
    let (followed, reads) = follow_and_count_row_reads(scenario, std::time::Duration::ZERO).await;
    assert!(followed.len() >= 30, "{} events", followed.len());
    assert!(
        reads <= 2,
        "the follower read the rows {reads} times for {} events",
        followed.len()
    );
}

/// A reader of a run that goes quiet (a long image generation, here a 6 s stall) does not read the rows twice a
/// second: while the replica hears every write, it waits for notes and reads the rows only every few seconds.
/// (Each open reader polled on its own every 500 ms: a tenant's hundreds of readers of idle runs were hundreds
/// of queries a second.)
#[tokio::test]
async fn a_reader_of_a_quiet_run_does_not_poll_the_rows() {
    let scenario = Scenario::text()
        .deltas(3)
        .stall(std::time::Duration::from_secs(6));
    // The listener is given time to connect, as it has on a replica that has been up for a while.
    let (_, reads) = follow_and_count_row_reads(scenario, std::time::Duration::from_millis(300)).await;
    assert!(
        reads <= 4,
        "the follower read the rows {reads} times over a 6 s stall"
    );
}

/// `/readyz` needs no token, and each check of the dependencies costs a pooled connection and an object-store
/// call: a flood of it asks the database once a second, not once a request (before: 200 requests, 200 pings
/// queued for the pool the turns use). Every request still gets the answer.
#[tokio::test]
async fn a_flood_of_readiness_checks_asks_the_database_once_a_second() {
    let pg = PrivatePostgres::start(&["log_statement=all", "log_line_prefix='%v|'"]);
    let db = agentd_testkit::fresh_postgres_at(&pg.admin_url).await;
    let app = TestApp::builder(db).start().await;
    let from = pg.log_len();
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..200).map(|_| {
        let req = app.http.get(app.url("/readyz"));
        async move { req.send().await.unwrap().status() }
    }))
    .await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    let pings = pg
        .log_since(from)
        .lines()
        .filter(|l| l.ends_with("SELECT 1"))
        .count();
    assert!(pings >= 1, "the database was asked");
    assert!(
        pings as f64 <= seconds.ceil() + 1.0,
        "{pings} pings for 200 readiness checks in {seconds:.1} s"
    );
}
