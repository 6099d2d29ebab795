//! Scale-out, proven with real processes (issue 9): replicas of the `agentd` binary on one PostgreSQL database
//! and one bucket of the S3 stand-in. A stream dropped on one replica resumes on another with every remaining
//! event exactly once; a finished run replays whole anywhere; a run whose replica was killed ends with an
//! `error` instead of hanging; rate and concurrency limits and `conversation_busy` hold across replicas; runs
//! are confined to their tenant.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use agentd_auth::{Scope, ScopeSet};
use agentd_testkit::SseEvent;
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

/// An image turn of several seconds: text before and after, two previews, a stall while "generating".
const SLOW_IMAGE: &str =
    "draw an otter in an orange scarf #fake:image partials=2 text=both gap=150 stall=1500";

fn run_id(started: &SseEvent) -> String {
    assert_eq!(started.event, "run.started", "{started:?}");
    started.data["run_id"].as_str().unwrap().to_owned()
}

/// Ids strictly increasing, no previews, exactly one terminal event, last.
fn assert_well_formed(events: &[SseEvent]) {
    let ids = ids(events);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not increasing: {ids:?}");
    assert!(
        events.iter().all(|e| e.event != "image.partial"),
        "{:?}",
        names(events)
    );
    assert_eq!(
        events.iter().filter(|e| is_terminal(e)).count(),
        1,
        "{:?}",
        names(events)
    );
    assert!(is_terminal(events.last().unwrap()));
}

fn comparable(events: &[SseEvent]) -> Vec<(u64, String, Value)> {
    events
        .iter()
        .map(|e| (e.id.unwrap(), e.event.clone(), without_urls(&e.data)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_on_one_replica_resumes_on_another_and_replays_whole_on_a_third() {
    let cluster = Cluster::new("resume").await;
    let (a, b, c) = (
        cluster.replica().await,
        cluster.replica().await,
        cluster.replica().await,
    );
    let tok = token(&a, "acme");
    let body = json!({"agent": "designer", "message": SLOW_IMAGE});

    let mut on_a = opened(stream(&a, &tok, &body).await);
    let head = on_a
        .until(|e| e.event == "message.delta" && e.id >= Some(3))
        .await;
    let run = run_id(&head[0]);
    let conversation = head[0].data["conversation_id"].as_str().unwrap().to_owned();
    // While the turn runs, any replica names the run to resume.
    let during = get(&c, &format!("/v1/conversations/{conversation}"), &tok).await;
    assert_eq!(during.status, 200, "{during:?}");
    assert_eq!(during.body["active_run"]["run_id"], json!(run), "{during:?}");
    assert!(during.body["active_run"]["started_at"].is_string(), "{during:?}");
    let last_seen = head.last().unwrap().id.unwrap();
    drop(on_a); // the mobile client loses its connection

    let mut on_b = opened(resume(&b, &tok, &run, Some(last_seen)).await);
    let tail = on_b.rest().await;
    assert_well_formed(&tail);
    assert!(
        tail[0].id.unwrap() > last_seen,
        "nothing seen is sent again: {:?}",
        names(&tail)
    );
    assert_eq!(tail.last().unwrap().event, "run.completed", "{:?}", names(&tail));
    let attachments: Vec<&SseEvent> = tail.iter().filter(|e| e.event == "attachment").collect();
    assert_eq!(attachments.len(), 1, "{:?}", names(&tail));
    let att = &attachments[0].data["attachment"];
    let (status, bytes) = download(att["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(is_png(&bytes) && bytes.len() as u64 == att["size_bytes"].as_u64().unwrap());
    let done = &tail.last().unwrap().data;
    assert_eq!(
        done["message"]["content"],
        "Sure, creating it now.Here is your image."
    );
    assert_eq!(done["message"]["attachments"][0]["object_id"], att["object_id"]);

    let after = get(&c, &format!("/v1/conversations/{conversation}"), &tok).await;
    assert_eq!(after.body["active_run"], Value::Null, "{after:?}");
    assert_eq!(after.body["messages"].as_array().unwrap().len(), 2, "{after:?}");

    // The finished run, replayed whole on a third replica: the original ids, previews skipped.
    let full = opened(resume(&c, &tok, &run, None).await).rest().await;
    assert_well_formed(&full);
    let full_ids = ids(&full);
    assert_eq!(full_ids[0], 1);
    let skipped: Vec<u64> = (1..=*full_ids.last().unwrap())
        .filter(|i| !full_ids.contains(i))
        .collect();
    assert_eq!(
        skipped.len(),
        2,
        "only the two previews are not kept: {:?}",
        names(&full)
    );
    let before_previews = full.iter().rfind(|e| e.id.unwrap() < skipped[0]).unwrap();
    assert_eq!(before_previews.data["status"], "generating", "{:?}", names(&full));
    assert_eq!(comparable(&full[..head.len()]), comparable(&head));
    assert_eq!(
        comparable(&full[head.len()..]),
        comparable(&tail),
        "A's part + B's part = the run"
    );

    // `?after=N` is `Last-Event-ID: N`.
    let n = attachments[0].id.unwrap() - 1;
    let path = format!("/v1/runs/{run}/events?after={n}");
    let from_query = opened(resume_at(&c, &tok, &path, None).await).rest().await;
    let expected: Vec<SseEvent> = full.iter().filter(|e| e.id.unwrap() > n).cloned().collect();
    assert_eq!(comparable(&from_query), comparable(&expected));
    assert_eq!(from_query[0].event, "attachment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_replica_was_killed_ends_with_an_error_on_another() {
    let cluster = Cluster::new("killed").await;
    let (mut a, b) = (cluster.replica().await, cluster.replica().await);
    let tok = token(&a, "acme");
    let body = json!({"agent": "designer", "message": "draw a heron #fake:image partials=2 stall=120000"});
    let mut on_a = opened(stream(&a, &tok, &body).await);
    let head = on_a.until(|e| e.data["status"] == "generating").await;
    let run = run_id(&head[0]);
    let conversation = head[0].data["conversation_id"].as_str().unwrap().to_owned();

    // B follows the run live (replayed up to `generating`, then waiting for A's next event).
    let mut on_b = opened(resume(&b, &tok, &run, Some(1)).await);
    let replayed = on_b.until(|e| e.data["status"] == "generating").await;
    assert_eq!(ids(&replayed), ids(&head[1..]));

    a.kill9();
    assert!(a.wait_exit(Duration::from_secs(10)).await.is_some());
    // The lease expires LEASE_SECONDS after A's last heartbeat; whoever notices ends the run.
    let end = on_b
        .next_within(Duration::from_secs(LEASE_SECONDS * 10))
        .await
        .expect("a terminal event, not the end of the stream");
    assert_eq!(end.event, "error", "{end:?}");
    assert_eq!(end.data["code"], "unavailable", "{end:?}");
    assert_eq!(end.data["retryable"], true, "{end:?}");
    // Past every id A may have sent (previews, events its journal had not written): 2^32 after the log's last.
    assert_eq!(end.id, Some(head.last().unwrap().id.unwrap() + (1 << 32)));
    assert!(
        on_b.next().await.is_none(),
        "the stream ends after its terminal event"
    );

    // Resumed again later: the same end, at once.
    let again = opened(resume(&b, &tok, &run, None).await).rest().await;
    assert_eq!(again.last().unwrap().id, end.id);
    assert_eq!(again.last().unwrap().data["code"], "unavailable");

    let conv = get(&b, &format!("/v1/conversations/{conversation}"), &tok).await;
    assert_eq!(conv.body["active_run"], Value::Null, "{conv:?}");
    let next = chat(
        &b,
        &tok,
        &json!({"conversation_id": conversation, "message": "again"}),
    )
    .await;
    assert_eq!(next.status, 200, "the conversation is free again: {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_replicas() {
    let mut cluster = Cluster::new("rate").await;
    cluster.set("CHAT_RATE_LIMIT_PER_MINUTE", "4");
    let replicas = [
        cluster.replica().await,
        cluster.replica().await,
        cluster.replica().await,
    ];
    let tok = token(&replicas[0], "acme");
    let body = json!({"agent": "assistant", "message": "hello"});
    let sent = std::time::Instant::now();
    let answers = join_all((0..6).map(|i| chat(&replicas[i % 3], &tok, &body))).await;
    let elapsed = sent.elapsed().as_secs() + 1;
    let accepted = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(accepted, 4, "{answers:#?}");
    for refused in answers.iter().filter(|a| a.status != 200) {
        refused.assert_error(429, "rate_limited");
        // 4 a minute, all taken at once: the next slot frees 15 s after the first admission (which came after
        // `sent`). Rounded up to whole seconds from the instant the request was admitted, so at most 16.
        let after = refused.retry_after().expect("retry-after");
        assert!(
            after <= 16 && after + elapsed >= 15,
            "retry-after {after}, {elapsed} s after sending: {answers:#?}"
        );
    }
    let other = chat(&replicas[2], &token(&replicas[2], "other"), &body).await;
    assert_eq!(other.status, 200, "the limit is per tenant: {other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_holds_across_replicas() {
    let mut cluster = Cluster::new("concurrent").await;
    cluster.set("CHAT_STREAM_CONCURRENT_LIMIT", "2");
    let (mut a, b, c) = (
        cluster.replica().await,
        cluster.replica().await,
        cluster.replica().await,
    );
    let tok = token(&a, "acme");
    let slow = json!({"agent": "assistant", "message": "take your time #fake:text stall=120000"});
    let mut on_a = opened(stream(&a, &tok, &slow).await);
    let mut on_b = opened(stream(&b, &tok, &slow).await);
    on_a.until(|e| e.event == "message.delta").await;
    on_b.until(|e| e.event == "message.delta").await;

    let third = chat(&c, &tok, &json!({"agent": "assistant", "message": "hello"})).await;
    third.assert_error(429, "rate_limited");
    assert!(third.retry_after().is_some(), "{third:?}");
    let other = chat(
        &c,
        &token(&c, "other"),
        &json!({"agent": "assistant", "message": "hello"}),
    )
    .await;
    assert_eq!(other.status, 200, "the limit is per tenant: {other:?}");

    // A slot held by a replica that died frees up once its lease expires.
    a.kill9();
    eventually(
        Duration::from_secs(LEASE_SECONDS * 10),
        "a turn on C after A died",
        || async {
            let r = chat(&c, &tok, &json!({"agent": "assistant", "message": "hello"})).await;
            assert!(r.status == 200 || r.code() == "rate_limited", "{r:?}");
            r.status == 200
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conversation_runs_one_turn_at_a_time_across_replicas() {
    let cluster = Cluster::new("busy").await;
    let (a, b) = (cluster.replica().await, cluster.replica().await);
    let tok = token(&a, "acme");
    let first = chat(&a, &tok, &json!({"agent": "assistant", "message": "hello"})).await;
    assert_eq!(first.status, 200, "{first:?}");
    let conversation = first.body["conversation_id"].clone();

    let slow = json!({"conversation_id": conversation, "message": "and now slowly #fake:text stall=6000"});
    let (on_a, on_b) = tokio::join!(stream(&a, &tok, &slow), stream(&b, &tok, &slow));
    let (mut winner, loser) = match (on_a, on_b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        (a, b) => panic!(
            "exactly one of two simultaneous turns runs: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    };
    loser.assert_error(409, "conversation_busy");
    assert_eq!(winner.rest().await.last().unwrap().event, "run.completed");

    let next = chat(
        &b,
        &tok,
        &json!({"conversation_id": conversation, "message": "thanks"}),
    )
    .await;
    assert_eq!(next.status, 200, "{next:?}");
    let conv = get(
        &a,
        &format!("/v1/conversations/{}", conversation.as_str().unwrap()),
        &tok,
    )
    .await;
    let roles: Vec<&str> = conv.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "user", "assistant", "user", "assistant"],
        "the refused turn left nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_found_only_by_its_own_tenant() {
    let cluster = Cluster::new("tenants").await;
    let (a, b) = (cluster.replica().await, cluster.replica().await);
    let tok = token(&a, "acme");
    let events = opened(stream(&a, &tok, &json!({"agent": "assistant", "message": "hi"})).await)
        .rest()
        .await;
    let run = run_id(&events[0]);

    let path = format!("/v1/runs/{run}/events");
    resume(&b, &token(&b, "intruder"), &run, None)
        .await
        .err()
        .expect("another tenant's run is refused")
        .assert_error(404, "run_not_found");
    resume(&b, &tok, "run_0190aaaabbbbccccddddeeeeffff0000", None)
        .await
        .err()
        .expect("an unknown run is refused")
        .assert_error(404, "run_not_found");
    let bad = b
        .http()
        .get(b.url(&path))
        .bearer_auth(&tok)
        .header("last-event-id", "seven")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_request"
    );

    let reader = b.token_with("acme", "u2", Some(ScopeSet::of(&[Scope::ConversationsRead])));
    let replay = opened(resume(&b, &reader, &run, Some(1)).await).rest().await;
    assert_eq!(comparable(&replay), comparable(&events[1..]));
    let agents_only = b.token_with("acme", "u2", Some(ScopeSet::of(&[Scope::AgentsRead])));
    resume(&b, &agents_only, &run, None)
        .await
        .err()
        .expect("a token without chat or conversations:read is refused")
        .assert_error(403, "forbidden");
}
