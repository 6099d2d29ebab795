//! Pre-stream failures, retry policy and the non-streaming call, against the real-HTTP fake upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use agentd_fake_upstream::{Failure, Scenario};
use agentd_responses::{ClientConfig, Error, ImageGenerationTool, ResponsesClient, Tool};
use common::*;

async fn stream_err(client: &ResponsesClient, text: &str) -> Error {
    client.stream(&request(text)).await.unwrap_err()
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    for failure in [
        Failure::Unauthorized,
        Failure::Forbidden,
        Failure::Quota,
        Failure::ConversationLocked,
    ] {
        let fake = fake().await;
        let err = stream_err(&client(&fake), &Scenario::text().fail(failure).directive()).await;
        assert_eq!(fake.requests().len(), 1, "{failure:?}");
        assert!(!err.is_retryable());
        assert!(err.request_id().unwrap().starts_with("req_"));
    }
}

#[tokio::test]
async fn missing_key_and_bad_params_are_not_retried() {
    let fake = fake().await;
    let client = ResponsesClient::new(ClientConfig {
        api_key: None,
        ..config(&fake)
    })
    .unwrap();
    let err = stream_err(&client, "hi").await;
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.api_error().unwrap().code.as_deref(), Some("invalid_api_key"));
    assert_eq!(fake.requests().len(), 1);

    let fake = common::fake().await;
    let mut req = request("hi");
    req.tools = Some(vec![Tool::ImageGeneration(ImageGenerationTool {
        model: Some("gpt-image-2".into()),
        size: Some("1000x1000".into()),
        ..Default::default()
    })]);
    let err = common::client(&fake).stream(&req).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.api_error().unwrap().param.as_deref(), Some("tools[0].size"));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn retryable_statuses_are_retried_twice_then_fail() {
    for (failure, status) in [
        (Failure::RateLimited, 429),
        (Failure::Server, 500),
        (Failure::Unavailable, 503),
    ] {
        let fake = fake().await;
        let err = stream_err(&client(&fake), &Scenario::text().fail(failure).directive()).await;
        assert_eq!(fake.requests().len(), 3, "{failure:?}");
        assert_eq!(err.status(), Some(status));
        assert!(err.is_retryable());
        if status == 429 {
            let Error::Api { retry_after, .. } = &err else {
                panic!("not an api error")
            };
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
        }
    }
}

#[tokio::test]
async fn retry_after_above_maximum_is_not_waited_for() {
    let fake = fake().await;
    let client = ResponsesClient::new(ClientConfig {
        max_retry_after: Duration::from_secs(2),
        ..config(&fake)
    })
    .unwrap();
    let err = stream_err(
        &client,
        &Scenario::text()
            .fail(Failure::RateLimited)
            .retry_after(30)
            .directive(),
    )
    .await;
    assert_eq!(err.status(), Some(429));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn transient_failures_then_success() {
    let fake = fake().await;
    let client = client(&fake);
    let sc = Scenario::text().fail(Failure::Unavailable).times(2);
    let items = collect(&client, &request(&sc.directive())).await;
    assert!(items.last().unwrap().as_ref().unwrap().is_terminal());
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn connection_refused_is_a_retryable_connect_error() {
    let fake = fake().await;
    let base = fake.base_url();
    fake.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = ResponsesClient::new(ClientConfig {
        retry_base: Duration::from_millis(1),
        ..ClientConfig::new(base, Some("k".into()))
    })
    .unwrap();
    let err = client.stream(&request("hi")).await.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(!err.to_string().contains("sk-"));
}

#[tokio::test]
async fn non_streaming_create() {
    let fake = fake().await;
    let done = client(&fake)
        .create(&request("please draw a lighthouse"))
        .await
        .unwrap();
    assert!(done.request_id.as_deref().unwrap().starts_with("req_"));
    assert_eq!(done.response.status, "completed");
    assert_eq!(done.response.model, "gpt-5.5");
    let call = done.response.image_calls().next().unwrap();
    assert!(decode(&call.result.as_ref().unwrap().as_str()).starts_with(PNG_MAGIC));
    assert_eq!(fake.requests()[0].body["stream"], false);

    // An edit of that response: different image, action "edit".
    let mut edit = request("make the picture red");
    edit.previous_response_id = Some(done.response.id.clone());
    let edited = client(&fake).create(&edit).await.unwrap();
    let call2 = edited.response.image_calls().next().unwrap();
    assert_eq!(call2.action.as_deref(), Some("edit"));
    assert_ne!(call2.result, call.result);

    // Unknown previous id: 400 previous_response_not_found, not retried.
    let mut bad = request("again");
    bad.previous_response_id = Some("resp_nope".into());
    let err = client(&fake).create(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(
        err.api_error().unwrap().code.as_deref(),
        Some("previous_response_not_found")
    );
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn debug_redacts_api_key() {
    let cfg = ClientConfig::new("http://x/v1", Some("sk-very-secret".into()));
    let text = format!("{cfg:?}");
    assert!(!text.contains("sk-very-secret") && text.contains("redacted"));
}
