//! (b) Each event kind of both stream routes, live and resumed, fits the stream schema.

use crate::doc::Doc;
use agentd_fake_upstream::Scenario;
use agentd_testkit::{TestApp, parse_sse};
use serde_json::json;
use std::collections::BTreeSet;

#[tokio::test]
async fn every_event_kind_of_both_streams_fits_its_schema() {
    let app = TestApp::postgres().await;
    let doc = Doc::fetch(&app).await;
    let tok = app.token("acme", "u1", None);
    let kinds = doc.event_kinds();
    let expected = [
        "run.started",
        "message.delta",
        "image.progress",
        "image.partial",
        "attachment",
        "image.failed",
        "run.completed",
        "error",
    ];
    assert_eq!(kinds, expected.iter().map(|s| (*s).to_owned()).collect());

    let turns = [
        json!({"agent": "designer", "message": format!("draw {}", Scenario::image().partials(2).directive())}),
        json!({"agent": "designer", "message": format!("draw {}", Scenario::moderation().directive())}),
        json!({"agent": "assistant", "message": format!("hi {}", Scenario::error().directive())}),
    ];
    let (mut live, mut resumed) = (BTreeSet::new(), BTreeSet::new());
    for body in turns {
        let s = app.stream(&tok, body).await;
        assert_eq!(s.status, 200);
        for ev in &s.events {
            doc.check_event("post", "/v1/chat/stream", ev);
            live.insert(ev.event.clone());
        }
        let run_id = s.first("run.started")["run_id"].as_str().unwrap().to_owned();
        for after in [None, Some(1)] {
            let mut req = app
                .http
                .get(app.url(&format!("/v1/runs/{run_id}/events")))
                .bearer_auth(&tok);
            if let Some(id) = after {
                req = req.header("last-event-id", id.to_string());
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert!(
                res.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
            );
            let read = tokio::time::timeout(std::time::Duration::from_secs(30), res.text());
            let text = read
                .await
                .unwrap_or_else(|_| panic!("run {run_id} after {after:?}: no end"))
                .unwrap();
            let events = parse_sse(&text);
            assert!(events.iter().all(|e| e.id > after), "{after:?}");
            for ev in &events {
                doc.check_event("get", "/v1/runs/{run_id}/events", ev);
                resumed.insert(ev.event.clone());
            }
        }
    }
    assert_eq!(live, kinds, "the three turns show every kind live");
    let kept: BTreeSet<String> = kinds.into_iter().filter(|k| k != "image.partial").collect();
    assert_eq!(
        resumed, kept,
        "a resumed stream shows every kind but previews, which are never kept"
    );
}
