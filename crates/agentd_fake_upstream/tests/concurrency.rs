//! One fake serves many streams at once (a benchmark's image load and its text turns, tests in parallel): an
//! image turn's drawing must not hold up the others, as another user's image does
//! not at the real API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use agentd_fake_upstream::{FakeConfig, FakeUpstream, Scenario};
use serde_json::{Value, json};
use std::time::Duration;

fn body(text: &str) -> Value {
    json!({
        "model": "gpt-5.5",
        "stream": true,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}],
        "tools": [{"type": "image_generation", "model": "gpt-image-2", "size": "1024x1024"}],
    })
}

async fn post(url: String, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// On a runtime of one thread, which the fake shares with its clients: a text turn sent while an 8 MB image
/// turn is being built gets its response first. Were the image built on the async thread, nothing else would
/// run until the image turn's response had started.
#[tokio::test(flavor = "current_thread")]
async fn a_text_turn_is_answered_while_an_image_turn_is_built() {
    let fake = FakeUpstream::start(FakeConfig {
        record_requests: true,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let url = format!("{}/responses", fake.base_url());
    let image_text = format!("draw {}", Scenario::image().partials(2).big(8).directive());
    let image = tokio::spawn(post(url.clone(), body(&image_text)));
    // The image turn's handler has begun (requests are recorded before the turn is built).
    while fake.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let text = post(url, body("hello")).await;
    assert_eq!(text.status(), 200);
    assert!(
        !image.is_finished(),
        "the image turn's response started before the text turn's: it was built on the async thread"
    );
    let image = image.await.unwrap();
    assert_eq!(image.status(), 200);
    let body = image.text().await.unwrap();
    assert!(
        body.contains("response.completed"),
        "{}",
        &body[..body.len().min(300)]
    );
}
