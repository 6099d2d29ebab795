//! Point 9 and the object-store outage: PostgreSQL restarted under load (turns after it succeed, none is
//! half-written, no lease is left held — unless its save was lost, answered 503 and logged as an error naming
//! the run, and then only until it expires) and the S3 stand-in stopped mid-turn (the text is saved, the image is
//! reported `image.failed`, and once the store is back nothing is orphaned). Each uses a server of its own.

use crate::support::services::PrivateS3;
use crate::support::*;
use crate::{conversation_id, roles};
use agentd_db::{Db, DbSettings};
use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use agentd_testkit::PrivatePostgres;
use agentd_testkit::ServerProcess;
use futures_util::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn pool(db: &Db) -> &PgPool {
    match db {
        Db::Postgres(p) => p,
        Db::Sqlite(_) => panic!("these tests run on PostgreSQL"),
    }
}

/// The conversation of an answered turn, which holds the user's message and that answer once.
async fn saved_once(server: &ServerProcess, tok: &str, answer: &Answer) -> Answer {
    let id = answer.body["conversation_id"].as_str().unwrap();
    let conv = get(server, &format!("/v1/conversations/{id}"), tok).await;
    assert_eq!(roles(&conv.body), ["user", "assistant"], "{conv:?}");
    assert_eq!(conv.body["messages"][1]["id"], answer.body["message"]["id"]);
    conv
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// How long PostgreSQL stays down: longer than the pool waits for a connection (5 s), shorter than the run log's
/// writes are retried (three attempts, each waiting up to 5 s for a connection); a turn's save is retried for
/// up to 120 s (`a_reply_is_saved_across_a_database_outage_longer_than_the_quick_retries`).
const OUTAGE: Duration = Duration::from_secs(6);

/// One client: turns one after another (each a new conversation, ~0.5 s) until `stop`.
async fn client(server: &ServerProcess, tok: &str, n: usize, stop: &AtomicBool) -> Vec<Answer> {
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let message = format!("client {n} turn {} #fake:text gap=40", out.len());
        out.push(chat(server, tok, &json!({"agent": "assistant", "message": message})).await);
    }
    out
}

/// A server on a PostgreSQL of its own (which the test stops and starts), migrated, with a fake upstream of
/// its own, storing into a new bucket named after `name`; `db` is the test's pool of two on it.
struct OwnDatabase {
    pg: PrivatePostgres,
    db: Db,
    server: ServerProcess,
    tok: String,
    _fake: FakeUpstream,
}

async fn own_database(name: &str) -> OwnDatabase {
    let pg = PrivatePostgres::start(&[]);
    let settings = DbSettings {
        url: pg.admin_url.clone(),
        max_connections: 2,
        ..DbSettings::default()
    };
    let db = Db::connect(&settings).await.unwrap();
    db.migrate().await.unwrap();
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let server = ServerProcess::start(options(&pg.admin_url, &bucket(name), &fake)).await;
    let tok = token(&server, "acme");
    OwnDatabase {
        pg,
        db,
        server,
        tok,
        _fake: fake,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_after_a_database_restart_succeed_and_none_is_half_written() {
    let OwnDatabase {
        pg,
        db,
        server,
        tok,
        _fake,
    } = own_database("pgrestart").await;

    let stop = AtomicBool::new(false);
    let load = join_all((0..4).map(|n| client(&server, &tok, n, &stop)));
    // A turn started meanwhile is refused for real; the turns in flight must wait it out.
    let restart = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::task::block_in_place(|| pg.stop());
        let probe = async {
            // While it is down: not ready, and a new turn is refused in the contract's words.
            let body = json!({"agent": "assistant", "message": "while the database is down"});
            let (ready, turn) = tokio::join!(get(&server, "/readyz", &tok), chat(&server, &tok, &body));
            ready.assert_error(503, "unavailable");
            turn.assert_error(503, "unavailable");
        };
        tokio::join!(tokio::time::sleep(OUTAGE), probe);
        tokio::task::block_in_place(|| pg.start_again());
        tokio::time::sleep(Duration::from_millis(2000)).await;
        stop.store(true, Ordering::SeqCst);
    };
    let (during, ()) = tokio::join!(load, restart);
    let during: Vec<Answer> = during.into_iter().flatten().collect();
    let failed: Vec<&Answer> = during.iter().filter(|a| a.status != 200).collect();
    eprintln!(
        "PostgreSQL down {OUTAGE:?}: {} turns under load, {} refused or failed",
        during.len(),
        failed.len()
    );
    for a in &failed {
        a.assert_error(503, "unavailable");
    }
    let retried = server.logs().iter().filter(|l| l.contains("; retrying")).count();
    eprintln!("database writes retried across the outage: {retried}");

    eventually(Duration::from_secs(30), "/readyz after the restart", || async {
        get(&server, "/readyz", &tok).await.status == 200
    })
    .await;
    let (s, t) = (&server, tok.as_str());
    let after = join_all((0..8).map(|n| {
        let body = json!({"agent": "assistant", "message": format!("after the restart {n}")});
        async move { chat(s, t, &body).await }
    }))
    .await;
    for a in &after {
        assert_eq!(a.status, 200, "a turn after the restart: {a:?}");
    }

    // Every answered turn is saved exactly once; nothing is half-written.
    let p = pool(&db);
    for a in during.iter().chain(&after).filter(|a| a.status == 200) {
        saved_once(&server, &tok, a).await;
    }
    let orphans = "SELECT COUNT(*) FROM conversations c WHERE NOT EXISTS \
                   (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.role = 'user')";
    assert_eq!(
        count(p, orphans).await,
        0,
        "a conversation without its user message"
    );
    let doubled = "SELECT COUNT(*) FROM conversations c WHERE (SELECT COUNT(*) FROM messages m \
                   WHERE m.conversation_id = c.id AND m.role = 'assistant') > 1";
    assert_eq!(count(p, doubled).await, 0, "a turn saved twice");
    // No lease is left held. A save still failing when its retries ran out (a slow machine can stretch the
    // outage past them) is answered 503, logged as an error naming its run, and its lease expires by itself.
    let held: Vec<String> =
        sqlx::query_scalar("SELECT active_run_id FROM conversations WHERE active_run_id IS NOT NULL")
            .fetch_all(p)
            .await
            .unwrap();
    let logs = server.logs();
    for run in &held {
        assert!(
            logs.iter()
                .any(|l| l.contains(" ERROR ") && l.contains(run.as_str())),
            "the lease of {run} is left held without an error naming it:\n{}",
            logs.join("\n")
        );
    }
    assert!(
        held.len() <= failed.len(),
        "{held:?} held, {} turns failed",
        failed.len()
    );
    let live = format!(
        "SELECT COUNT(*) FROM conversations WHERE active_run_id IS NOT NULL \
         AND active_run_at >= now() - interval '{LEASE_SECONDS} seconds'"
    );
    eventually(
        Duration::from_secs(LEASE_SECONDS * 5),
        "every lease expired",
        || async { count(p, &live).await == 0 },
    )
    .await;
}

/// The object keys in `bucket`, listed through the S3 API.
/// A client of the S3 stand-in, with its test credentials.
async fn stored_keys(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT object_key FROM stored_objects ORDER BY object_key")
        .fetch_all(pool(db))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_mid_turn_saves_the_text_and_orphans_nothing() {
    let mut s3 = PrivateS3::start().await;
    let db = agentd_testkit::fresh_postgres().await;
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let bucket = bucket("outage");
    let opts = options(&db.settings.url, &bucket, &fake).env("MINIO_ENDPOINT", s3.endpoint());
    let server = ServerProcess::start(opts).await;
    let tok = token(&server, "acme");

    let body = json!({"agent": "designer", "message": "draw a lighthouse #fake:image partials=2 text=both stall=3000"});
    let mut live = opened(stream(&server, &tok, &body).await);
    let head = live.until(|e| e.data["status"] == "generating").await;
    let conversation = conversation_id(&head[0]);
    s3.stop().await;
    let rest = live.rest().await;
    let failed: Vec<&Value> = rest
        .iter()
        .filter(|e| e.event == "image.failed")
        .map(|e| &e.data)
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", names(&rest));
    assert_eq!(failed[0]["code"], "storage_failed", "{failed:?}");
    assert!(rest.iter().all(|e| e.event != "attachment"), "{:?}", names(&rest));
    let done = rest.last().unwrap();
    assert_eq!(done.event, "run.completed", "the turn goes on without its image");
    let text = "Sure, creating it now.Here is your image.";
    assert_eq!(done.data["message"]["content"], text);
    get(&server, "/readyz", &tok)
        .await
        .assert_error(503, "unavailable");

    s3.resume().await;
    eventually(
        Duration::from_secs(30),
        "/readyz once the store is back",
        || async { get(&server, "/readyz", &tok).await.status == 200 },
    )
    .await;
    s3.until_it_takes_writes(&bucket).await;
    let conv = get(&server, &format!("/v1/conversations/{conversation}"), &tok).await;
    assert_eq!(roles(&conv.body), ["user", "assistant"], "{conv:?}");
    assert_eq!(conv.body["messages"][1]["content"], text, "the text is saved");
    assert_eq!(conv.body["messages"][1]["attachments"], json!([]));
    assert_eq!(
        s3.keys(&bucket).await,
        Vec::<String>::new(),
        "no bytes without a row"
    );
    assert_eq!(
        stored_keys(&db.db).await,
        Vec::<String>::new(),
        "no row without bytes"
    );

    // The store is back: the next image of the conversation is stored, and bucket and rows agree.
    let next = chat(
        &server,
        &tok,
        &json!({"conversation_id": conversation, "message": "draw it again"}),
    )
    .await;
    assert_eq!(next.status, 200, "{next:?}");
    let (status, bytes) = download(next.body["message"]["attachments"][0]["url"].as_str().unwrap()).await;
    assert!(status == 200 && is_png(&bytes));
    let listed = s3.keys(&bucket).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed, stored_keys(&db.db).await);
}

/// A long conversation is sent a page at a time, so the database can fail after its response has begun: the
/// body is then cut off (the client's read fails), never closed as valid JSON that silently lacks messages,
/// and the failure is logged once with the request's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_whose_pages_cannot_be_read_is_cut_off_not_shortened() {
    let OwnDatabase {
        pg,
        db,
        server,
        tok,
        _fake,
    } = own_database("pages").await;
    let first = chat(&server, &tok, &json!({"agent": "assistant", "message": "hello"})).await;
    assert_eq!(first.status, 200, "{first:?}");
    let conversation = first.body["conversation_id"].as_str().unwrap().to_owned();
    // ~32 MB: far more than the socket buffers hold while the client reads nothing.
    agentd_testkit::long_conversation(&db, "acme", &conversation, 1000, 1000, 1).await;
    db.close().await;
    let res = server
        .http()
        .get(server.url(&format!("/v1/conversations/{conversation}")))
        .bearer_auth(&tok)
        .header("x-request-id", "cut-off-read")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    tokio::task::block_in_place(|| pg.stop());
    let read = tokio::time::timeout(Duration::from_secs(60), res.bytes())
        .await
        .expect("the body ends, one way or the other");
    let err = read.expect_err("the body is cut off, not ended");
    eprintln!("the client's read: {err}");
    let logged = server
        .wait_for_log("its response is cut off", Duration::from_secs(10))
        .await;
    let line = logged.expect("the cut is logged");
    assert!(line.contains("cut-off-read"), "with the request id: {line}");
    assert_eq!(
        server
            .logs()
            .iter()
            .filter(|l| l.contains("cut-off-read") && l.contains("ERROR"))
            .count(),
        1,
        "logged once"
    );
}

/// A database that is down for longer than a few quick retries — a managed PostgreSQL fails over in one to two
/// minutes — does not cost a running turn its reply: the finished turn's save is retried while the database is
/// unreachable (`SAVE_THROUGH_OUTAGE`, 120 s), and the answer arrives once it is back. Here 22 s down, past the
/// three attempts (~15 s) that used to give up with `503 unavailable` and the reply lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_saved_across_a_database_outage_longer_than_the_quick_retries() {
    const DOWN: Duration = Duration::from_secs(22);
    let OwnDatabase {
        pg,
        db,
        server,
        tok,
        _fake,
    } = own_database("failover").await;
    db.close().await;
    // Its one delta is logged while the database is up; the reply ends 4 s later, 3 s into the outage, with
    // nothing left for the run log's writer (whose own retries would hold the save back).
    let body =
        json!({"agent": "assistant", "message": "through the failover #fake:text deltas=1 stall=4000"});
    let outage = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tokio::task::block_in_place(|| pg.stop());
        tokio::time::sleep(DOWN).await;
        tokio::task::block_in_place(|| pg.start_again());
    };
    let (answer, ()) = tokio::join!(chat(&server, &tok, &body), outage);
    assert_eq!(answer.status, 200, "{answer:?}");
    let conv = saved_once(&server, &tok, &answer).await;
    assert_eq!(
        conv.body["messages"][1]["content"],
        answer.body["message"]["content"]
    );
    assert!(
        server
            .logs()
            .iter()
            .any(|l| l.contains("could save the turn after the database came back")),
        "the save says it waited"
    );
}
