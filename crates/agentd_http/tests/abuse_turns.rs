//! A hostile client or upstream against the turn pipeline, over real HTTP, on PostgreSQL and the S3 stand-in
//! (issue 8, points 1, 2, 4, 5 and 14's 502 bodies). Each test asserts the status and the contract's code, and
//! that the server still answers `/healthz` afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_fake_upstream::Scenario;
use agentd_testkit::{TestApp, TestAppBuilder};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

fn s3() -> agentd_storage::StorageConfig {
    agentd_storage::StorageConfig {
        provider: agentd_storage::Provider::Minio,
        minio_endpoint: Some(
            std::env::var("AGENTD_TEST_S3_ENDPOINT").expect("AGENTD_TEST_S3_ENDPOINT: run `just test`"),
        ),
        minio_access_key: Some("minioadmin".into()),
        minio_secret_key: Some(agentd_storage::Secret::new("minioadmin")),
        minio_bucket: Some(format!("abuse-{}", uuid::Uuid::now_v7().simple())),
        ..Default::default()
    }
}

async fn builder() -> TestAppBuilder {
    TestApp::builder(agentd_testkit::fresh_postgres().await).storage(s3())
}

async fn still_healthy(app: &TestApp) {
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

async fn error_of(res: reqwest::Response) -> (StatusCode, String, String) {
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    let e = &v["error"];
    (
        status,
        e["code"].as_str().unwrap_or_default().to_owned(),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A real PNG of about `mb` MB (the fake upstream's encoder).
fn png(mb: usize) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = agentd_fake_upstream::images::image_b64(
        agentd_fake_upstream::images::Format::Png,
        64,
        64,
        7,
        mb * 1_000_000,
    );
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().as_bytes())
        .unwrap()
}

async fn upload(app: &TestApp, tok: &str, form: reqwest::multipart::Form) -> reqwest::Response {
    app.http
        .post(app.url("/v1/uploads"))
        .bearer_auth(tok)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

fn file(bytes: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name("x.png"))
}

#[tokio::test]
async fn attachments_are_capped_and_deduplicated_before_any_object_is_read() {
    let app = builder()
        .await
        .turns(|t| {
            t.max_attachments = 3;
            t.max_input_image_mb = 5;
        })
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let res = upload(&app, &tok, file(png(3))).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        ids.push(
            res.json::<Value>().await.unwrap()["object_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let chat = |refs: Vec<&String>| {
        let attachments: Vec<Value> = refs.iter().map(|id| json!({"object_id": id})).collect();
        app.chat(
            &tok,
            json!({"agent": "designer", "message": "edit", "attachments": attachments}),
        )
    };
    // One upload referenced 60 times: refused as a repeat, not resolved 60 times.
    let (status, code, msg) = error_of(chat(vec![&ids[0]; 60]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(msg.contains("CHAT_MAX_ATTACHMENTS"), "{msg}");
    let (status, code, msg) = error_of(chat(vec![&ids[0], &ids[0]]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(msg.contains("more than once"), "{msg}");
    let (status, code, msg) = error_of(chat(vec![&ids[0], &ids[1]]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "6 MB > 5 MB"
    );
    assert!(msg.contains("CHAT_MAX_INPUT_IMAGE_MB"), "{msg}");
    assert_eq!(app.fake.requests().len(), 0, "nothing went upstream");
    let ok = chat(vec![&ids[0]]).await;
    assert_eq!(ok.status(), StatusCode::OK);
    still_healthy(&app).await;
}

#[tokio::test]
async fn the_rate_limit_refuses_before_attachments_are_looked_at() {
    let app = builder()
        .await
        .turns(|t| t.rate_limit_per_minute = 1)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    assert_eq!(
        app.chat(&tok, json!({"agent": "assistant", "message": "hi"}))
            .await
            .status(),
        StatusCode::OK
    );
    // Unknown ids: a refusal that looked them up would answer 404; the rate limit answers first.
    let refs: Vec<Value> = (0..3)
        .map(|_| json!({"object_id": uuid::Uuid::now_v7()}))
        .collect();
    let res = app
        .chat(
            &tok,
            json!({"agent": "designer", "message": "x", "attachments": refs}),
        )
        .await;
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let (status, code, _) = error_of(res).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
    still_healthy(&app).await;
}

#[tokio::test]
async fn uploads_are_bounded_checked_and_rate_limited() {
    let app = builder()
        .await
        .turns(|t| {
            t.upload_max_mb = 1;
            t.rate_limit_per_minute = 5;
        })
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    // The whole multipart body is capped: 3 MB of padding in a second field never gets through.
    let form = file(png(0)).part("padding", reqwest::multipart::Part::bytes(vec![b'x'; 3_000_000]));
    let (status, code, _) = error_of(upload(&app, &tok, form).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // Also when it comes chunked, with no length to check up front: the limit stops the reading.
    let chunks = futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 100_000])));
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(chunks)).file_name("x.png");
    let form = reqwest::multipart::Form::new().part("file", part);
    let (status, code, _) = error_of(upload(&app, &tok, form).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // Fields other than `file` are refused, not skipped.
    let form = reqwest::multipart::Form::new()
        .text("note", "hello")
        .part("file", reqwest::multipart::Part::bytes(png(0)).file_name("x.png"));
    let (status, code, msg) = error_of(upload(&app, &tok, form).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(msg.contains("note"), "{msg}");
    // A field after the file is refused too.
    let form = file(png(0)).text("note", "after");
    let (status, code, _) = error_of(upload(&app, &tok, form).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    // Uploads count against the tenant's rate limit: 5 per minute, 3 spent above (the first refusal came
    // before the rate limit was asked).
    for _ in 0..2 {
        let res = upload(&app, &tok, file(png(0))).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    }
    let res = upload(&app, &tok, file(png(0))).await;
    assert!(res.headers().contains_key("retry-after"));
    let (status, code, _) = error_of(res).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    still_healthy(&app).await;
}

#[tokio::test]
async fn a_misbehaving_upstream_is_capped() {
    let app = builder()
        .await
        .turns(|t| {
            t.max_images_per_turn = 2;
            t.max_reply_mb = 1;
        })
        .images(|i| i.output_max_mb = 1)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    // Five images: two stored, three reported, the turn completes.
    let msg = format!("draw {}", Scenario::image().images(5).directive());
    let s = app
        .stream(&tok, json!({"agent": "designer", "message": msg}))
        .await;
    let names = s.names();
    assert_eq!(
        names.iter().filter(|n| **n == "attachment").count(),
        2,
        "{names:?}"
    );
    let failed: Vec<&Value> = s
        .events
        .iter()
        .filter(|e| e.event == "image.failed")
        .map(|e| &e.data)
        .collect();
    assert_eq!(failed.len(), 3, "{names:?}");
    assert!(failed.iter().all(|f| f["code"] == "too_many_images"));
    assert_eq!(s.last()["message"]["attachments"].as_array().unwrap().len(), 2);
    // A preview over the image cap is not relayed; the final image (small) still is.
    let msg = format!("draw {}", Scenario::image().partials(2).partial_mb(2).directive());
    let s = app
        .stream(&tok, json!({"agent": "designer", "message": msg}))
        .await;
    assert!(!s.names().contains(&"image.partial"), "{:?}", s.names());
    assert!(s.names().contains(&"attachment"));
    // 1.5 MB of reply text over CHAT_MAX_REPLY_MB = 1: the turn ends `incomplete` with what it had.
    let msg = format!("talk {}", Scenario::text().text_kb(1500).deltas(300).directive());
    let s = app
        .stream(&tok, json!({"agent": "assistant", "message": msg}))
        .await;
    assert_eq!(s.events.last().unwrap().event, "run.completed", "{:?}", s.names());
    assert_eq!(s.last()["status"], "incomplete");
    let kept = s.last()["message"]["content"].as_str().unwrap().len();
    assert!(kept <= 1024 * 1024 && kept > 500_000, "{kept}");
    still_healthy(&app).await;
}

#[tokio::test]
async fn the_budget_is_rechecked_as_images_arrive() {
    let app = builder()
        .await
        .turns(|t| t.monthly_budget_usd = Some(0.25))
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    // One high-quality 1024x1024 image is estimated at about $0.17: the second of three crosses $0.25.
    let msg = format!("draw {}", Scenario::image().images(3).no_tool_usage().directive());
    let s = app
        .stream(&tok, json!({"agent": "designer", "message": msg}))
        .await;
    let names = s.names();
    assert_eq!(
        names.iter().filter(|n| **n == "attachment").count(),
        1,
        "{names:?}"
    );
    let failed: Vec<&str> = s
        .events
        .iter()
        .filter(|e| e.event == "image.failed")
        .map(|e| e.data["code"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["budget_exhausted", "budget_exhausted"]);
    // And the next turn is refused before it reaches the upstream.
    let before = app.fake.requests().len();
    let (status, code, _) = error_of(
        app.chat(&tok, json!({"agent": "designer", "message": "again"}))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "budget_exhausted")
    );
    assert_eq!(app.fake.requests().len(), before);
    still_healthy(&app).await;
}

#[tokio::test]
async fn a_reader_that_stalls_for_45_seconds_still_gets_the_true_end() {
    let app = builder().await.start().await;
    let tok = app.token("acme", "u1", None);
    // 600 deltas of ~2.5 KB (1.5 MB): more events than the live queue holds and more bytes than the socket
    // buffers, so the turn finishes while the client is not reading.
    let msg = format!("talk {}", Scenario::text().text_kb(1500).deltas(600).directive());
    let res = app
        .http
        .post(app.url("/v1/chat/stream"))
        .bearer_auth(&tok)
        .json(&json!({"agent": "assistant", "message": msg}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(45)).await;
    let mut raw = String::from_utf8(first.to_vec()).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = body.next().await {
            raw.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await;
    assert!(rest.is_ok(), "the stream ended");
    let events = agentd_testkit::parse_sse(&raw);
    let last = events.last().unwrap();
    assert_eq!(last.event, "run.completed", "{:?}", &last.data);
    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "every event once, in order"
    );
    let deltas: String = events
        .iter()
        .filter(|e| e.event == "message.delta")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(
        deltas,
        last.data["message"]["content"].as_str().unwrap(),
        "no delta lost"
    );
    still_healthy(&app).await;
}

#[tokio::test]
async fn bad_gateway_bodies_never_echo_the_upstream() {
    let app = builder().await.start().await;
    let tok = app.token("acme", "u1", None);
    for fail in ["401", "403", "locked"] {
        let msg = format!("x #fake:text fail={fail}");
        let res = app
            .chat(&tok, json!({"agent": "assistant", "message": msg}))
            .await;
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{fail}: {body}");
        for upstream_word in ["invalid_api_key", "conversation_locked", "organization", "sk-"] {
            assert!(!body.contains(upstream_word), "{fail}: {body}");
        }
    }
    still_healthy(&app).await;
}

/// `CHAT_STREAM_CONCURRENT_LIMIT` holds on its own, with the rate limit off: turns admitted at the same moment,
/// each counting live runs in a snapshot that cannot see the others' uncommitted leases, must not all pass. The
/// tenant's rate cell is locked (and not charged) to order them. To make them meet, a side transaction holds
/// what each turn's admission writes — the conversations' rows for turns on existing conversations, the (new)
/// users' rows for new conversations (`agentd_open_turn`) — so the burst waits, then goes at once.
#[tokio::test]
async fn the_concurrency_limit_holds_without_a_rate_limit() {
    use sqlx::Connection as _;
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| {
            t.rate_limit_per_minute = 0;
            t.concurrent_limit = 2;
        })
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let n = 12;
    let mut conversations = Vec::new();
    for _ in 0..n {
        let v = app
            .chat_json(&tok, json!({"agent": "assistant", "message": "hi"}))
            .await;
        conversations.push(v["conversation_id"].as_str().unwrap().to_owned());
    }
    let mut side = sqlx::PgConnection::connect(&app.db.settings.url).await.unwrap();
    for existing in [false, true] {
        let mut hold = side.begin().await.unwrap();
        let hold_sql = if existing {
            "SELECT id FROM conversations WHERE tenant_id = 'acme' FOR UPDATE"
        } else {
            "INSERT INTO users (tenant_id, id, created_at) \
             SELECT 'acme', 'new' || i, now() FROM generate_series(0, 11) AS i"
        };
        sqlx::query(hold_sql).execute(&mut *hold).await.unwrap();
        let burst: Vec<_> = (0..n)
            .map(|i| {
                let mut body = json!({"agent": "assistant", "message": "x #fake:text delay=5000"});
                if existing {
                    body["conversation_id"] = json!(conversations[i]);
                    app.spawn_chat(&tok, body)
                } else {
                    app.spawn_chat(&app.token("acme", &format!("new{i}"), None), body)
                }
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        hold.commit().await.unwrap();
        let statuses: Vec<StatusCode> = futures_util::future::join_all(burst)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!(
            (admitted, refused),
            (2, n - 2),
            "existing conversations: {existing}; {statuses:?}"
        );
    }
    still_healthy(&app).await;
}

/// One tenant's flood of turns cannot take the database pool from the others: at most twice
/// `CHAT_STREAM_CONCURRENT_LIMIT` (here 2 × 3) of a tenant's admissions use the database at once in a process;
/// the rest of the flood is refused `429 rate_limited` at once, holding no connection. Here the flood's
/// admissions are held at the tenant's rate cell by a side transaction, as a slow database would hold them;
/// another tenant's turn still gets a connection at once (before: the flood took all 16 of the pool's and the
/// other turn waited out the pool's 5 s, then got 503).
#[tokio::test]
async fn one_tenants_flood_does_not_take_the_pool_from_the_others() {
    // The default pool (the test kit's is 4).
    let mut db = agentd_testkit::fresh_postgres().await;
    db.settings.max_connections = 16;
    db.db = agentd_db::Db::connect(&db.settings).await.unwrap();
    let app = TestApp::builder(db)
        .turns(|t| {
            t.rate_limit_per_minute = 1000;
            t.concurrent_limit = 3;
        })
        .start()
        .await;
    let (a, b) = (app.token("acme", "u1", None), app.token("otherco", "u1", None));
    let hi = || json!({"agent": "assistant", "message": "hi"});
    assert_eq!(app.chat(&a, hi()).await.status(), StatusCode::OK);
    let hold = app.hold_rate_cell("acme").await;
    // Slow turns, so that those admitted still run when the rest are counted.
    let flood: Vec<_> = (0..24)
        .map(|_| {
            let req = app
                .http
                .post(app.url("/v1/chat"))
                .bearer_auth(&a)
                .json(&json!({"agent": "assistant", "message": "x #fake:text delay=1500"}));
            tokio::spawn(async move { error_of(req.send().await.unwrap()).await })
        })
        .collect();
    // Six are held at the rate cell; the other eighteen are refused as they arrive.
    tokio::time::timeout(Duration::from_secs(10), async {
        while flood.iter().filter(|h| h.is_finished()).count() < 18 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the flood beyond the six admissions is refused at once");
    let other = tokio::time::timeout(Duration::from_secs(3), app.chat(&b, hi()))
        .await
        .expect("another tenant's turn is not held up by the flood");
    assert_eq!(other.status(), StatusCode::OK);
    hold.commit().await.unwrap();
    let answers: Vec<(StatusCode, String, String)> = futures_util::future::join_all(flood)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let count = |status: StatusCode, says: &str| {
        answers
            .iter()
            .filter(|(s, _, m)| *s == status && m.contains(says))
            .count()
    };
    // Six reached the database, where the limit's three were admitted and three refused by the live count;
    // eighteen were refused before it.
    assert_eq!(count(StatusCode::OK, ""), 3, "{answers:?}");
    assert_eq!(
        count(StatusCode::TOO_MANY_REQUESTS, "already runs 3 turns"),
        3,
        "{answers:?}"
    );
    assert_eq!(
        count(StatusCode::TOO_MANY_REQUESTS, "being started"),
        18,
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(s, c, _)| *s == StatusCode::OK || c == "rate_limited")
    );
    still_healthy(&app).await;
}
