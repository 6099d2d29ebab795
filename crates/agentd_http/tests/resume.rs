//! `GET /v1/runs/{run_id}/events` at the edges of a run's life, over HTTP on PostgreSQL: a run that vanishes
//! under its readers (its turn given back when the upstream refused it) ends their streams, and a reader whose
//! `Last-Event-ID` is past the log's end still gets the end it never saw. Neither may leave a stream open.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_testkit::TestApp;
use serde_json::json;
use std::time::Duration;

/// The run's events after `last_event_id` (none: all), read to the end within 10 s.
async fn resume(
    app: &TestApp,
    tok: &str,
    run_id: &str,
    last_event_id: Option<u64>,
) -> Vec<agentd_testkit::SseEvent> {
    let mut req = app
        .http
        .get(app.url(&format!("/v1/runs/{run_id}/events")))
        .bearer_auth(tok);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), res.text())
        .await
        .expect("the stream ends")
        .unwrap();
    agentd_testkit::parse_sse(&body)
}

#[tokio::test]
async fn a_run_given_back_before_the_upstream_accepted_it_ends_its_readers() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let first = app
        .chat_json(&tok, json!({"agent": "assistant", "message": "hi"}))
        .await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    // Refused with 503 three times (two retries a second apart): admitted, visible, then given back.
    let refused = app.spawn_chat(
        &tok,
        json!({"agent": "assistant", "conversation_id": conversation,
               "message": "x #fake:text fail=503 retry-after=1"}),
    );
    let run_id = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let c: serde_json::Value = app
                .http
                .get(app.url(&format!("/v1/conversations/{conversation}")))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(run) = c["active_run"]["run_id"].as_str() {
                return run.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the refused turn's run is shown while it is retried");
    let reader = {
        let (app_url, tok, run_id) = (app.url(""), tok.clone(), run_id.clone());
        let http = app.http.clone();
        tokio::spawn(async move {
            let res = http
                .get(format!("{app_url}/v1/runs/{run_id}/events"))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            tokio::time::timeout(Duration::from_secs(15), res.text())
                .await
                .expect("the reader's stream ends once the run is gone")
                .unwrap()
        })
    };
    assert_eq!(refused.await.unwrap(), 503, "the sender gets the refusal");
    let events = agentd_testkit::parse_sse(&reader.await.unwrap());
    let last = events.last().expect("at least the end");
    assert_eq!(last.event, "error", "{events:?}");
    assert_eq!(last.data["code"], "run_not_found", "{events:?}");
    // And a reader arriving now is told there is no such run.
    let late = app
        .http
        .get(app.url(&format!("/v1/runs/{run_id}/events")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 404);
}

/// A reader that saw previews (never logged) after the log's last event, whose run was then ended by another
/// reader that found its holder dead (the end's id follows the log's, not the previews'), asks for events after
/// an id past the end: it must get that end, or an `EventSource` would reconnect forever.
#[tokio::test]
async fn a_reader_past_the_logs_end_still_gets_the_end() {
    let app = TestApp::postgres().await;
    let tok = app.token("acme", "u1", None);
    let s = app
        .stream(
            &tok,
            json!({"agent": "assistant", "message": "hi #fake:text deltas=3"}),
        )
        .await;
    let run_id = s.first("run.started")["run_id"].as_str().unwrap().to_owned();
    let end = s.events.last().unwrap();
    assert_eq!(end.event, "run.completed");
    let end_id = end.id.unwrap();

    assert!(
        resume(&app, &tok, &run_id, Some(end_id)).await.is_empty(),
        "a reader that has the end gets nothing"
    );
    for past in [end_id + 1, end_id + 40] {
        let got = resume(&app, &tok, &run_id, Some(past)).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].event.as_str(), got[0].id),
            ("run.completed", Some(end_id))
        );
        assert_eq!(got[0].data, end.data);
    }
    assert_eq!(resume(&app, &tok, &run_id, None).await.len(), s.events.len());
}
