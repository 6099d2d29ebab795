//! The upstream side of a turn: the client's configuration from the turn settings, the Responses request built
//! from the agent, and upstream failures mapped to the contract's codes (502 `upstream_error`, 503
//! `upstream_unavailable`, 504 `upstream_timeout`).

use crate::TurnSettings;
use crate::failure::{Code, Failure};
use agentd_agents::Agent;
use agentd_responses::{
    CreateResponse, Error, ImageGenerationTool, Input, InputContentPart, InputItem, InputMessage, Tool,
};
use std::time::Duration;

/// The client configuration for `base_url` under these settings.
pub fn client_config(
    s: &TurnSettings,
    base_url: String,
    api_key: Option<String>,
) -> agentd_responses::ClientConfig {
    let mut cfg = agentd_responses::ClientConfig::new(base_url, api_key);
    cfg.connect_timeout = Duration::from_secs(s.connect_timeout_seconds);
    cfg.idle_timeout = Duration::from_secs(s.idle_timeout_seconds);
    cfg.total_timeout = Duration::from_secs(s.total_timeout_seconds);
    cfg.max_retries = s.max_retries;
    cfg.max_event_bytes = s.max_event_mb as usize * 1024 * 1024;
    if s.large_events_at_once > 0 {
        cfg.large_events_at_once = s.large_events_at_once as usize;
    }
    cfg.user_agent = format!("agentd/{}", env!("CARGO_PKG_VERSION"));
    cfg
}

/// The request of one turn: the agent's model, instructions and effective tools, the user's text, and the
/// response the conversation continues from. `partial_images` is the agent's on streaming turns and 0 on
/// blocking ones (previews would be paid for and thrown away).
pub(crate) fn build_request(
    agent: &Agent,
    text: &str,
    images: Vec<String>,
    previous: Option<&str>,
    streaming_client: bool,
) -> CreateResponse {
    let tools = agent.image.as_ref().map(|img| {
        vec![Tool::ImageGeneration(ImageGenerationTool {
            model: Some(img.model.clone()),
            size: Some(img.size.clone()),
            quality: Some(img.quality.to_string()),
            output_format: Some(img.output_format.to_string()),
            background: Some(img.background.to_string()),
            output_compression: img.output_compression,
            partial_images: Some(if streaming_client { img.partial_images } else { 0 }),
            input_fidelity: img.input_fidelity.map(|f| f.to_string()),
            moderation: img.moderation.map(|m| m.to_string()),
            action: None,
        })]
    });
    let mut parts = vec![InputContentPart::InputText {
        text: text.to_owned(),
    }];
    parts.extend(images.into_iter().map(|url| InputContentPart::InputImage {
        image_url: Some(url),
        file_id: None,
        detail: Some("auto".into()),
    }));
    CreateResponse {
        model: agent.model.clone(),
        instructions: Some(agent.instructions.clone()),
        input: Some(Input::Items(vec![InputItem::Message(InputMessage::user(parts))])),
        previous_response_id: previous.map(str::to_owned),
        tools,
        store: Some(true),
        stream: Some(true),
        ..Default::default()
    }
}

/// Whether the upstream lost the response this conversation continues from.
pub(crate) fn is_previous_response_missing(e: &Error) -> bool {
    e.api_error().and_then(|b| b.code.as_deref()) == Some("previous_response_not_found")
}

/// An upstream failure before the stream started, as the contract's answer. Upstream codes and messages are
/// not passed on (they can quote keys, quotas or internals); they and the upstream request id go to the log.
pub(crate) fn pre_stream_error(e: &Error) -> Failure {
    let upstream_id = e.request_id().unwrap_or("-").to_owned();
    tracing::warn!(error = %e, upstream_request_id = %upstream_id, "upstream refused the turn");
    let mut t = match e {
        Error::Timeout(_) => Failure::new(
            Code::UpstreamTimeout,
            "The model API did not answer in time; retry.",
        ),
        Error::Connect(_) | Error::Transport(_) => Failure::new(
            Code::UpstreamUnavailable,
            "The model API is unreachable right now; retry shortly.",
        )
        .retry_after(5),
        Error::Api {
            status,
            retry_after,
            error,
            ..
        } => {
            let code = error
                .code
                .as_deref()
                .or(error.error_type.as_deref())
                .unwrap_or("unknown");
            match status {
                429 if code != "insufficient_quota" => Failure::new(
                    Code::UpstreamUnavailable,
                    "The model API is rate limiting this service; retry shortly.",
                )
                .retry_after(retry_after.map_or(10, |d| d.as_secs().max(1))),
                s if *s >= 500 => Failure::new(
                    Code::UpstreamUnavailable,
                    "The model API is overloaded or failing; retry shortly.",
                )
                .retry_after(5),
                401 | 403 => Failure::new(
                    Code::UpstreamError,
                    "The model API refused this service's credentials; tell the operator.",
                ),
                _ => Failure::new(
                    Code::UpstreamError,
                    "The model API refused the request; tell the operator if it persists.",
                ),
            }
        }
        _ => Failure::new(
            Code::UpstreamError,
            "The model API answered something unexpected; retry.",
        ),
    };
    t.cause = Some(format!("upstream request {upstream_id}: {e}"));
    t
}

/// An upstream failure after the stream started, as the `error` event's `{code, message, retryable}`.
pub(crate) fn mid_stream_error(e: &Error) -> Failure {
    tracing::warn!(error = %e, upstream_request_id = e.request_id().unwrap_or("-"), "upstream stream failed");
    match e {
        Error::Timeout(_) => Failure::new(
            Code::UpstreamTimeout,
            "The model API went silent for too long; retry.",
        ),
        Error::EventTooLarge { .. } => Failure::new(
            Code::UpstreamError,
            "The model API sent an event over the size limit.",
        )
        .retryable(false),
        Error::UnexpectedEof | Error::Transport(_) | Error::Connect(_) => Failure::new(
            Code::UpstreamUnavailable,
            "The model API closed the stream before the turn finished; retry.",
        ),
        _ => Failure::new(Code::UpstreamError, "The model API stream failed; retry.").retryable(true),
    }
}

/// The stream ended without a terminal event.
pub(crate) fn ended_early() -> Failure {
    Failure::new(Code::UpstreamError, "The model API stream ended early.").retryable(true)
}

/// `response.failed`: retryable when the upstream's code says the failure was on its side.
pub(crate) fn response_failed(code: Option<&str>) -> Failure {
    let retryable = matches!(code, Some("server_error" | "rate_limit_exceeded") | None);
    Failure::new(Code::UpstreamError, "The model API could not complete this turn.").retryable(retryable)
}
