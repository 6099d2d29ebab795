//! The HTTP contract of the foundation, over real HTTP against real PostgreSQL: agents, auth and tenancy,
//! the error envelope, request ids, health and readiness.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_auth::{Scope, ScopeSet};
use agentd_db::TenantStatus;
use agentd_testkit::{TEST_SECRET, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn body(res: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.json().await.unwrap())
}

fn forge(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn agents_show_the_effective_image_config() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let (status, headers, v) = body(app.get("/v1/agents", &tok).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("x-request-id"));
    let keys: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["assistant", "designer"]);
    let (status, _, d) = body(app.get("/v1/agents/designer", &tok).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        d["tools"]["image_generation"],
        json!({"model": "gpt-image-2", "size": "1024x1024", "quality": "high", "output_format": "png",
               "background": "auto", "partial_images": 2})
    );
    assert_eq!(
        (d["display_name"].as_str(), d["model"].as_str()),
        (Some("Image Designer"), Some("gpt-5.5"))
    );
    assert_eq!(d["tool_keys"], json!(["image_generation"]));
    let (status, _, e) = body(app.get("/v1/agents/nope", &tok).await).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("agent_not_found"))
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("GET /v1/agents"));
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_reason() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .audience("agentd")
        .start()
        .await;
    let now = chrono::Utc::now().timestamp();
    let ok = json!({"sub": "u", "tenant_id": "t", "exp": now + 60, "aud": "agentd"});
    let cases = [
        (None, "missing bearer token"),
        (
            Some(forge(
                json!({"sub":"u","tenant_id":"t","exp": now - 120,"aud":"agentd"}),
                TEST_SECRET,
            )),
            "expired",
        ),
        (
            Some(forge(ok.clone(), "some-other-secret-some-other-secret")),
            "signature does not verify",
        ),
        (
            Some(forge(
                json!({"sub":"u","tenant_id":"t","exp": now + 60,"aud":"other"}),
                TEST_SECRET,
            )),
            "audience",
        ),
        (Some("garbage".to_owned()), "not a well-formed JWT"),
    ];
    for (token, reason) in cases {
        let mut req = app.http.get(app.url("/v1/agents"));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let (status, headers, e) = body(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}");
        assert_eq!(e["error"]["code"], "unauthenticated");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(reason),
            "{reason}: {e}"
        );
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    let (status, _, _) = body(app.get("/v1/agents", &forge(ok, TEST_SECRET)).await).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn scopes_are_enforced() {
    let app = TestApp::postgres().await;
    let chat_only = app.token("acme", "u1", Some(ScopeSet::of(&[Scope::Chat])));
    let (status, _, e) = body(app.get("/v1/agents", &chat_only).await).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("agents:read"));
    let readers = app.token("acme", "u1", Some(ScopeSet::of(&[Scope::AgentsRead])));
    assert_eq!(app.get("/v1/agents", &readers).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn tenants_are_provisioned_on_first_use_and_suspension_is_403() {
    let app = TestApp::postgres().await;
    let tok = app.token("newco", "u1", None);
    assert_eq!(app.get("/v1/agents", &tok).await.status(), StatusCode::OK);
    assert_eq!(
        app.db
            .db
            .provision_tenant(&agentd_db::TenantId::parse("newco").unwrap())
            .await
            .unwrap(),
        TenantStatus::Active
    );
    app.db
        .db
        .set_tenant_status(
            &agentd_db::TenantId::parse("newco").unwrap(),
            TenantStatus::Suspended,
        )
        .await
        .unwrap();
    let (status, _, e) = body(app.get("/v1/agents", &tok).await).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("tenant_suspended"))
    );
    let other = app.token("otherco", "u1", None);
    assert_eq!(
        app.get("/v1/agents", &other).await.status(),
        StatusCode::OK,
        "other tenants are unaffected"
    );
    app.db
        .db
        .set_tenant_status(
            &agentd_db::TenantId::parse("newco").unwrap(),
            TenantStatus::Active,
        )
        .await
        .unwrap();
    assert_eq!(app.get("/v1/agents", &tok).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_and_5xx_carries_one() {
    let app = TestApp::postgres().await;
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "client-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-abc-123");
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "bad id with spaces");

    // With the database gone, authenticated routes answer 503 with the request id, and readiness says why.
    let tok = app.token("acme", "u1", None);
    app.db.db.close().await;
    let (status, headers, e) = body(app.get("/v1/agents", &tok).await).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
    assert_eq!(
        e["error"]["details"]["request_id"].as_str().unwrap(),
        headers["x-request-id"].to_str().unwrap()
    );
    assert!(!e.to_string().contains("pool"), "no internals in the body: {e}");
    let (status, headers, r) = body(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1", "checked again within a second");
    assert_eq!(r["error"]["details"]["checks"]["database"], "down");
}

#[tokio::test]
async fn health_ready_and_unknown_routes() {
    let app = TestApp::postgres().await;
    assert_eq!(
        app.http.get(app.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let (status, _, r) = body(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (status, r["checks"]["database"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _, e) = body(app.http.get(app.url("/v1/nothing")).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _, e) = body(app.http.delete(app.url("/v1/agents")).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}
