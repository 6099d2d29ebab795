//! Requests a hostile or careless client sends, over HTTP against PostgreSQL: every rejection (query string,
//! path, multipart, fallbacks, body limit, content type) answers the contract's JSON envelope, never axum's
//! plain text; tokens with an array `aud` or a tenant id the store would refuse are judged at authentication.
//! Each case also checks that the server still answers `/healthz`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_testkit::{TEST_SECRET, TestApp, lock_waiters, until_lock_waiters};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

/// Sends a request and checks the answer is the envelope with `status` and `code`; returns the message.
async fn expect_error(app: &TestApp, req: reqwest::RequestBuilder, status: u16, code: &str) -> String {
    let res = req.send().await.unwrap();
    let got = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    assert!(ct.starts_with("application/json"), "{got} {ct}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({got}): {text}"));
    assert_eq!((got, v["error"]["code"].as_str()), (status, Some(code)), "{text}");
    let message = v["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.len() > 10, "{text}");
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    message
}

fn get(app: &TestApp, path: &str, tok: &str) -> reqwest::RequestBuilder {
    app.http.get(app.url(path)).bearer_auth(tok)
}

#[tokio::test]
async fn query_string_rejections_speak_the_contract() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    for (path, needle) in [
        ("/v1/conversations?limit=abc", "limit=abc"),
        ("/v1/conversations?limit=0", "limit=0"),
        ("/v1/conversations?limit=101", "limit=101"),
        ("/v1/conversations?colour=red", "colour"),
        ("/v1/conversations?cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("/v1/conversations?cursor=%FF%FE", "cursor"),
        ("/v1/usage?days=abc", "days=abc"),
        ("/v1/usage?days=0", "days=0"),
        ("/v1/usage?days=7&colour=red", "colour"),
        ("/v1/usage?days=7&days=8", "days"),
        ("/v1/runs/r1/events?after=abc", "after"),
        ("/v1/runs/r1/events?colour=red", "colour"),
    ] {
        let msg = expect_error(&app, get(&app, path, &tok), 400, "invalid_request").await;
        assert!(msg.contains(needle), "{path}: {msg}");
    }
    let (status, _) = app.get_json("/v1/usage?days=7", &tok).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn undecodable_path_parameters_are_404_envelopes() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    for path in [
        "/v1/conversations/%FF",
        "/v1/attachments/%FF%FE",
        "/v1/agents/%C0",
        "/v1/runs/%FF/events",
    ] {
        expect_error(&app, get(&app, path, &tok), 404, "not_found").await;
    }
    let del = app
        .http
        .delete(app.url("/v1/conversations/%FF"))
        .bearer_auth(&tok);
    expect_error(&app, del, 404, "not_found").await;
}

/// A PNG uploaded through the API, and its attachment JSON.
async fn upload(app: &TestApp, tok: &str) -> Value {
    let png = agentd_fake_upstream::images::encode(agentd_fake_upstream::images::Format::Png, 16, 16, 1, 0);
    let part = reqwest::multipart::Part::bytes(png)
        .file_name("in.png")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let res = app
        .http
        .post(app.url("/v1/uploads"))
        .bearer_auth(tok)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

#[tokio::test]
async fn download_links_without_a_valid_signature_are_403_envelopes() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let url = upload(&app, &tok).await["url"].as_str().unwrap().to_owned();
    let ok = app.http.get(&url).send().await.unwrap();
    assert_eq!(ok.status(), 200, "{url}");
    let (path, query) = url.split_once('?').unwrap();
    let sig = query.split('&').find(|p| p.starts_with("sig=")).unwrap();
    let expires = query.split('&').find(|p| p.starts_with("expires=")).unwrap();
    for bad in [
        path.to_owned(),
        format!("{path}?{expires}"),
        format!("{path}?{sig}"),
        format!("{path}?expires=soon&{sig}"),
        format!("{path}?expires=99999999999999999999999&{sig}"),
        format!("{path}?{expires}&sig="),
        format!("{path}?{expires}&sig=%FF"),
    ] {
        expect_error(&app, app.http.get(&bad), 403, "forbidden").await;
    }
    let bad_path = format!("{path}%FF?{query}");
    expect_error(&app, app.http.get(&bad_path), 404, "not_found").await;
}

#[tokio::test]
async fn multipart_rejections_speak_the_contract() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let post = || app.http.post(app.url("/v1/uploads")).bearer_auth(&tok);
    let cases = [
        (post().body("just bytes"), "multipart/form-data"),
        (
            post().header("content-type", "application/json").body("{}"),
            "boundary",
        ),
        (
            post()
                .header("content-type", "multipart/form-data")
                .body("--x\r\n"),
            "boundary",
        ),
        (
            post()
                .header("content-type", "multipart/form-data; boundary=xyz")
                .body("--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nPNG without an end"),
            "Malformed multipart body",
        ),
        (
            post()
                .header("content-type", "multipart/form-data; boundary=xyz")
                .body("this is not multipart at all"),
            "multipart",
        ),
    ];
    for (req, needle) in cases {
        let msg = expect_error(&app, req, 400, "invalid_request").await;
        assert!(msg.contains(needle), "{msg}");
    }
}

#[tokio::test]
async fn fallbacks_body_limits_and_content_types_speak_the_contract() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .max_body_bytes(2048)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    expect_error(&app, get(&app, "/v2/nothing", &tok), 404, "not_found").await;
    expect_error(&app, app.http.get(app.url("/nope")), 404, "not_found").await;
    for (method, path) in [
        (Method::DELETE, "/v1/agents"),
        (Method::PUT, "/healthz"),
        (Method::GET, "/v1/chat"),
        (Method::PATCH, "/v1/conversations/x"),
        (Method::GET, "/v1/uploads"),
    ] {
        let req = app.http.request(method.clone(), app.url(path)).bearer_auth(&tok);
        let msg = expect_error(&app, req, 405, "method_not_allowed").await;
        assert!(msg.contains(method.as_str()), "{msg}");
    }
    let chat = || app.http.post(app.url("/v1/chat")).bearer_auth(&tok);
    let body = json!({"agent": "assistant", "message": "hi"}).to_string();
    let msg = expect_error(&app, chat().body(body.clone()), 400, "invalid_request").await;
    assert!(msg.contains("Content-Type: application/json"), "{msg}");
    let text = chat().header("content-type", "text/plain").body(body);
    expect_error(&app, text, 400, "invalid_request").await;
    let big = json!({"agent": "assistant", "message": "x".repeat(4096)});
    expect_error(&app, chat().json(&big), 413, "payload_too_large").await;
    let chunked = chat()
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..8).map(|_| Ok::<_, std::io::Error>("x".repeat(1024))),
        )));
    expect_error(&app, chunked, 413, "payload_too_large").await;
}

fn sign(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap()
}

fn exp() -> i64 {
    chrono::Utc::now().timestamp() + 600
}

#[tokio::test]
async fn aud_arrays_are_accepted_when_they_contain_the_audience() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .audience("agentd-api")
        .start()
        .await;
    let ok = sign(json!({"sub": "u", "tenant_id": "acme", "exp": exp(), "aud": ["billing", "agentd-api"]}));
    let (status, body) = app.get_json("/v1/agents", &ok).await;
    assert_eq!(status, 200, "{body}");
    for aud in [json!(["billing", "crm"]), json!("billing"), json!([])] {
        let tok = sign(json!({"sub": "u", "tenant_id": "acme", "exp": exp(), "aud": aud}));
        let msg = expect_error(&app, get(&app, "/v1/agents", &tok), 401, "unauthenticated").await;
        assert!(
            msg.contains("`aud`") && msg.contains("agentd-api"),
            "{aud}: {msg}"
        );
    }
    let none = sign(json!({"sub": "u", "tenant_id": "acme", "exp": exp()}));
    let msg = expect_error(&app, get(&app, "/v1/agents", &none), 401, "unauthenticated").await;
    assert!(msg.contains("`aud`"), "{msg}");
}

async fn tenant_rows(app: &TestApp) -> Vec<String> {
    let agentd_db::Db::Postgres(pool) = &app.db.db else {
        panic!("postgres expected")
    };
    sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn tenant_ids_the_store_would_refuse_are_refused_at_authentication() {
    let app = TestApp::postgres().await;
    let long = "t".repeat(65);
    for tenant in [
        json!("."),
        json!(".."),
        json!("a/b"),
        json!("../etc"),
        json!("tab\there"),
        json!("nul\u{0}"),
        json!(""),
        json!(long),
        json!(42),
    ] {
        let tok = sign(json!({"sub": "u", "tenant_id": tenant, "exp": exp()}));
        for path in ["/v1/agents", "/v1/conversations"] {
            let msg = expect_error(&app, get(&app, path, &tok), 401, "unauthenticated").await;
            assert!(
                msg.contains("`tenant_id`") && msg.contains("not `.` or `..`"),
                "{tenant}: {msg}"
            );
        }
        let chat = app.http.post(app.url("/v1/chat")).bearer_auth(&tok);
        let chat = chat.json(&json!({"agent": "assistant", "message": "hi"}));
        expect_error(&app, chat, 401, "unauthenticated").await;
    }
    assert_eq!(
        tenant_rows(&app).await,
        Vec::<String>::new(),
        "no tenant was provisioned"
    );
    let (status, _) = app.get_json("/v1/agents", &app.token("...", "u", None)).await;
    assert_eq!(status, 200, "`...` is a fine tenant id");
    assert_eq!(tenant_rows(&app).await, vec!["...".to_owned()]);
}

/// A resume after the end of a run — or beyond any id a run can have — ends instead of waiting forever.
#[tokio::test]
async fn resuming_past_the_end_of_a_run_ends_at_once() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let s = app
        .stream(&tok, serde_json::json!({"agent": "assistant", "message": "hi"}))
        .await;
    let run_id = s.first("run.started")["run_id"].as_str().unwrap().to_owned();
    let last = s.events.last().and_then(|e| e.id).unwrap();
    for after in [last, last + 5, u64::MAX] {
        let events = app.resume(&tok, &run_id, Some(after)).await;
        assert!(events.is_empty(), "after {after}: {events:?}");
    }
}

/// A run log chunk this agentd cannot read (an event type from a newer version during a rolling deploy, or a
/// damaged row) is skipped: the resume still answers and still ends with one terminal event. Here more than six
/// pages of them (`CHUNKS_PER_READ` chunks a page): the reader reads on past a page with nothing to show, and
/// does not read again what held nothing new (before, a page of empty chunks was read again for ever).
#[tokio::test]
async fn an_unreadable_run_log_chunk_is_skipped_and_the_stream_still_ends() {
    use agentd_db::journal::CHUNKS_PER_READ;
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let s = app
        .stream(
            &tok,
            serde_json::json!({"agent": "assistant", "message": "hi #fake:text deltas=250 gap=5 text-kb=2"}),
        )
        .await;
    let run_id = s.first("run.started")["run_id"].as_str().unwrap().to_owned();
    let agentd_db::Db::Postgres(pool) = &app.db.db else {
        panic!("postgres")
    };
    // One chunk per event, whatever batches the journal happened to write on a busy machine.
    let mut split = pool.begin().await.unwrap();
    for sql in [
        "CREATE TEMP TABLE batched ON COMMIT DROP AS SELECT * FROM run_events WHERE run_id = $1 AND NOT terminal",
        "DELETE FROM run_events WHERE run_id = $1 AND NOT terminal",
        "INSERT INTO run_events (run_id, first_id, last_id, tenant_id, conversation_id, events, terminal, created_at) \
         SELECT run_id, (e->>'id')::bigint, (e->>'id')::bigint, tenant_id, conversation_id, \
                jsonb_build_array(e)::text, false, created_at \
         FROM batched, jsonb_array_elements(events::jsonb) AS e WHERE run_id = $1",
    ] {
        sqlx::query(sql).bind(&run_id).execute(&mut *split).await.unwrap();
    }
    split.commit().await.unwrap();
    let from_the_future = r#"[{"id":1,"event":"run.from_the_future","data":{}}]"#;
    let spoil = |terminal: bool, events: &'static str| {
        sqlx::query("UPDATE run_events SET events = $1 WHERE run_id = $2 AND terminal = $3")
            .bind(events)
            .bind(&run_id)
            .bind(terminal)
            .execute(pool)
    };
    let resume = || app.resume(&tok, &run_id, None);
    let emptied = spoil(false, "[]").await.unwrap().rows_affected();
    assert!(
        emptied > 6 * CHUNKS_PER_READ as u64,
        "the run has {emptied} chunks before its terminal one"
    );
    let replay = resume().await;
    assert_eq!(replay.len(), 1, "only the terminal chunk holds an event");
    assert_eq!(replay[0].event, "run.completed");
    spoil(false, from_the_future).await.unwrap();
    let replay = resume().await;
    let last = replay.last().expect("the terminal chunk's events");
    assert_eq!(last.event, "run.completed");
    assert_eq!(last.id, s.events.last().and_then(|e| e.id));
    assert!(
        replay.len() < s.events.len(),
        "the spoiled chunks' events are skipped"
    );
    spoil(true, from_the_future).await.unwrap();
    let replay = resume().await;
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert_eq!(replay[0].event, "error");
    assert_eq!(replay[0].data["code"], "internal");
    assert_eq!(
        replay[0].id,
        s.events.last().and_then(|e| e.id),
        "in the terminal event's place"
    );
}

/// A transaction on a connection of its own that holds `table` locked (`ACCESS EXCLUSIVE`) until it ends: the
/// app's statements on it wait, as slow queries would.
async fn lock_table(app: &TestApp, table: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let side = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&app.db.settings.url)
        .await
        .unwrap();
    let mut hold = side.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut *hold)
    .await
    .unwrap();
    hold
}

/// Reads of a tenant's data each use a pooled connection: a tenant may have `READS_PER_TENANT` of them at work
/// on a replica at once; one more waits for a place — holding no connection — while another tenant's reads go
/// straight in, and is `429 rate_limited` if none comes free within 5 s. Here two reads of usage are held by a
/// lock on its table, as slow queries would hold them.
#[tokio::test]
async fn a_tenant_may_have_only_so_many_reads_at_work() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.reads_per_tenant = 2)
        .start()
        .await;
    let (a, b) = (app.token("acme", "u1", None), app.token("otherco", "u1", None));
    for tok in [&a, &b] {
        app.chat_json(tok, json!({"agent": "assistant", "message": "hi"}))
            .await;
    }
    let hold = lock_table(&app, "usage_events").await;
    let send = |path: &str, tok: &str| {
        let req = get(&app, path, tok);
        tokio::spawn(async move { req.send().await.unwrap() })
    };
    let held = [send("/v1/usage", &a), send("/v1/usage", &a)];
    until_lock_waiters(&app.db.db, 2, "both reads wait on the lock").await;
    // Two more wait for a place; had they taken connections, the pool of 4 would be full for the other tenant.
    let waiting = [send("/v1/conversations", &a), send("/v1/usage", &a)];
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let other = get(&app, "/v1/conversations", &b).send().await.unwrap();
    assert_eq!(other.status(), 200, "another tenant's reads are its own");
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "a third and a fourth wait for a place"
    );
    for w in waiting {
        let res = tokio::time::timeout(std::time::Duration::from_secs(10), w)
            .await
            .expect("refused once it waited 5 s")
            .unwrap();
        assert_eq!(res.status(), 429);
        assert!(res.headers().contains_key("retry-after"));
        let e: Value = res.json().await.unwrap();
        assert_eq!(e["error"]["code"], "rate_limited");
        let says = e["error"]["message"].as_str().unwrap();
        assert!(says.contains("READS_PER_TENANT") && says.contains("5 s"), "{e}");
    }
    // A read that finds the places taken goes in as soon as one is given back.
    let fourth = send("/v1/conversations", &a);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    hold.commit().await.unwrap();
    for h in held {
        assert_eq!(h.await.unwrap().status(), 200);
    }
    assert_eq!(fourth.await.unwrap().status(), 200);
}

/// A conversation's detail holds a page of its messages until its client takes it, so clients that read
/// nothing could make the process hold pages until memory ran out: a tenant may have twice `READS_PER_TENANT`
/// details being sent at once (here 2 × 2), the next is `429 rate_limited` at once, another tenant's are not
/// counted, and a client that goes away gives its place back.
#[tokio::test]
async fn a_tenant_may_have_only_so_many_conversations_being_sent() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.reads_per_tenant = 2)
        .start()
        .await;
    let (a, b) = (app.token("acme", "u1", None), app.token("otherco", "u1", None));
    let mut paths = Vec::new();
    for tok in [&a, &b] {
        let v = app
            .chat_json(tok, json!({"agent": "assistant", "message": "hi"}))
            .await;
        paths.push(format!(
            "/v1/conversations/{}",
            v["conversation_id"].as_str().unwrap()
        ));
    }
    // ~32 MB: far more than the socket buffers hold while a client reads nothing.
    let conversation = paths[0].trim_start_matches("/v1/conversations/");
    agentd_testkit::long_conversation(&app.db.db, "acme", conversation, 1000, 1000, 1).await;
    let mut unread = Vec::new();
    for _ in 0..4 {
        let res = app.get(&paths[0], &a).await;
        assert_eq!(res.status(), 200);
        unread.push(res);
    }
    let msg = expect_error(
        &app,
        app.http.get(app.url(&paths[0])).bearer_auth(&a),
        429,
        "rate_limited",
    )
    .await;
    assert!(msg.contains("READS_PER_TENANT"), "{msg}");
    let (status, other) = app.get_json(&paths[1], &b).await;
    assert_eq!(
        (status.as_u16(), other["messages"].as_array().map(Vec::len)),
        (200, Some(2))
    );
    drop(unread.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let res = app.get(&paths[0], &a).await;
        if res.status() == 200 {
            let whole: Value = res.json().await.unwrap();
            assert_eq!(whole["messages"].as_array().map(Vec::len), Some(1002));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place of the client that went away"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A delete's database work takes one of the tenant's places for reads too (here 1): a flood of deletes
/// waits for places instead of queueing on the pool every tenant's turns use. Two deletes held up by a lock on
/// the conversations: one reaches the database, the other waits for its place; both are done once it goes.
#[tokio::test]
async fn a_tenants_deletes_take_its_places_for_reads() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.reads_per_tenant = 1)
        .start()
        .await;
    let a = app.token("acme", "u1", None);
    let mut paths = Vec::new();
    for _ in 0..2 {
        let v = app
            .chat_json(&a, json!({"agent": "assistant", "message": "hi"}))
            .await;
        paths.push(format!(
            "/v1/conversations/{}",
            v["conversation_id"].as_str().unwrap()
        ));
    }
    let hold = lock_table(&app, "conversations").await;
    let deletes: Vec<_> = paths
        .iter()
        .map(|p| {
            let req = app.http.delete(app.url(p)).bearer_auth(&a);
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    until_lock_waiters(&app.db.db, 1, "a delete waits on the lock").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        lock_waiters(&app.db.db).await,
        1,
        "the other waits for its place, not on the pool"
    );
    hold.commit().await.unwrap();
    for d in deletes {
        assert_eq!(d.await.unwrap(), 204);
    }
}

/// A resume's first read of the run log takes one of the tenant's places for reads too (here 1): two resumes
/// held up by a lock on the log, one reaches the database, the other waits for its place; both are served once
/// it goes. A resume of an impossible run id takes no place.
#[tokio::test]
async fn a_tenants_resumes_take_its_places_for_reads() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.reads_per_tenant = 1)
        .start()
        .await;
    let a = app.token("acme", "u1", None);
    let s = app
        .stream(&a, json!({"agent": "assistant", "message": "hi"}))
        .await;
    let run_id = s.first("run.started")["run_id"].as_str().unwrap().to_owned();
    let hold = lock_table(&app, "run_events").await;
    let resumes: Vec<_> = (0..2)
        .map(|_| {
            let req = get(&app, &format!("/v1/runs/{run_id}/events"), &a);
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                (res.status().as_u16(), res.text().await.unwrap())
            })
        })
        .collect();
    until_lock_waiters(&app.db.db, 1, "a resume waits on the lock").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        lock_waiters(&app.db.db).await,
        1,
        "the other waits for its place, not on the pool"
    );
    // A run id no run can have is answered before a place is taken: not after waiting 5 s for one, as a 429.
    let res = get(&app, "/v1/runs/run_no%20such/events", &a)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "run_not_found", "{body}");
    hold.commit().await.unwrap();
    for r in resumes {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("event: run.completed"), "{body}");
    }
}
