//! Point 8: SIGTERM keeps its promise. During `SHUTDOWN_GRACE_SECONDS` the listener stays open, `/readyz`
//! answers 503 and new turns `503 unavailable` with `retry-after`; a turn that ends within the grace completes;
//! one still running when it ends is saved as it stands and its stream — live or resumed from the run log —
//! ends with `error` `shutting_down`; then the process exits 0.

use crate::support::*;
use crate::{conversation_id, roles, run_id};
use agentd_testkit::ServerProcess;
use serde_json::{Value, json};
use std::time::Duration;

/// Waits for `/readyz` to turn 503 after the signal (bounded), then checks what the grace promises.
async fn assert_draining(server: &ServerProcess, tok: &str) {
    eventually(
        Duration::from_secs(10),
        "/readyz answers 503 after SIGTERM",
        || async { get(server, "/readyz", tok).await.status == 503 },
    )
    .await;
    let ready = get(server, "/readyz", tok).await;
    ready.assert_error(503, "unavailable");
    assert!(
        ready.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{ready:?}"
    );
    let refused = chat(server, tok, &json!({"agent": "assistant", "message": "hello"})).await;
    refused.assert_error(503, "unavailable");
    assert!(refused.retry_after().is_some(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_saves_a_turn_still_running_when_the_grace_ends() {
    let mut cluster = Cluster::new("sigterm").await;
    cluster.set("SHUTDOWN_GRACE_SECONDS", "8");
    let mut server = cluster.replica().await;
    let tok = token(&server, "acme");
    let body = json!({"agent": "assistant", "message": "tell me a story #fake:text stall=120000"});
    let mut live = opened(stream(&server, &tok, &body).await);
    let head = live.until(|e| e.event == "message.delta").await;
    let (run, conversation) = (run_id(&head[0]), conversation_id(&head[0]));
    let so_far = head.last().unwrap().data["delta"].as_str().unwrap().to_owned();
    let mut resumed = opened(resume(&server, &tok, &run, Some(1)).await);
    resumed.until(|e| e.event == "message.delta").await;

    server.sigterm();
    assert_draining(&server, &tok).await;
    let end = live.rest().await.pop().unwrap();
    assert_eq!(end.event, "error", "{end:?}");
    assert_eq!(end.data["code"], "shutting_down", "{end:?}");
    assert_eq!(end.data["retryable"], true, "{end:?}");
    let resumed_end = resumed.rest().await.pop().unwrap();
    assert_eq!((resumed_end.id, &resumed_end.data), (end.id, &end.data));
    let status = server
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the process exits after the grace");
    assert_eq!(status.code(), Some(0), "{status}");

    server.restart().await;
    let conv = get(&server, &format!("/v1/conversations/{conversation}"), &tok).await;
    assert_eq!(roles(&conv.body), ["user", "assistant"], "{conv:?}");
    assert_eq!(
        conv.body["messages"][1]["content"],
        json!(so_far),
        "the text so far is saved"
    );
    assert_eq!(conv.body["active_run"], Value::Null);
    let replay = opened(resume(&server, &tok, &run, None).await).rest().await;
    assert_eq!(replay.last().unwrap().data["code"], "shutting_down");
    let next = chat(
        &server,
        &tok,
        &json!({"conversation_id": conversation, "message": "go on"}),
    )
    .await;
    assert_eq!(
        next.status, 200,
        "the conversation goes on after the restart: {next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_ends_within_the_grace_completes() {
    let mut cluster = Cluster::new("grace").await;
    cluster.set("SHUTDOWN_GRACE_SECONDS", "60");
    let mut server = cluster.replica().await;
    let tok = token(&server, "acme");
    let body = json!({"agent": "assistant", "message": "a short one #fake:text stall=5000"});
    let mut live = opened(stream(&server, &tok, &body).await);
    let head = live.until(|e| e.event == "message.delta").await;
    let conversation = conversation_id(&head[0]);

    server.sigterm();
    assert_draining(&server, &tok).await;
    let done = live.rest().await.pop().unwrap();
    assert_eq!(done.event, "run.completed", "{done:?}");
    let status = server
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the process exits once the turn is saved");
    assert_eq!(status.code(), Some(0), "{status}");

    server.restart().await;
    let conv = get(&server, &format!("/v1/conversations/{conversation}"), &tok).await;
    assert_eq!(roles(&conv.body), ["user", "assistant"], "{conv:?}");
    assert_eq!(
        conv.body["messages"][1]["content"],
        done.data["message"]["content"]
    );
}
