//! Bad chat requests get the contract's 4xx with a message that says what to fix; conversations stay
//! confined to their tenant.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_auth::{Scope, ScopeSet};
use agentd_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post_raw(app: &TestApp, tok: &str, body: &'static str) -> (StatusCode, Value) {
    let res = app
        .http
        .post(app.url("/v1/chat"))
        .bearer_auth(tok)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap())
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_a_reason() {
    let app = TestApp::builder(agentd_testkit::fresh_postgres().await)
        .max_body_bytes(2048)
        .start()
        .await;
    let tok = app.token("acme", "u1", None);
    let cases: &[(&str, u16, &str, &str)] = &[
        (
            "{\"agent\": \"assistant\",",
            400,
            "invalid_json",
            "not valid JSON",
        ),
        (
            "{\"agent\": \"assistant\", \"message\": \"hi\", \"colour\": 1}",
            400,
            "invalid_request",
            "unknown field `colour`",
        ),
        (
            "{\"agent\": \"assistant\", \"message\": 42}",
            400,
            "invalid_request",
            "message",
        ),
        (
            "{\"agent\": \"assistant\"}",
            400,
            "invalid_request",
            "missing field `message`",
        ),
        (
            "{\"agent\": \"assistant\", \"message\": \"   \"}",
            400,
            "invalid_request",
            "`message` is empty",
        ),
        (
            "{\"agent\": \"nope\", \"message\": \"hi\"}",
            404,
            "agent_not_found",
            "GET /v1/agents",
        ),
        (
            "{\"agent\": \"assistant\", \"message\": \"hi\", \"conversation_id\": \"01a201b3-42bd-74b8-9711-ad488e212998\"}",
            404,
            "conversation_not_found",
            "omit conversation_id",
        ),
        (
            "{\"agent\": \"assistant\", \"message\": \"hi\", \"conversation_id\": \"xyz\"}",
            400,
            "invalid_request",
            "conversation_id",
        ),
    ];
    for (body, status, code, says) in cases {
        let (got, v) = post_raw(&app, &tok, body).await;
        assert_eq!(
            (got.as_u16(), v["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{body}: {v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {v}"
        );
    }
    let big = format!(
        "{{\"agent\": \"assistant\", \"message\": \"{}\"}}",
        "x".repeat(4000)
    );
    let res = app
        .http
        .post(app.url("/v1/chat"))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    let res = app
        .http
        .post(app.url("/v1/chat"))
        .bearer_auth(&tok)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "no content type");
    let readers = app.token("acme", "u1", Some(ScopeSet::of(&[Scope::ConversationsRead])));
    let (got, v) = post_raw(&app, &readers, "{\"agent\": \"assistant\", \"message\": \"hi\"}").await;
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert_eq!(app.fake.requests().len(), 0, "nothing bad reached the upstream");
}

#[tokio::test]
async fn conversations_list_read_delete_within_the_tenant() {
    let app = TestApp::postgres().await;
    let (a, b) = (app.token("acme", "u1", None), app.token("globex", "u1", None));
    let mut ids = Vec::new();
    for i in 0..5 {
        let v: Value = app
            .chat_json(&a, json!({"agent": "assistant", "message": format!("chat {i}")}))
            .await;
        ids.push(v["conversation_id"].as_str().unwrap().to_owned());
    }
    let (status, page1) = app.get_json("/v1/conversations?limit=2", &a).await;
    assert_eq!(status, StatusCode::OK);
    let titles: Vec<&str> = page1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["chat 4", "chat 3"]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = app
        .get_json(&format!("/v1/conversations?limit=2&cursor={cursor}"), &a)
        .await;
    assert_eq!(page2["data"][0]["title"], "chat 2");
    let (_, page3) = app
        .get_json(
            &format!(
                "/v1/conversations?limit=2&cursor={}",
                page2["next_cursor"].as_str().unwrap()
            ),
            &a,
        )
        .await;
    assert_eq!(
        (
            page3["data"].as_array().unwrap().len(),
            page3["next_cursor"].is_null()
        ),
        (1, true)
    );
    // A well-formed cursor of a time no database stores (year −7536): refused, not a 500.
    let far = "LTMwMDAwMDAwMDAwMDAwMDAwMHwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA";
    let far = format!("cursor={far}");
    for bad in ["limit=0", "limit=101", "cursor=garbage", "sort=asc", far.as_str()] {
        let (status, v) = app.get_json(&format!("/v1/conversations?{bad}"), &a).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (status, conv) = app.get_json(&format!("/v1/conversations/{}", ids[0]), &a).await;
    assert_eq!(
        (status, conv["messages"].as_array().unwrap().len()),
        (StatusCode::OK, 2)
    );
    assert_eq!(conv["agent"], "assistant");

    // Another tenant sees nothing and can touch nothing: exactly like a missing conversation.
    let (_, empty) = app.get_json("/v1/conversations", &b).await;
    assert_eq!(empty["data"].as_array().unwrap().len(), 0);
    let (status, v) = app.get_json(&format!("/v1/conversations/{}", ids[0]), &b).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("conversation_not_found"))
    );
    let del = app
        .http
        .delete(app.url(&format!("/v1/conversations/{}", ids[0])))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NOT_FOUND);
    let cont = app
        .chat(&b, json!({"conversation_id": ids[0], "message": "hijack"}))
        .await;
    assert_eq!(cont.status(), StatusCode::NOT_FOUND);

    let readonly = app.token("acme", "u1", Some(ScopeSet::of(&[Scope::ConversationsRead])));
    let del = app
        .http
        .delete(app.url(&format!("/v1/conversations/{}", ids[0])))
        .bearer_auth(&readonly)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::FORBIDDEN);
    let del = app
        .http
        .delete(app.url(&format!("/v1/conversations/{}", ids[0])))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_json(&format!("/v1/conversations/{}", ids[0]), &a).await.0,
        StatusCode::NOT_FOUND
    );
}

/// A long conversation is written a page at a time as the client takes it, so it can be deleted after its
/// response has begun. The pages after the delete are gone with it; the body is then cut off (the client's
/// read fails) rather than closed as valid JSON that the client would take for the whole conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_deleted_while_it_is_read_is_cut_off_not_shortened() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let v = app
        .chat_json(&tok, json!({"agent": "assistant", "message": "hello"}))
        .await;
    let conversation = v["conversation_id"].as_str().unwrap().to_owned();
    // ~32 MB: far more than the socket buffers hold while the client reads nothing.
    agentd_testkit::long_conversation(&app.db.db, "acme", &conversation, 1000, 1000, 1).await;
    let path = format!("/v1/conversations/{conversation}");
    let reading = app.get(&path, &tok).await;
    assert_eq!(reading.status(), StatusCode::OK);
    let deleted = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), reading.bytes())
        .await
        .expect("the body ends, one way or the other");
    let err = read.expect_err("the body is cut off, not ended as valid JSON");
    eprintln!("the client's read: {err}");
}
