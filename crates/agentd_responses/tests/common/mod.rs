//! Shared helpers for the client tests: a fake upstream, a fast-retry client and request builders.

#![allow(dead_code)]

use std::time::Duration;

use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use agentd_responses::{
    ClientConfig, CreateResponse, Error, ImageGenerationTool, Input, InputContentPart, InputItem,
    InputMessage, ResponsesClient, StreamEvent, Tool,
};
use base64::Engine as _;
use futures_util::StreamExt;

pub async fn fake() -> FakeUpstream {
    FakeUpstream::start(FakeConfig::default()).await.unwrap()
}

pub fn config(fake: &FakeUpstream) -> ClientConfig {
    ClientConfig {
        retry_base: Duration::from_millis(10),
        ..ClientConfig::new(fake.base_url(), Some("sk-test-secret".to_owned()))
    }
}

pub fn client(fake: &FakeUpstream) -> ResponsesClient {
    ResponsesClient::new(config(fake)).unwrap()
}

pub fn request(text: &str) -> CreateResponse {
    CreateResponse {
        model: "gpt-5.5".to_owned(),
        input: Some(Input::Items(vec![InputItem::Message(InputMessage::user(vec![
            InputContentPart::InputText {
                text: text.to_owned(),
            },
        ]))])),
        tools: Some(vec![Tool::ImageGeneration(ImageGenerationTool {
            model: Some("gpt-image-2".to_owned()),
            size: Some("1024x1024".to_owned()),
            quality: Some("low".to_owned()),
            output_format: Some("png".to_owned()),
            ..Default::default()
        })]),
        ..Default::default()
    }
}

/// Every item of a stream, until it ends.
pub async fn collect(client: &ResponsesClient, req: &CreateResponse) -> Vec<Result<StreamEvent, Error>> {
    let mut stream = client.stream(req).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item);
    }
    out
}

pub fn decode(b64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

pub const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
