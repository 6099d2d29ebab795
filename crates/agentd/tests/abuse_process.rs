//! Hostile input and careless operators against the real binary (a child process, `ServerProcess`): the
//! offline model's `#fake:` directives cannot take the process down or grow it without bound, secrets lie
//! around with mode 0600 and never reach `agentd config` or the logs, and weak JWT secrets are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_testkit::{ServerOptions, ServerProcess};
use serde_json::{Value, json};
use std::time::Duration;

fn opts() -> ServerOptions {
    ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))
}

/// `POST /v1/chat`; the status and the JSON body.
async fn chat(server: &ServerProcess, tok: &str, body: Value) -> (u16, Value) {
    let res = server
        .http()
        .post(server.url("/v1/chat"))
        .bearer_auth(tok)
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{body}: no answer ({e})\n{}", server.logs().join("\n")));
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

async fn assert_healthy(server: &ServerProcess, after: &str) {
    let res = server.http().get(server.url("/healthz")).send().await;
    assert!(
        res.is_ok_and(|r| r.status() == 200),
        "/healthz does not answer after {after}\n{}",
        server.logs().join("\n")
    );
}

/// Peak RSS allowed while serving the hostile directives below (measured ~MB; see the report).
const PEAK_RSS_BOUND_KB: u64 = 600 * 1024;

#[tokio::test]
async fn offline_directives_cannot_take_the_zero_config_server_down() {
    let server = ServerProcess::start(opts()).await;
    let tok = server.token("acme", "u1");
    let cases = [
        ("assistant", "hi #fake:text big-other=5000000"),
        (
            "designer",
            "draw #fake:image big=5000000 images=4000000 partials=200",
        ),
        ("assistant", "hi #fake:text deltas=4000000000 chunk=1 big-other=6"),
        ("designer", "draw #fake:image big=6 chunk=1"),
        ("assistant", "hi #fake:text delay=600000 stall=600000 gap=600000"),
    ];
    for (agent, message) in cases {
        let (status, body) = chat(&server, &tok, json!({"agent": agent, "message": message})).await;
        assert_eq!(status, 200, "{message}: {body}");
        assert!(body["message"]["content"].is_string(), "{message}: {body}");
        let images = body["message"]["attachments"].as_array().map_or(0, Vec::len);
        assert!(images <= 4, "{message}: {images} images");
        assert_healthy(&server, message).await;
        eprintln!(
            "{message}: rss {} KiB, peak {} KiB",
            server.rss_kb(),
            server.peak_rss_kb()
        );
    }
    let peak = server.peak_rss_kb();
    assert!(peak < PEAK_RSS_BOUND_KB, "peak RSS {peak} KiB");
}

/// Growth allowed between the 10th and the 25th image turn on one conversation (each image is 4 MB of
/// base64; an unbounded image memo grows by 60 MB over those turns).
const GROWTH_BOUND_KB: u64 = 40 * 1024;

#[tokio::test]
async fn image_turns_do_not_grow_the_offline_model_without_bound() {
    let server = ServerProcess::start(opts()).await;
    let tok = server.token("acme", "u1");
    let mut conversation = Value::Null;
    let mut after_warmup = 0;
    for turn in 1..=25 {
        // Every turn continues the conversation: a new previous_response_id, so a new image variant.
        let body = json!({"agent": "designer", "conversation_id": conversation,
                          "message": format!("draw it again, turn {turn} #fake:image big=3")});
        let (status, v) = chat(&server, &tok, body).await;
        assert_eq!(status, 200, "turn {turn}: {v}");
        assert_eq!(
            v["message"]["attachments"].as_array().map(Vec::len),
            Some(1),
            "{v}"
        );
        conversation = v["conversation_id"].clone();
        if turn == 10 {
            after_warmup = server.rss_kb();
        }
    }
    let end = server.rss_kb();
    eprintln!("rss after 10 image turns {after_warmup} KiB, after 25 {end} KiB");
    assert!(
        end < after_warmup + GROWTH_BOUND_KB,
        "RSS grew from {after_warmup} KiB to {end} KiB over 15 image turns"
    );
    assert_healthy(&server, "25 image turns").await;
}
