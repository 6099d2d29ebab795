//! Hits the fake with plain reqwest and checks the wire itself: SSE framing, contiguous sequence numbers,
//! no `[DONE]`, headers, image magic bytes, usage numbers, and the 400/401/429 bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use agentd_fake_upstream::{Failure, FakeConfig, FakeUpstream, Scenario};
use base64::Engine as _;
use serde_json::{Value, json};

fn body(text: &str, tool: Value, stream: bool) -> Value {
    json!({
        "model": "gpt-5.5",
        "stream": stream,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}],
        "tools": [tool],
    })
}

fn png_tool() -> Value {
    json!({"type": "image_generation", "model": "gpt-image-2", "size": "1024x1024", "quality": "low"})
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

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Splits an SSE body into (event name, data JSON), asserting the exact two-line framing.
fn frames(text: &str) -> Vec<(String, Value)> {
    assert!(text.ends_with("\n\n"));
    text.trim_end_matches('\n')
        .split("\n\n")
        .map(|block| {
            let lines: Vec<&str> = block.split('\n').collect();
            assert_eq!(lines.len(), 2, "block: {}", &block[..block.len().min(200)]);
            let name = lines[0].strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn stream_framing_sequence_and_images() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let text = format!(
        "draw a cat {}",
        Scenario::image()
            .partials(2)
            .text_at(agentd_fake_upstream::TextPlacement::Both)
            .directive()
    );
    let resp = post(&fake, &body(&text, png_tool(), true)).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
    assert!(h.contains_key("x-ratelimit-remaining-tokens") && h.contains_key("openai-processing-ms"));
    let text = resp.text().await.unwrap();
    assert!(!text.contains("[DONE]"));
    let frames = frames(&text);
    for (i, (name, data)) in frames.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i as u64);
    }
    let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["response.created", "response.in_progress"]);
    assert_eq!(*names.last().unwrap(), "response.completed");
    let ig_added = names
        .iter()
        .position(|n| *n == "response.image_generation_call.in_progress")
        .unwrap();
    assert_eq!(names[ig_added + 1], "response.image_generation_call.generating");
    assert_eq!(
        names[ig_added + 2],
        "response.image_generation_call.partial_image"
    );
    assert_eq!(names[ig_added + 4], "response.image_generation_call.completed");
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "response.output_text.delta")
            .count(),
        8
    );

    let partial = &frames[ig_added + 2].1;
    assert!(b64(partial["partial_image_b64"].as_str().unwrap()).starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(partial["output_format"], "png");
    let done = frames
        .iter()
        .find(|(n, d)| n == "response.output_item.done" && d["item"]["type"] == "image_generation_call")
        .unwrap();
    let result = done.1["item"]["result"].as_str().unwrap();
    assert!(b64(result).starts_with(b"\x89PNG\r\n\x1a\n"));
    let completed = &frames.last().unwrap().1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][1]["result"], result);
    assert_eq!(completed["output"][1]["action"], "generate");
    assert_eq!(completed["tool_usage"]["image_gen"]["output_tokens"], 196 + 200);
    assert!(completed["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(completed["tools"][0]["output_format"], "png");
}

#[tokio::test]
async fn formats_have_the_right_magic_bytes() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    for (format, check) in [
        (
            "jpeg",
            (|b: &[u8]| b.starts_with(&[0xFF, 0xD8, 0xFF])) as fn(&[u8]) -> bool,
        ),
        ("webp", |b: &[u8]| b.starts_with(b"RIFF") && &b[8..12] == b"WEBP"),
        ("png", |b: &[u8]| b.starts_with(b"\x89PNG\r\n\x1a\n")),
    ] {
        let mut tool = png_tool();
        tool["output_format"] = json!(format);
        let resp = post(&fake, &body("draw a fox", tool, false)).await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        let result = v["output"][0]["result"].as_str().unwrap();
        assert!(check(&b64(result)), "{format}");
        assert_eq!(v["output"][0]["output_format"], format);
    }
}

#[tokio::test]
async fn no_tool_usage_and_done_marker_options() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let text = format!(
        "draw {}",
        Scenario::image().no_tool_usage().done_marker().directive()
    );
    let text = post(&fake, &body(&text, png_tool(), true))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let last = text.trim_end().rsplit("\n\n").nth(1).unwrap();
    assert!(last.starts_with("event: response.completed") && !last.contains("tool_usage"));
}

async fn error_of(fake: &FakeUpstream, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = post(fake, body).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let v: Value = resp.json().await.unwrap();
    for key in ["message", "type", "param", "code"] {
        assert!(v["error"].get(key).is_some(), "missing error.{key} in {v}");
    }
    (status, headers, v["error"].clone())
}

#[tokio::test]
async fn validation_errors_have_the_api_shape() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let tool = |extra: Value| {
        let mut t = png_tool();
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    let cases = [
        (json!({"input": "hi"}), "model"),
        (
            body("x", tool(json!({"size": "1000x1000"})), true),
            "tools[0].size",
        ),
        (
            body(
                "x",
                tool(json!({"size": "2048x2048", "model": "gpt-image-1.5"})),
                true,
            ),
            "tools[0].size",
        ),
        (
            body(
                "x",
                tool(json!({"background": "transparent", "output_format": "jpeg"})),
                true,
            ),
            "tools[0].background",
        ),
        (
            body("x", tool(json!({"input_fidelity": "high"})), true),
            "tools[0].input_fidelity",
        ),
        (
            body("x", tool(json!({"partial_images": 5})), true),
            "tools[0].partial_images",
        ),
        (
            body("x", tool(json!({"quality": "ultra"})), true),
            "tools[0].quality",
        ),
        (body("x", json!({"type": "teleport"}), true), "tools[0].type"),
    ];
    for (b, param) in cases {
        let (status, headers, err) = error_of(&fake, &b).await;
        assert_eq!(status, 400, "{param}");
        assert_eq!(err["param"], param);
        assert_eq!(err["type"], "invalid_request_error");
        assert!(headers["x-request-id"].to_str().unwrap().starts_with("req_"));
    }
    // A valid flexible size for gpt-image-2 passes.
    let resp = post(&fake, &body("x", tool(json!({"size": "2048x1152"})), false)).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn auth_rate_limit_and_previous_response_errors() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/responses", fake.base_url()))
        .json(&body("hi", png_tool(), true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");

    let text = Scenario::text()
        .fail(Failure::RateLimited)
        .retry_after(3)
        .directive();
    let (status, headers, err) = error_of(&fake, &body(&text, png_tool(), true)).await;
    assert_eq!((status, err["code"].as_str()), (429, Some("rate_limit_exceeded")));
    assert_eq!(headers["retry-after"], "3");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");

    let text = Scenario::text().fail(Failure::Quota).directive();
    let (status, _, err) = error_of(&fake, &body(&text, png_tool(), true)).await;
    assert_eq!((status, err["type"].as_str()), (429, Some("insufficient_quota")));

    let mut b = body("hi", png_tool(), true);
    b["previous_response_id"] = json!("resp_unknown");
    let (status, _, err) = error_of(&fake, &b).await;
    assert_eq!(
        (status, err["code"].as_str(), err["param"].as_str()),
        (
            400,
            Some("previous_response_not_found"),
            Some("previous_response_id")
        )
    );

    // Lenient (offline) mode accepts any previous id, reports the configured model label and keeps no record.
    let offline = FakeUpstream::start(FakeConfig::offline("agentd-offline", 6 * 1024 * 1024))
        .await
        .unwrap();
    let mut b = body("hi", png_tool(), false);
    b["previous_response_id"] = json!("resp_unknown");
    let v: Value = post(&offline, &b).await.json().await.unwrap();
    assert_eq!(v["model"], "agentd-offline");
    assert!(
        offline.requests().is_empty(),
        "the offline model keeps no request"
    );
}
