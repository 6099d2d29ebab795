//! Images end to end over real HTTP: the fake upstream's real PNG bytes, ingestion into a real object store,
//! attachments with URLs a client can fetch, what sits in the bucket and what sits in the database.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_db::Db;
use agentd_fake_upstream::Scenario;
use agentd_testkit::TestApp;
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn png_1x1() -> Vec<u8> {
    // A real 1x1 PNG.
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
        .unwrap()
}

async fn fetch(app: &TestApp, url: &str) -> (StatusCode, Vec<u8>) {
    let res = app.http.get(url).send().await.unwrap();
    (res.status(), res.bytes().await.unwrap().to_vec())
}

/// Every text value in every table of the test database.
async fn all_text(db: &Db) -> String {
    let Db::Postgres(pool) = db else {
        panic!("postgres expected")
    };
    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = String::new();
    for (t, c) in cols {
        let q = format!("SELECT COALESCE(string_agg(CAST(\"{c}\" AS TEXT), '|'), '') FROM \"{t}\"");
        let s: String = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
            .fetch_one(pool)
            .await
            .unwrap();
        out.push_str(&s);
    }
    out
}

#[tokio::test]
async fn a_streamed_image_is_stored_once_and_announced_before_the_end() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let s = app.stream(&tok, json!({"agent": "designer", "message": format!("draw {}", Scenario::image().partials(2).directive())})).await;
    let names = s.names();
    let at = names
        .iter()
        .position(|n| *n == "attachment")
        .expect("an attachment event");
    assert!(
        at < names.len() - 1 && names.last() == Some(&"run.completed"),
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "attachment").count(),
        1,
        "stored once: {names:?}"
    );
    let a = &s.first("attachment")["attachment"];
    assert_eq!(
        (
            a["mime_type"].as_str(),
            a["tool_call_id"].as_str().map(|t| t.starts_with("ig_"))
        ),
        (Some("image/png"), Some(true))
    );
    let (status, bytes) = fetch(&app, a["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "fetched without a bearer token");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(bytes.len() as u64, a["size_bytes"].as_u64().unwrap());
    let done = s.last();
    assert_eq!(done["message"]["attachments"][0]["object_id"], a["object_id"]);
    assert!(done["message"]["attachments"][0]["url"].is_string());
    let img = &done["usage"]["image"];
    assert_eq!(
        (img["images"].as_u64(), img["output_tokens"].as_u64()),
        (Some(1), Some(7024 + 200)),
        "tool_usage incl. 2 partials"
    );

    // The database holds metadata only: not the image's base64, not its bytes, not the URL.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let text = all_text(&app.db.db).await;
    assert!(
        !text.contains(&b64[..200]) && !text.contains("iVBORw0KGgo"),
        "base64 in the database"
    );
    assert!(!text.contains("sig="), "URLs are never stored");
    assert!(
        text.contains(a["object_id"].as_str().unwrap()),
        "the metadata row is there"
    );
}

#[tokio::test]
async fn attachments_are_everywhere_with_fresh_urls_and_confined_to_the_tenant() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let r: Value = app
        .chat_json(&tok, json!({"agent": "designer", "message": "draw a cat"}))
        .await;
    let a = &r["message"]["attachments"][0];
    let id = a["object_id"].as_str().unwrap();
    let conv = r["conversation_id"].as_str().unwrap();
    let (status, history) = app.get_json(&format!("/v1/conversations/{conv}"), &tok).await;
    assert_eq!(status, StatusCode::OK);
    let h = &history["messages"][1]["attachments"][0];
    assert_eq!(h["object_id"].as_str(), Some(id));
    assert_eq!(fetch(&app, h["url"].as_str().unwrap()).await.0, StatusCode::OK);
    let (status, one) = app.get_json(&format!("/v1/attachments/{id}"), &tok).await;
    assert_eq!(
        (status, one["filename"].as_str().map(|f| f.ends_with(".png"))),
        (StatusCode::OK, Some(true))
    );
    assert!(one["url_expires_at"].is_string());

    let other = app.token("globex", "u1", None);
    let (status, e) = app.get_json(&format!("/v1/attachments/{id}"), &other).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("attachment_not_found"))
    );
    let tampered = format!("{}0", h["url"].as_str().unwrap());
    assert_eq!(fetch(&app, &tampered).await.0, StatusCode::FORBIDDEN);

    // Deleting the conversation deletes its objects.
    let del = app
        .http
        .delete(app.url(&format!("/v1/conversations/{conv}")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        fetch(&app, h["url"].as_str().unwrap()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get_json(&format!("/v1/attachments/{id}"), &tok).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn failures_lose_nothing_but_the_image() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .images(|i| i.output_max_mb = 1)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let s = app
        .stream(
            &tok,
            json!({"agent": "designer", "message": format!("draw {}", Scenario::image().big(2).directive())}),
        )
        .await;
    let failed = s.first("image.failed");
    assert_eq!(failed["code"], "image_too_large");
    assert!(!s.names().contains(&"attachment"));
    assert_eq!(*s.names().last().unwrap(), "run.completed");
    assert!(
        !s.last()["message"]["content"].as_str().unwrap().is_empty(),
        "the text still arrives"
    );
    assert_eq!(
        s.last()["usage"]["image"]["images"],
        1,
        "the image was still paid for"
    );
    let conv = s.last()["conversation_id"].as_str().unwrap();
    let (_, h) = app.get_json(&format!("/v1/conversations/{conv}"), &tok).await;
    assert_eq!(h["messages"][1]["attachments"].as_array().unwrap().len(), 0);
    assert!(
        !all_text(&app.db.db).await.contains("image-ig_"),
        "no row for an image that was not stored"
    );
}

#[tokio::test]
async fn storage_down_reports_image_failed_and_keeps_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let storage = agentd_storage::StorageConfig {
        provider: agentd_storage::Provider::Filesystem,
        filesystem_root: root.clone(),
        ..Default::default()
    };
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .storage(storage)
        .start()
        .await;
    // The disk "fails": the store's root is now a plain file, so nothing can be written under it.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let (status, ready) = app.get_json("/readyz", "").await;
    assert_eq!(
        (
            status,
            ready["error"]["details"]["checks"]["object_store"].as_str()
        ),
        (StatusCode::SERVICE_UNAVAILABLE, Some("down"))
    );
    let tok = app.token("acme", "u1", None);
    let r = app
        .chat(&tok, json!({"agent": "designer", "message": "draw a cat"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r: Value = r.json().await.unwrap();
    assert!(!r["message"]["content"].as_str().unwrap().is_empty());
    assert_eq!(r["message"]["attachments"].as_array().unwrap().len(), 0);
    let s = app
        .stream(&tok, json!({"agent": "designer", "message": "draw a dog"}))
        .await;
    assert_eq!(s.first("image.failed")["code"], "storage_failed");
    assert!(
        !all_text(&app.db.db).await.contains("image-ig_"),
        "no metadata row without an object"
    );
}

#[tokio::test]
async fn editing_continues_from_the_previous_image() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let first: Value = app
        .chat_json(&tok, json!({"agent": "designer", "message": "draw a cat"}))
        .await;
    let conv = first["conversation_id"].as_str().unwrap();
    let second: Value = app
        .chat_json(
            &tok,
            json!({"conversation_id": conv, "message": "now make it look realistic, redraw the image"}),
        )
        .await;
    assert_eq!(
        app.fake.requests()[1].body["previous_response_id"],
        first["response_id"]
    );
    let (a, b) = (
        &first["message"]["attachments"][0],
        &second["message"]["attachments"][0],
    );
    assert_ne!(a["object_id"], b["object_id"]);
    let (bytes_a, bytes_b) = (
        fetch(&app, a["url"].as_str().unwrap()).await.1,
        fetch(&app, b["url"].as_str().unwrap()).await.1,
    );
    assert_ne!(bytes_a, bytes_b, "the edit is a new image");
}

#[tokio::test]
async fn uploads_are_checked_stored_and_sent_as_input_images() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let upload = |bytes: Vec<u8>, tok: String| {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name("x.png"));
        app.http
            .post(app.url("/v1/uploads"))
            .bearer_auth(tok)
            .multipart(form)
            .send()
    };
    let res = upload(png_1x1(), tok.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let a: Value = res.json().await.unwrap();
    assert_eq!(a["mime_type"], "image/png");
    assert_eq!(fetch(&app, a["url"].as_str().unwrap()).await.1, png_1x1());
    let res = upload(b"GIF89a not accepted".to_vec(), tok.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let id = a["object_id"].as_str().unwrap();
    let r = app
        .chat(
            &tok,
            json!({"agent": "designer", "message": "make this a poster", "attachments": [{"object_id": id}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let sent = &app.fake.requests()[0].body["input"][0]["content"];
    let image_url = sent[1]["image_url"].as_str().unwrap();
    assert!(
        image_url.starts_with("data:image/png;base64,iVBORw0KGgo"),
        "{image_url:.60}"
    );
    let r: Value = r.json().await.unwrap();
    let (_, h) = app
        .get_json(
            &format!("/v1/conversations/{}", r["conversation_id"].as_str().unwrap()),
            &tok,
        )
        .await;
    assert_eq!(
        h["messages"][0]["attachments"][0]["object_id"].as_str(),
        Some(id),
        "the user message shows its input"
    );

    let r = app
        .chat(
            &tok,
            json!({"agent": "assistant", "message": "describe", "attachments": [{"object_id": id}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unsupported_for_agent"
    );
    let other = app.token("globex", "u1", None);
    let r = app
        .chat(
            &other,
            json!({"agent": "designer", "message": "steal", "attachments": [{"object_id": id}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.fake.requests().len(),
        1,
        "refused turns never reach the upstream"
    );
}

#[tokio::test]
async fn upload_size_limit() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.upload_max_mb = 1)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let mut big = png_1x1();
    big.resize(1024 * 1024 + 10, 0);
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(big).file_name("big.png"));
    let res = app
        .http
        .post(app.url("/v1/uploads"))
        .bearer_auth(&tok)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn cost_is_estimated_when_unreported_recorded_and_budgeted() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.monthly_budget_usd = Some(0.3))
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let msg = format!("draw {}", Scenario::image().no_tool_usage().directive());
    let r: Value = app
        .chat_json(&tok, json!({"agent": "designer", "message": msg}))
        .await;
    let img = &r["usage"]["image"];
    assert_eq!(
        img["output_tokens"], 7024,
        "gpt-image-2, high, 1024x1024 from the published table"
    );
    assert!((img["estimated_cost_usd"].as_f64().unwrap() - 0.21072).abs() < 1e-9);
    let (status, usage) = app.get_json("/v1/usage", &tok).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage["data"][0]["image"]["images"], 1);
    assert_eq!(usage["total"]["images"], 1.0);
    let r: Value = app
        .chat_json(&tok, json!({"agent": "designer", "message": "draw a dog"}))
        .await;
    assert_eq!(r["usage"]["image"]["images"], 1);
    let before = app.fake.requests().len();
    let res = app
        .chat(&tok, json!({"agent": "designer", "message": "draw a third"}))
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "budget_exhausted"
    );
    assert_eq!(app.fake.requests().len(), before, "nothing was sent upstream");
    let other = app.token("globex", "u1", None);
    assert_eq!(
        app.chat(&other, json!({"agent": "designer", "message": "draw"}))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn image_turn_into(storage: agentd_storage::StorageConfig) {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .storage(storage)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let s = app.stream(&tok, json!({"agent": "designer", "message": format!("draw {}", Scenario::image().partials(1).directive())})).await;
    let a = &s.first("attachment")["attachment"];
    let (status, bytes) = fetch(&app, a["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{}", a["url"]);
    assert!(bytes.starts_with(b"\x89PNG"));
    let conv = s.last()["conversation_id"].as_str().unwrap();
    let del = app
        .http
        .delete(app.url(&format!("/v1/conversations/{conv}")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let key = agentd_storage::ObjectKey::parse(&format!(
        "tenants/acme/conversations/{}/{}.png",
        conv.replace('-', ""),
        a["object_id"].as_str().unwrap().replace('-', "")
    ))
    .unwrap();
    assert!(
        app.state.store.get(&key).await.unwrap_err().is_not_found(),
        "the object left the bucket"
    );
}

fn external(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the suite with `just test` (scripts/test-services.sh starts the servers)"
        )
    })
}

#[tokio::test]
async fn images_land_in_the_s3_stand_in() {
    let bucket = format!("img-{}", uuid::Uuid::now_v7().simple());
    image_turn_into(agentd_storage::StorageConfig {
        provider: agentd_storage::Provider::Minio,
        minio_endpoint: Some(external("AGENTD_TEST_S3_ENDPOINT")),
        minio_access_key: Some("minioadmin".into()),
        minio_secret_key: Some(agentd_storage::Secret::new("minioadmin")),
        minio_bucket: Some(bucket),
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn images_land_in_the_gcs_emulator() {
    let endpoint = external("AGENTD_TEST_GCS_ENDPOINT");
    let bucket = format!("img-{}", uuid::Uuid::now_v7().simple());
    reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b?project=test"))
        .json(&json!({"name": bucket}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    image_turn_into(agentd_storage::StorageConfig {
        provider: agentd_storage::Provider::Gcs,
        gcs_endpoint: Some(endpoint),
        gcs_bucket: Some(bucket),
        gcs_credentials_path: Some(agentd_storage::testing::write_service_account(dir.path())),
        ..Default::default()
    })
    .await;
}

/// A tenant may keep only so many uploads that no turn uses (`UNUSED_UPLOADS_PER_TENANT`): the next upload is
/// `429 rate_limited`, for that tenant only, until a turn uses one of them.
#[tokio::test]
async fn a_tenant_may_keep_only_so_many_unused_uploads() {
    let app = TestApp::postgres().await;
    let (a, b) = (app.token("acme", "u1", None), app.token("otherco", "u1", None));
    let upload = |tok: &str| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(png_1x1()).file_name("x.png"),
        );
        app.http
            .post(app.url("/v1/uploads"))
            .bearer_auth(tok)
            .multipart(form)
            .send()
    };
    let first: Value = upload(&a).await.unwrap().json().await.unwrap();
    assert_eq!(upload(&b).await.unwrap().status(), StatusCode::CREATED);
    let Db::Postgres(pool) = &app.db.db else {
        panic!("postgres")
    };
    // The rest of the allowance, as rows: the count is of rows, whatever their bytes.
    sqlx::query(
        "INSERT INTO stored_objects (id, tenant_id, object_key, kind, filename, mime_type, size_bytes, sha256, \
         created_at) SELECT gen_random_uuid(), 'acme', 'tenants/acme/uploads/' || g || '.png', 'upload', 'x.png', \
         'image/png', 1, '', now() FROM generate_series(2, $1) AS g",
    )
    .bind(agentd_core::UNUSED_UPLOADS_PER_TENANT)
    .execute(pool)
    .await
    .unwrap();
    let refused = upload(&a).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert_eq!(
        upload(&b).await.unwrap().status(),
        StatusCode::CREATED,
        "another tenant's"
    );
    let id = first["object_id"].as_str().unwrap();
    let r = app
        .chat(
            &a,
            json!({"agent": "designer", "message": "use it", "attachments": [{"object_id": id}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        upload(&a).await.unwrap().status(),
        StatusCode::CREATED,
        "one was used"
    );
}
