//! The offline model's instance clamps what a `#fake:` directive asks for and keeps nothing per request;
//! the test server's instance does exactly what it is told.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use base64::Engine as _;
use serde_json::{Value, json};

const CAP: u64 = 2 * 1024 * 1024;

fn body(text: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-5.5",
        "stream": stream,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}],
        "tools": [{"type": "image_generation", "model": "gpt-image-2", "size": "1024x1024", "quality": "low"}],
    })
}

async fn post(fake: &FakeUpstream, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/responses", fake.base_url()))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Decoded sizes of the image results of a non-streamed response.
fn image_sizes(v: &Value) -> Vec<usize> {
    v["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "image_generation_call")
        .map(|o| {
            let b64 = o["result"].as_str().unwrap();
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
                .len()
        })
        .collect()
}

#[tokio::test]
async fn offline_clamps_sizes_and_counts_and_keeps_no_request() {
    let offline = FakeUpstream::start(FakeConfig::offline("agentd-offline", CAP))
        .await
        .unwrap();
    let res = post(
        &offline,
        &body("draw #fake:image big=5000000 images=4000000", false),
    )
    .await;
    assert_eq!(res.status(), 200);
    let sizes = image_sizes(&res.json().await.unwrap());
    assert_eq!(sizes.len(), 4, "images are capped at 4");
    for s in sizes {
        assert!(
            (1_000_000..=CAP as usize).contains(&s),
            "{s} bytes: big is clamped to the cap"
        );
    }

    let res = post(
        &offline,
        &body("#fake:text big-other=5000000 retry-after=99999", true),
    )
    .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let blob = text
        .lines()
        .find(|l| l.contains("response.fake_blob") && l.starts_with("data: "))
        .expect("the blob event");
    assert!(blob.len() <= CAP as usize + 200, "a {} byte line", blob.len());
    assert!(text.contains("response.completed"));
    assert!(offline.requests().is_empty());
}

#[tokio::test]
async fn the_test_server_keeps_its_unbounded_knobs() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let res = post(&fake, &body("draw #fake:image big=3 images=6", false)).await;
    let sizes = image_sizes(&res.json().await.unwrap());
    assert_eq!(sizes.len(), 6);
    assert!(sizes.iter().all(|s| *s >= 3_000_000), "{sizes:?}");
    assert_eq!(fake.requests().len(), 1);
}
