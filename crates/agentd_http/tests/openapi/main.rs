//! The OpenAPI document against the real server over HTTP (PostgreSQL, the fake model API): it lists exactly
//! the routes the router serves, with the methods, statuses and scopes they really have (`routes`); real
//! answers — JSON bodies, every error kind we can provoke, each event kind of both stream routes — fit their
//! schemas, strictly: no field the schema does not name (`answers`, `events`), and each would misfit a document
//! without any one of its fields or its error code (`wrong`); and the committed `docs/openapi.json` is the one
//! the server serves.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod answers;
mod doc;
mod events;
mod http;
mod routes;
mod wrong;

use agentd_testkit::TestApp;

#[tokio::test]
async fn the_committed_document_is_the_served_one() {
    let app = TestApp::postgres().await;
    let served = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == served,
        "{} is stale: regenerate it with `cargo run -p agentd -- openapi > docs/openapi.json`",
        file.display()
    );
    assert_eq!(served, agentd_http::document_json());
}
