//! (b) Real answers captured over HTTP fit their schemas: every JSON route, and each error kind we can provoke
//! against the codes its route documents.

use crate::doc::Doc;
use crate::http::{capture, upload_form};
use agentd_auth::{Scope, ScopeSet};
use agentd_testkit::TestApp;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

#[tokio::test]
async fn real_answers_fit_their_schemas() {
    let app = TestApp::postgres().await;
    let doc = Doc::fetch(&app).await;
    let tok = app.token("acme", "u1", None);
    let get = |path: &str| app.http.get(app.url(path)).bearer_auth(&tok);
    let chat = |body: Value| app.http.post(app.url("/v1/chat")).bearer_auth(&tok).json(&body);

    let agents = capture(&doc, "get", "/v1/agents", get("/v1/agents"), 200).await;
    assert_eq!(agents["data"].as_array().unwrap().len(), 2);
    for key in ["designer", "assistant"] {
        capture(
            &doc,
            "get",
            "/v1/agents/{key}",
            get(&format!("/v1/agents/{key}")),
            200,
        )
        .await;
    }
    let text = chat(json!({"agent": "assistant", "message": "hello"}));
    let text = capture(&doc, "post", "/v1/chat", text, 200).await;
    let image = chat(json!({"agent": "designer", "message": "draw a cat"}));
    let image = capture(&doc, "post", "/v1/chat", image, 200).await;
    assert_eq!(
        image["message"]["attachments"].as_array().unwrap().len(),
        1,
        "{image}"
    );
    let conv = image["conversation_id"].as_str().unwrap();
    let edit = chat(json!({"conversation_id": conv, "message": "now in blue"}));
    let edit = capture(&doc, "post", "/v1/chat", edit, 200).await;
    let page = capture(
        &doc,
        "get",
        "/v1/conversations",
        get("/v1/conversations?limit=1"),
        200,
    )
    .await;
    assert!(page["next_cursor"].is_string(), "{page}");
    let shown = get(&format!("/v1/conversations/{conv}"));
    let shown = capture(&doc, "get", "/v1/conversations/{id}", shown, 200).await;
    assert_eq!(shown["messages"].as_array().unwrap().len(), 4);
    let up = app
        .http
        .post(app.url("/v1/uploads"))
        .bearer_auth(&tok)
        .multipart(upload_form());
    let up = capture(&doc, "post", "/v1/uploads", up, 201).await;
    let id = up["object_id"].as_str().unwrap();
    capture(
        &doc,
        "get",
        "/v1/attachments/{id}",
        get(&format!("/v1/attachments/{id}")),
        200,
    )
    .await;
    let usage = capture(&doc, "get", "/v1/usage", get("/v1/usage?days=7"), 200).await;
    let made = image["message"]["attachments"].as_array().unwrap().len()
        + edit["message"]["attachments"].as_array().unwrap().len();
    assert_eq!(usage["total"]["images"], made as f64, "{usage}");
    capture(&doc, "get", "/healthz", get("/healthz"), 200).await;
    capture(&doc, "get", "/readyz", get("/readyz"), 200).await;
    capture(
        &doc,
        "get",
        "/playground/config.json",
        get("/playground/config.json"),
        200,
    )
    .await;
    let gone = app.http.delete(app.url(&format!(
        "/v1/conversations/{}",
        text["conversation_id"].as_str().unwrap()
    )));
    capture(
        &doc,
        "delete",
        "/v1/conversations/{id}",
        gone.bearer_auth(&tok),
        204,
    )
    .await;

    // Every error kind we can provoke, each against the codes its route documents.
    let nobody = app.http.get(app.url("/v1/agents"));
    capture(&doc, "get", "/v1/agents", nobody, 401).await;
    let chat_only = app.token("acme", "u1", Some(ScopeSet::of(&[Scope::Chat])));
    let e = capture(
        &doc,
        "get",
        "/v1/agents",
        app.http.get(app.url("/v1/agents")).bearer_auth(&chat_only),
        403,
    )
    .await;
    assert_eq!(e["error"]["code"], "forbidden");
    capture(&doc, "get", "/v1/agents/{key}", get("/v1/agents/nope"), 404).await;
    capture(
        &doc,
        "get",
        "/v1/conversations/{id}",
        get("/v1/conversations/not-an-id"),
        404,
    )
    .await;
    capture(
        &doc,
        "get",
        "/v1/attachments/{id}",
        get(&format!("/v1/attachments/{conv}")),
        404,
    )
    .await;
    capture(
        &doc,
        "get",
        "/v1/runs/{run_id}/events",
        get("/v1/runs/nope/events"),
        404,
    )
    .await;
    capture(
        &doc,
        "get",
        "/v1/runs/{run_id}/events",
        get("/v1/runs/nope/events?after=x"),
        400,
    )
    .await;
    capture(
        &doc,
        "get",
        "/v1/conversations",
        get("/v1/conversations?limit=0"),
        400,
    )
    .await;
    capture(&doc, "get", "/v1/usage", get("/v1/usage?days=0"), 400).await;
    let files = app
        .http
        .get(app.url("/v1/files/tenants/acme/x.png?expires=1&sig=bad"));
    capture(&doc, "get", "/v1/files/{key}", files, 403).await;
    let broken = app
        .http
        .post(app.url("/v1/chat"))
        .bearer_auth(&tok)
        .header("content-type", "application/json");
    let e = capture(&doc, "post", "/v1/chat", broken.body("{\"agent\":"), 400).await;
    assert_eq!(e["error"]["code"], "invalid_json");
    let e = capture(
        &doc,
        "post",
        "/v1/chat",
        chat(json!({"message": "hi", "colour": 1})),
        400,
    )
    .await;
    assert_eq!(e["error"]["code"], "invalid_request");
    let e = capture(
        &doc,
        "post",
        "/v1/chat",
        chat(json!({"agent": "nope", "message": "hi"})),
        404,
    )
    .await;
    assert_eq!(e["error"]["code"], "agent_not_found");
    let huge = chat(json!({"agent": "assistant", "message": "x".repeat(1_100_000)}));
    capture(&doc, "post", "/v1/chat", huge, 413).await;
    let with_image = json!({"agent": "assistant", "message": "look", "attachments": [{"object_id": id}]});
    capture(&doc, "post", "/v1/chat", chat(with_image), 422).await;
    let refused = json!({"agent": "assistant", "message": "hi #fake:text fail=401"});
    capture(&doc, "post", "/v1/chat", chat(refused.clone()), 502).await;
    let streamed = app
        .http
        .post(app.url("/v1/chat/stream"))
        .bearer_auth(&tok)
        .json(&refused);
    capture(&doc, "post", "/v1/chat/stream", streamed, 502).await;

    // 409: a turn holds its conversation from `run.started` until it ends (here: 30 s of upstream silence).
    let slow = json!({"conversation_id": conv, "message": "slowly #fake:text delay=30000"});
    let res = app
        .http
        .post(app.url("/v1/chat/stream"))
        .bearer_auth(&tok)
        .json(&slow)
        .send()
        .await
        .unwrap();
    let mut body = res.bytes_stream();
    let mut head = String::new();
    while !head.contains("\n\n") {
        head.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    assert!(head.contains("event: run.started"), "{head}");
    let busy = capture(
        &doc,
        "post",
        "/v1/chat",
        chat(json!({"conversation_id": conv, "message": "and"})),
        409,
    )
    .await;
    assert_eq!(busy["error"]["code"], "conversation_busy");
    let busy = app
        .http
        .delete(app.url(&format!("/v1/conversations/{conv}")))
        .bearer_auth(&tok);
    capture(&doc, "delete", "/v1/conversations/{id}", busy, 409).await;
    drop(body);

    let frozen = app.token("frozen", "u1", None);
    let tenant = agentd_db::TenantId::parse("frozen").unwrap();
    app.db.db.provision_tenant(&tenant).await.unwrap();
    app.db
        .db
        .set_tenant_status(&tenant, agentd_db::TenantStatus::Suspended)
        .await
        .unwrap();
    let e = capture(
        &doc,
        "get",
        "/v1/agents",
        app.http.get(app.url("/v1/agents")).bearer_auth(&frozen),
        403,
    )
    .await;
    assert_eq!(e["error"]["code"], "tenant_suspended");

    // 503 with the request id once the database is gone.
    app.db.db.close().await;
    capture(&doc, "get", "/v1/agents", get("/v1/agents"), 503).await;
    // `/readyz` answers from its last look for up to a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    capture(&doc, "get", "/readyz", get("/readyz"), 503).await;
}

#[tokio::test]
async fn rate_limits_fit_their_schema() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.rate_limit_per_minute = 1)
        .start()
        .await;
    let doc = Doc::fetch(&app).await;
    let tok = app.token("acme", "u1", None);
    let chat = || {
        let body = json!({"agent": "assistant", "message": "hi"});
        app.http.post(app.url("/v1/chat")).bearer_auth(&tok).json(&body)
    };
    capture(&doc, "post", "/v1/chat", chat(), 200).await;
    let e = capture(&doc, "post", "/v1/chat", chat(), 429).await;
    assert_eq!(e["error"]["code"], "rate_limited");
    let stream = app.http.post(app.url("/v1/chat/stream")).bearer_auth(&tok);
    let body = json!({"agent": "assistant", "message": "hi"});
    capture(&doc, "post", "/v1/chat/stream", stream.json(&body), 429).await;
}
