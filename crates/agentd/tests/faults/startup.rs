//! A server started before what it depends on (by compose or a pod, or on a disk too busy to open SQLite in
//! time) waits for it and then serves, warning at each attempt, instead of exiting at its first refused
//! connection; a dependency that answers with a refusal stops it at once.

use crate::support::services::PrivateS3;
use crate::support::*;
use agentd_testkit::{ServerOptions, ServerProcess};
use serde_json::json;
use std::time::Duration;

/// The binary on its defaults but a signing secret: SQLite under its working directory, files on local disk, the
/// offline model.
fn zero_config() -> ServerOptions {
    ServerOptions::new(env!("CARGO_BIN_EXE_agentd")).env("AUTH_JWT_SECRET", SECRET)
}

/// The server is ready and answers a turn.
async fn serves(server: &ServerProcess) {
    let tok = token(server, "acme");
    let ready = get(server, "/readyz", &tok).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let turn = chat(server, &tok, &json!({"agent": "assistant", "message": "hello"})).await;
    assert_eq!(turn.status, 200, "{turn:?}");
}

/// A server started before its PostgreSQL (both started together, by compose or a pod) waits for it, with a
/// warning, and serves once it is up, instead of exiting at its first refused connection; a
/// database that answers with a refusal (here: no such database) stops it at once, without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_before_its_database_waits_for_it() {
    let pg = agentd_testkit::PrivatePostgres::start(&[]);
    pg.stop();
    let starting = ServerProcess::spawn(zero_config().database(&pg.admin_url).env("AUTO_MIGRATE", "true"));
    let wait = starting
        .wait_for_log("waiting for the database", Duration::from_secs(20))
        .await
        .expect("a warning that it waits");
    assert!(wait.contains("WARN") && wait.contains("attempt=1"), "{wait}");
    tokio::task::block_in_place(|| pg.start_again());
    let server = starting.ready().await.unwrap_or_else(|e| panic!("{e}"));
    serves(&server).await;

    let (cluster, _) = pg.admin_url.rsplit_once('/').unwrap();
    let missing = format!("{cluster}/no_such_database");
    let refused = ServerProcess::try_start(zero_config().database(&missing))
        .await
        .err()
        .expect("no server on a database that does not exist");
    assert_eq!(refused.exit.and_then(|s| s.code()), Some(2), "{}", refused.log);
    assert!(
        refused
            .log
            .contains(r#"database "no_such_database" does not exist"#),
        "{}",
        refused.log
    );
    assert!(
        !refused.log.contains("waiting for the database"),
        "{}",
        refused.log
    );
}

/// The zero-config SQLite database, held by another process (a CLI command, a backup) when the server starts,
/// past the 5 s its pool gives a connection: the server waits for it rather than exiting — as it must on a disk
/// too busy to open the file in 5 s, which is how CI once lost a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_waits_for_a_sqlite_file_another_process_holds() {
    use sqlx::Connection as _;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agentd.sqlite");
    let mut holder = sqlx::SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Delete),
    )
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE; CREATE TABLE held (x INTEGER)")
        .execute(&mut holder)
        .await
        .unwrap();
    let starting = ServerProcess::spawn(zero_config().database(&format!("sqlite://{}", file.display())));
    let wait = starting
        .wait_for_log("waiting for the database", Duration::from_secs(30))
        .await
        .expect("a warning that it waits");
    assert!(wait.contains("pool timed out"), "{wait}");
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    let server = starting.ready().await.unwrap_or_else(|e| panic!("{e}"));
    serves(&server).await;
}

/// The same for the object store, and both at once: with PostgreSQL and a MinIO-style S3 server down when it
/// starts (compose starts the three together), the server warns that it waits for each, at each attempt, before
/// either is back, and then serves and stores images; a store that refuses its keys stops it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_before_its_database_and_object_store_waits_for_both_at_once() {
    let pg = agentd_testkit::PrivatePostgres::start(&[]);
    pg.stop();
    let mut s3 = PrivateS3::start().await;
    s3.stop().await;
    let mut cluster = Cluster::new("late").await;
    cluster.set("DATABASE_URL", pg.admin_url.clone());
    cluster.set("AUTO_MIGRATE", "true");
    cluster.set("MINIO_ENDPOINT", s3.endpoint());
    let starting = ServerProcess::spawn(cluster.opts.clone());
    for (what, attempt) in [
        ("the object store", "attempt=1"),
        ("the object store", "attempt=2"),
        ("the database", "attempt=1"),
    ] {
        let needle = format!("waiting for {what} {attempt}");
        let wait = starting
            .wait_for_log(&needle, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("a warning: {needle}"));
        assert!(wait.contains("WARN"), "{wait}");
    }
    tokio::task::block_in_place(|| pg.start_again());
    s3.resume().await;
    let server = starting.ready().await.unwrap_or_else(|e| panic!("{e}"));
    serves(&server).await;
    s3.until_it_takes_writes(&cluster.bucket).await;
    let tok = token(&server, "acme");
    let body = json!({"agent": "designer", "message": "draw a lighthouse #fake:image"});
    let turn = chat(&server, &tok, &body).await;
    assert_eq!(turn.status, 200, "{turn:?}");
    assert_eq!(
        turn.body["message"]["attachments"].as_array().map(Vec::len),
        Some(1),
        "{turn:?}"
    );
    assert_eq!(
        s3.keys(&cluster.bucket).await.len(),
        1,
        "the image is in the bucket"
    );

    let refused = ServerProcess::try_start(cluster.opts.clone().env("MINIO_SECRET_KEY", "not-the-key"))
        .await
        .err()
        .expect("no server on keys the store refuses");
    assert_eq!(refused.exit.and_then(|s| s.code()), Some(2), "{}", refused.log);
    assert!(refused.log.contains("object store"), "{}", refused.log);
    assert!(
        !refused.log.contains("waiting for the object store"),
        "{}",
        refused.log
    );
}
