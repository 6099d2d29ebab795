//! What a running turn tells its client, in order: `run.started`, then deltas and image events, then exactly one
//! terminal event (`run.completed` or `error`). Each payload is a typed value shaped as the contract's `data`;
//! the HTTP layer serializes them (adding download URLs to attachments), and the run event log stores them.

use crate::failure::{Code, Failure};
use agentd_db::{AttachmentMeta, Message};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Token usage of a turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Input tokens the model read (text, history and input images).
    pub input_tokens: u64,
    /// Output tokens of the text reply.
    pub output_tokens: u64,
    /// Image generation in this turn; absent when no image was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = ImageUsage, required = false)]
    pub image: Option<ImageUsage>,
}

/// Image generation cost of a turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageUsage {
    /// Images generated.
    pub images: u64,
    /// Image output tokens, from the published per-size-and-quality table.
    pub output_tokens: u64,
    /// Estimated cost of those tokens in US dollars.
    pub estimated_cost_usd: f64,
}

/// How a saved turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TurnStatus {
    Completed,
    /// The reply stopped early: the upstream's token limit or content filter, the reply size cap.
    Incomplete,
}

/// The outcome of a finished turn: what `POST /v1/chat` answers and `run.completed` carries. Stored for
/// idempotent replays and stream resumption (attachment URLs are minted when it is rendered, never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnResult {
    pub conversation_id: Uuid,
    pub response_id: Option<String>,
    pub model: String,
    pub status: TurnStatus,
    pub message: Message,
    pub usage: Usage,
}

/// `run.started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunStarted {
    /// The conversation this turn belongs to (new or continued).
    pub conversation_id: Uuid,
    /// The run's id: `GET /v1/runs/{run_id}/events` resumes this stream.
    pub run_id: String,
    /// The agent's key.
    pub agent: String,
    /// The model that answers.
    pub model: String,
}

/// `message.delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageDelta {
    /// The next piece of the assistant's text.
    pub delta: String,
}

/// `image.progress`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageProgress {
    /// The image call this is about (an attachment's `tool_call_id` once stored).
    pub tool_call_id: String,
    /// `in_progress` | `generating` | `completed`.
    #[schema(pattern = "^(in_progress|generating|completed)$")]
    pub status: String,
}

/// `image.partial`: a complete low-quality preview, inline. Never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImagePartial {
    /// The image call this previews.
    pub tool_call_id: String,
    /// 0, 1, 2…: a later preview replaces an earlier one.
    pub partial_image_index: u32,
    /// The preview's type, e.g. `image/png`.
    pub mime_type: String,
    /// The preview's bytes, base64 (standard alphabet).
    #[schema(value_type = String, content_encoding = "base64")]
    pub b64: agentd_responses::B64,
}

/// `attachment`: the final image, as soon as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentStored {
    pub attachment: AttachmentMeta,
}

/// `image.failed`: the image is lost, the turn goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageFailed {
    /// The image call that failed.
    pub tool_call_id: String,
    /// `moderation_blocked`, `image_failed`, `image_too_large`, `invalid_image`, `unsupported_format`,
    /// `too_many_images`, `budget_exhausted` or `storage_failed`.
    pub code: String,
    /// What happened, for a person.
    pub message: String,
}

/// `error`: the terminal event of a turn that did not complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TurnError {
    /// A code of the error table (`shutting_down` when a server shutdown cut the turn off).
    pub code: Code,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Whether sending the same request again may succeed.
    pub retryable: bool,
}

impl From<&Failure> for TurnError {
    fn from(f: &Failure) -> Self {
        Self {
            code: f.code,
            message: f.message.clone(),
            retryable: f.retryable,
        }
    }
}

/// One event of a running turn; serialized as `{"event": <name>, "data": <payload>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum TurnEvent {
    #[serde(rename = "run.started")]
    Started(RunStarted),
    #[serde(rename = "message.delta")]
    Delta(MessageDelta),
    #[serde(rename = "image.progress")]
    ImageProgress(ImageProgress),
    #[serde(rename = "image.partial")]
    ImagePartial(ImagePartial),
    #[serde(rename = "attachment")]
    Attachment(AttachmentStored),
    #[serde(rename = "image.failed")]
    ImageFailed(ImageFailed),
    #[serde(rename = "run.completed")]
    Completed(Box<TurnResult>),
    #[serde(rename = "error")]
    Failed(TurnError),
}

impl TurnEvent {
    /// The contract's event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Started(_) => "run.started",
            Self::Delta(_) => "message.delta",
            Self::ImageProgress(_) => "image.progress",
            Self::ImagePartial(_) => "image.partial",
            Self::Attachment(_) => "attachment",
            Self::ImageFailed(_) => "image.failed",
            Self::Completed(_) => "run.completed",
            Self::Failed(_) => "error",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed(_) | Self::Failed(_))
    }

    /// Previews are sent live only: dropped first for a client that lags, never kept for a resumed stream.
    pub fn is_preview(&self) -> bool {
        matches!(self, Self::ImagePartial(_))
    }

    pub(crate) fn failed(f: &Failure) -> Self {
        Self::Failed(TurnError::from(f))
    }
}

/// An event with the id the stream gives it (`id:`, from 1, +1 per event including previews).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequenced {
    pub id: u64,
    #[serde(flatten)]
    pub event: TurnEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_shape_round_trips() {
        let ev = Sequenced {
            id: 3,
            event: TurnEvent::Delta(MessageDelta { delta: "hi".into() }),
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert_eq!(text, r#"{"id":3,"event":"message.delta","data":{"delta":"hi"}}"#);
        assert_eq!(serde_json::from_str::<Sequenced>(&text).unwrap(), ev);
        let f = Failure::new(Code::ShuttingDown, "bye");
        let text = serde_json::to_string(&TurnEvent::failed(&f)).unwrap();
        assert!(
            text.contains(r#""code":"shutting_down""#) && text.contains(r#""retryable":true"#),
            "{text}"
        );
    }
}
