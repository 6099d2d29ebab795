//! Chat turns over real HTTP: agentd on a loopback port, the fake Responses API over HTTP, real PostgreSQL.
//! Each test asserts what a client sees (status, events in order, persisted messages) and what was sent
//! upstream (the fake's recorded requests).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_fake_upstream::Scenario;
use agentd_testkit::{Streamed, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn d(s: Scenario) -> String {
    s.directive()
}

/// Ids run 1, 2, 3… ; `run.started` is first; exactly one terminal event, last.
fn assert_well_formed(s: &Streamed) {
    assert_eq!(s.status, StatusCode::OK);
    assert!(
        s.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let ids: Vec<u64> = s.events.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (1..=s.events.len() as u64).collect::<Vec<_>>());
    assert_eq!(s.names()[0], "run.started");
    let terminals = s
        .names()
        .iter()
        .filter(|n| matches!(**n, "run.completed" | "error"))
        .count();
    assert_eq!(terminals, 1, "{:?}", s.names());
    assert!(matches!(*s.names().last().unwrap(), "run.completed" | "error"));
}

async fn history(app: &TestApp, tok: &str, conv: &str) -> Vec<(String, String)> {
    let (status, v) = app.get_json(&format!("/v1/conversations/{conv}"), tok).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn text_turn_streams_in_order_and_is_persisted() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let s = app
        .stream(
            &tok,
            json!({"agent": "assistant", "message": format!("hi {}", d(Scenario::text().deltas(3)))}),
        )
        .await;
    assert_well_formed(&s);
    assert_eq!(
        s.names(),
        [
            "run.started",
            "message.delta",
            "message.delta",
            "message.delta",
            "run.completed"
        ]
    );
    let started = s.first("run.started");
    assert_eq!(
        (started["agent"].as_str(), started["model"].as_str()),
        (Some("assistant"), Some("gpt-5.5"))
    );
    let text: String = s
        .events
        .iter()
        .filter(|e| e.event == "message.delta")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    let done = s.last();
    assert_eq!(done["message"]["content"].as_str().unwrap(), text);
    assert_eq!(done["message"]["role"], "assistant");
    assert!(done["response_id"].as_str().unwrap().starts_with("resp_"));
    assert!(done["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let conv = done["conversation_id"].as_str().unwrap();
    assert_eq!(started["conversation_id"].as_str().unwrap(), conv);
    let h = history(&app, &tok, conv).await;
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0].0.as_str(), h[1].0.as_str(), h[1].1.as_str()),
        ("user", "assistant", text.as_str())
    );

    let sent = &app.fake.requests()[0].body;
    assert_eq!(
        (
            sent["model"].as_str(),
            sent["stream"].as_bool(),
            sent["store"].as_bool()
        ),
        (Some("gpt-5.5"), Some(true), Some(true))
    );
    assert!(
        sent["instructions"]
            .as_str()
            .unwrap()
            .contains("concise, friendly assistant")
    );
    assert!(sent.get("tools").is_none() && sent.get("previous_response_id").is_none());
}

#[tokio::test]
async fn the_effective_image_tool_is_sent_with_partials_only_when_streaming() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let s = app
        .stream(
            &tok,
            json!({"agent": "designer", "message": format!("a cat {}", d(Scenario::text()))}),
        )
        .await;
    assert_well_formed(&s);
    let res = app
        .chat(
            &tok,
            json!({"agent": "designer", "message": format!("a dog {}", d(Scenario::text()))}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let reqs = app.fake.requests();
    let tool = |i: usize| reqs[i].body["tools"][0].clone();
    assert_eq!(
        tool(0),
        json!({"type": "image_generation", "model": "gpt-image-2", "size": "1024x1024", "quality": "high",
               "output_format": "png", "background": "auto", "partial_images": 2})
    );
    assert_eq!(
        tool(1)["partial_images"],
        0,
        "no paid-for previews on the blocking endpoint"
    );
    assert_eq!(
        tool(1)["model"],
        "gpt-image-2",
        "the image model is always explicit"
    );
}

#[tokio::test]
async fn image_progress_and_partials_are_relayed() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let s = app
        .stream(
            &tok,
            json!({"agent": "designer", "message": format!("draw {}", d(Scenario::image().partials(2)))}),
        )
        .await;
    assert_well_formed(&s);
    let progress: Vec<&str> = s
        .events
        .iter()
        .filter(|e| e.event == "image.progress")
        .map(|e| e.data["status"].as_str().unwrap())
        .collect();
    assert_eq!(progress, ["in_progress", "generating", "completed"]);
    let partials: Vec<&Value> = s
        .events
        .iter()
        .filter(|e| e.event == "image.partial")
        .map(|e| &e.data)
        .collect();
    assert_eq!(partials.len(), 2);
    assert_eq!(
        (
            partials[0]["partial_image_index"].as_u64(),
            partials[0]["mime_type"].as_str()
        ),
        (Some(0), Some("image/png"))
    );
    assert!(partials[1]["b64"].as_str().unwrap().starts_with("iVBORw0KGgo"));
    assert!(
        !s.last().to_string().contains("iVBORw0KGgo"),
        "final images never travel as base64"
    );
}

#[tokio::test]
async fn a_refused_image_is_reported_and_the_text_still_arrives() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let s = app
        .stream(
            &tok,
            json!({"agent": "designer", "message": format!("draw {}", d(Scenario::moderation()))}),
        )
        .await;
    assert_well_formed(&s);
    let failed = s.first("image.failed");
    assert_eq!(failed["code"], "moderation_blocked");
    assert!(failed["tool_call_id"].as_str().unwrap().starts_with("ig_"));
    assert_eq!(*s.names().last().unwrap(), "run.completed");
    assert!(!s.last()["message"]["content"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn upstream_failures_after_the_start_end_with_one_error_event() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    for (scenario, code, retryable) in [
        // The fake fails with `server_error`: worth a retry.
        (Scenario::error(), "upstream_error", true),
        (Scenario::flat_error(), "upstream_error", true),
        (Scenario::failed(), "upstream_error", true),
        (Scenario::eof(), "upstream_unavailable", true),
        (Scenario::error().no_terminal(), "upstream_unavailable", true),
    ] {
        let s = app
            .stream(
                &tok,
                json!({"agent": "assistant", "message": format!("x {}", scenario.directive())}),
            )
            .await;
        assert_well_formed(&s);
        let e = s.last();
        assert_eq!(*s.names().last().unwrap(), "error", "{}", scenario.directive());
        assert_eq!(
            (e["code"].as_str(), e["retryable"].as_bool()),
            (Some(code), Some(retryable)),
            "{}",
            scenario.directive()
        );
        let conv = s.first("run.started")["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            history(&app, &tok, &conv).await[0].0,
            "user",
            "the user's message is kept"
        );
    }
}

#[tokio::test]
async fn odd_but_valid_upstream_streams_complete() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    for scenario in [
        Scenario::text().unknown(),
        Scenario::text().big_other(3).chunk(1460),
        Scenario::image().generating(),
        Scenario::text().done_marker(),
        Scenario::incomplete(),
    ] {
        let s = app
            .stream(
                &tok,
                json!({"agent": "designer", "message": format!("draw {}", scenario.directive())}),
            )
            .await;
        assert_well_formed(&s);
        assert_eq!(
            *s.names().last().unwrap(),
            "run.completed",
            "{}: {:?}",
            scenario.directive(),
            s.names()
        );
        assert!(!s.names().contains(&"image.failed"), "{}", scenario.directive());
    }
}

#[tokio::test]
async fn pre_stream_upstream_errors_map_to_the_contract() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    for (fail, status, code, attempts) in [
        ("401", 502, "upstream_error", 1),
        ("403", 502, "upstream_error", 1),
        ("quota", 502, "upstream_error", 1),
        ("429", 503, "upstream_unavailable", 3),
        ("500", 503, "upstream_unavailable", 3),
        ("503", 503, "upstream_unavailable", 3),
    ] {
        let before = app.fake.requests().len();
        let msg = format!("x #fake:text fail={fail} retry-after=1");
        let res = app
            .http
            .post(app.url("/v1/chat/stream"))
            .bearer_auth(&tok)
            .json(&json!({"agent": "assistant", "message": msg}))
            .send()
            .await
            .unwrap();
        let got = res.status().as_u16();
        let retry_after = res.headers().get("retry-after").is_some();
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "fail={fail}: {body}"
        );
        assert_eq!(
            app.fake.requests().len() - before,
            attempts,
            "fail={fail}: attempts"
        );
        assert_eq!(retry_after, status == 503, "fail={fail}");
        assert!(!body.to_string().contains("sk-test"), "no upstream secrets");
    }
    let (_, convs) = app.get_json("/v1/conversations", &tok).await;
    assert_eq!(
        convs["data"].as_array().unwrap().len(),
        0,
        "a turn the upstream refused leaves nothing behind"
    );
    let agentd_db::Db::Postgres(pool) = &app.db.db else {
        panic!("postgres")
    };
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE tenant_id = 'acme'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(messages, 0, "not even its user message");
    let res = app
        .chat(
            &tok,
            json!({"agent": "assistant", "message": "x #fake:text fail=503 times=2"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "two 503s then success: retried");
}

#[tokio::test]
async fn multi_turn_continues_from_the_previous_response() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let first: Value = app
        .chat_json(&tok, json!({"agent": "designer", "message": "draw a cat"}))
        .await;
    let conv = first["conversation_id"].as_str().unwrap();
    let second = app
        .chat(
            &tok,
            json!({"conversation_id": conv, "message": "now make it look realistic"}),
        )
        .await;
    assert_eq!(second.status(), StatusCode::OK);
    let reqs = app.fake.requests();
    assert_eq!(reqs[1].body["previous_response_id"], first["response_id"]);
    assert_eq!(history(&app, &tok, conv).await.len(), 4);
    // The agent of an existing conversation may be omitted, but must match when given.
    let res = app
        .chat(
            &tok,
            json!({"conversation_id": conv, "agent": "assistant", "message": "hi"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_lost_previous_response_does_not_break_the_conversation() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let first: Value = app
        .chat_json(&tok, json!({"agent": "assistant", "message": "hello"}))
        .await;
    let conv = first["conversation_id"].as_str().unwrap();
    let next = app
        .chat(
            &tok,
            json!({"conversation_id": conv, "message": "again #fake:text fail=prev times=1"}),
        )
        .await;
    assert_eq!(next.status(), StatusCode::OK);
    let reqs = app.fake.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs[1].body["previous_response_id"].is_string()
            && reqs[2].body.get("previous_response_id").is_none()
    );
}

#[tokio::test]
async fn silence_gets_keep_alives_and_too_much_silence_times_out() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .keepalive_seconds(1)
        .turns(|t| t.idle_timeout_seconds = 5)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let s = app.stream(&tok, json!({"agent": "assistant", "message": format!("x {}", d(Scenario::text().stall(std::time::Duration::from_millis(2200))))})).await;
    assert_well_formed(&s);
    assert!(s.raw.contains(": keep-alive\n"), "{}", s.raw);
    assert_eq!(*s.names().last().unwrap(), "run.completed");
    let s = app.stream(&tok, json!({"agent": "assistant", "message": format!("x {}", d(Scenario::text().stall(std::time::Duration::from_millis(8000))))})).await;
    assert_well_formed(&s);
    assert_eq!(
        (s.last()["code"].as_str(), s.last()["retryable"].as_bool()),
        (Some("upstream_timeout"), Some(true))
    );
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_cancel_the_turn() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let msg = format!(
        "x {}",
        d(Scenario::text()
            .deltas(5)
            .gap(std::time::Duration::from_millis(150)))
    );
    let (res, started) = app
        .stream_started(&tok, json!({"agent": "assistant", "message": msg}))
        .await;
    let conv = started["conversation_id"].as_str().unwrap().to_owned();
    drop(res);
    // The conversation is written beside the relay, so it can be a moment behind `run.started`.
    for _ in 0..100 {
        let (status, _) = app.get_json(&format!("/v1/conversations/{conv}"), &tok).await;
        let h = if status == StatusCode::OK {
            history(&app, &tok, &conv).await
        } else {
            Vec::new()
        };
        if h.len() == 2 {
            assert_eq!(h[1].0, "assistant");
            assert!(!h[1].1.is_empty());
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the assistant message was not saved after the client left");
}

#[tokio::test]
async fn one_turn_per_conversation() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let first: Value = app
        .chat_json(&tok, json!({"agent": "assistant", "message": "hello"}))
        .await;
    let conv = first["conversation_id"].as_str().unwrap().to_owned();
    let slow = app.spawn_chat(
        &tok,
        json!({"conversation_id": conv, "message": "slow #fake:text delay=1500"}),
    );
    app.until_upstream_requests(2).await;
    let res = app
        .chat(&tok, json!({"conversation_id": conv, "message": "meanwhile"}))
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(res.headers()["retry-after"], "2", "as a DELETE's 409 says");
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "conversation_busy"
    );
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    assert_eq!(
        app.chat(&tok, json!({"conversation_id": conv, "message": "now"}))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn idempotency_keys_return_the_first_result() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let body = json!({"agent": "assistant", "message": "pay once"});
    let send = |key: &'static str, body: Value| {
        app.http
            .post(app.url("/v1/chat"))
            .bearer_auth(&tok)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let a: Value = send("k1", body.clone()).await.unwrap().json().await.unwrap();
    let res = send("k1", body.clone()).await.unwrap();
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let b: Value = res.json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(
        app.fake.requests().len(),
        1,
        "the second request was not sent upstream"
    );
    let res = send("k1", json!({"agent": "assistant", "message": "something else"}))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let s = app
        .http
        .post(app.url("/v1/chat/stream"))
        .bearer_auth(&tok)
        .header("idempotency-key", "k2")
        .json(&body)
        .send()
        .await
        .unwrap();
    let first = agentd_testkit::parse_sse(&s.text().await.unwrap());
    let again = app
        .http
        .post(app.url("/v1/chat/stream"))
        .bearer_auth(&tok)
        .header("idempotency-key", "k2")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let replay = agentd_testkit::parse_sse(&again.text().await.unwrap());
    // The first request's run as it streamed (kept in the run event log): same run id, same events and ids.
    let shape = |evs: &[agentd_testkit::SseEvent]| {
        evs.iter()
            .map(|e| (e.id, e.event.clone(), e.data.clone()))
            .collect::<Vec<_>>()
    };
    assert!(first.len() >= 3, "{:?}", shape(&first));
    assert_eq!(shape(&replay), shape(&first));
    assert!(first[0].data["run_id"].as_str().unwrap().starts_with("run_"));
    // Once the run's events are purged, the stored result: run.started (same run id), run.completed.
    let agentd_db::Db::Postgres(pool) = &app.db.db else {
        panic!("postgres")
    };
    sqlx::query("DELETE FROM run_events").execute(pool).await.unwrap();
    let late = app
        .http
        .post(app.url("/v1/chat/stream"))
        .bearer_auth(&tok)
        .header("idempotency-key", "k2")
        .json(&body)
        .send()
        .await
        .unwrap();
    let late = agentd_testkit::parse_sse(&late.text().await.unwrap());
    assert_eq!(
        late.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["run.started", "run.completed"]
    );
    assert_eq!(late[0].data["run_id"], first[0].data["run_id"]);
    assert_eq!(late[1].data, first.last().unwrap().data);
    assert_eq!(app.fake.requests().len(), 2);
    // A failed first attempt frees its key.
    let res = send(
        "k3",
        json!({"agent": "assistant", "message": "x #fake:text fail=401"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let res = send(
        "k3",
        json!({"agent": "assistant", "message": "x #fake:text fail=401"}),
    )
    .await
    .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::BAD_GATEWAY,
        "retried, not reported as in progress"
    );
}

#[tokio::test]
async fn per_tenant_rate_limits() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| {
            t.rate_limit_per_minute = 2;
            t.concurrent_limit = 1;
        })
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let slow = app.spawn_chat(
        &tok,
        json!({"agent": "assistant", "message": "x #fake:text delay=800"}),
    );
    app.until_upstream_requests(1).await;
    let busy = app
        .chat(&tok, json!({"agent": "assistant", "message": "two at once"}))
        .await;
    assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(busy.headers().contains_key("retry-after"));
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    assert_eq!(
        app.chat(&tok, json!({"agent": "assistant", "message": "second"}))
            .await
            .status(),
        StatusCode::OK
    );
    let over = app
        .chat(&tok, json!({"agent": "assistant", "message": "third"}))
        .await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(
        over.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    let other = app.token("otherco", "u1", None);
    assert_eq!(
        app.chat(&other, json!({"agent": "assistant", "message": "hi"}))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn shutdown_lets_running_turns_finish_and_refuses_new_ones() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let running = app.spawn_chat(
        &tok,
        json!({"agent": "assistant", "message": "x #fake:text delay=700"}),
    );
    app.until_upstream_requests(1).await;
    let turns = app.state.turns.clone();
    let shutdown = tokio::spawn(async move { turns.shutdown().await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let refused = app
        .chat(&tok, json!({"agent": "assistant", "message": "late"}))
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        shutdown.await.unwrap(),
        "the running turn finished within the grace period"
    );
    assert_eq!(running.await.unwrap(), StatusCode::OK);
}

/// A turn still being admitted when the shutdown begins (here held at the tenant's rate cell by a side
/// transaction) is waited for like a running turn: the shutdown does not return, and the database pool close,
/// under a turn that then calls the upstream and cannot save its reply.
#[tokio::test]
async fn shutdown_waits_for_a_turn_still_being_admitted() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .turns(|t| t.rate_limit_per_minute = 100)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let first = app
        .chat(&tok, json!({"agent": "assistant", "message": "hi"}))
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let hold = app.hold_rate_cell("acme").await;
    let admitting = app.spawn_chat(&tok, json!({"agent": "assistant", "message": "held"}));
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while app.state.turns.running() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the held turn is being admitted");
    let turns = app.state.turns.clone();
    let shutdown = tokio::spawn(async move { turns.shutdown().await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !shutdown.is_finished(),
        "the shutdown returned with a turn still being admitted"
    );
    hold.commit().await.unwrap();
    assert_eq!(
        admitting.await.unwrap(),
        StatusCode::OK,
        "admitted before the shutdown, it runs"
    );
    assert!(shutdown.await.unwrap(), "and ends within the grace period");
}

/// PostgreSQL's text cannot hold U+0000 (nor jsonb a `\u0000`): a user's message with one is refused with a
/// reason, not a 500; a reply with one — a model can write it — is saved with U+FFFD in its place, not lost
/// to a save that fails every attempt. With an idempotency key, so that the replayed result is stored too.
#[tokio::test]
async fn a_nul_character_is_refused_from_users_and_stored_replaced_from_the_model() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let res = app
        .chat(&tok, json!({"agent": "assistant", "message": "a\u{0}b"}))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("NUL"), "{v}");
    assert_eq!(app.fake.requests().len(), 0);

    let send = || {
        app.http
            .post(app.url("/v1/chat"))
            .bearer_auth(&tok)
            .header("idempotency-key", "nul-reply")
            .json(&json!({"agent": "assistant", "message": "say it #fake:text nul"}))
            .send()
    };
    let res = send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    let content = v["message"]["content"].as_str().unwrap().to_owned();
    assert!(
        content.starts_with("This is the fake upstream answering:\u{FFFD} say it"),
        "{content:?}"
    );
    let h = history(&app, &tok, v["conversation_id"].as_str().unwrap()).await;
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].1, content);
    let again: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(
        again["message"]["content"].as_str(),
        Some(content.as_str()),
        "replayed"
    );
    assert_eq!(app.fake.requests().len(), 1);
}
