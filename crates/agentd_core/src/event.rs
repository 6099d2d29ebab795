//! What a running turn tells its client, in order: `Started`, then deltas and image events, then exactly one
//! terminal event (`Completed` or `Failed`).

use agentd_db::{AttachmentMeta, Message};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Token usage of a turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageUsage>,
}

/// Image generation cost of a turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageUsage {
    pub images: u64,
    pub output_tokens: u64,
    pub estimated_cost_usd: f64,
}

/// The outcome of a finished turn: what `POST /v1/chat` answers and `run.completed` carries. Stored for
/// idempotent replays (attachment URLs are minted when it is rendered, never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnResult {
    pub conversation_id: Uuid,
    pub response_id: Option<String>,
    pub model: String,
    /// `completed`, or `incomplete` when the upstream stopped early (token limit, content filter).
    pub status: String,
    pub message: Message,
    pub usage: Usage,
}

/// One event of a running turn.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    Started {
        conversation_id: Uuid,
        run_id: String,
        agent: String,
        model: String,
    },
    Delta {
        delta: String,
    },
    ImageProgress {
        tool_call_id: String,
        status: &'static str,
    },
    ImagePartial {
        tool_call_id: String,
        partial_image_index: u32,
        mime_type: &'static str,
        b64: String,
    },
    Attachment(AttachmentMeta),
    ImageFailed {
        tool_call_id: String,
        code: String,
        message: String,
    },
    Completed(Box<TurnResult>),
    Failed {
        code: &'static str,
        message: String,
        retryable: bool,
    },
}

impl TurnEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(self, TurnEvent::Completed(_) | TurnEvent::Failed { .. })
    }
}
