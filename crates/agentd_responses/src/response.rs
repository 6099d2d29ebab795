//! Response side of the wire: the response object, its usage blocks and output items.
//!
//! Everything is lenient: unknown fields are ignored, string enums (`status`, `code`, `size`…) are plain
//! strings, and unknown output item types are kept verbatim as [`OutputItem::Other`].

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::b64::B64;
use crate::request::Tool;

/// The response object (`object: "response"`), streamed in snapshots and returned by non-streaming calls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResponseObject {
    pub id: String,
    #[serde(default = "default_object")]
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    /// `queued | in_progress | completed | failed | incomplete | cancelled` (open set).
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub error: Option<ResponseError>,
    #[serde(default)]
    pub incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub output: Vec<OutputItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Image-model tokens live here, not in `usage`. Optional everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_usage: Option<ToolUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
}

fn default_object() -> String {
    "response".to_owned()
}

impl ResponseObject {
    /// All image generation calls of the output, in order.
    pub fn image_calls(&self) -> impl Iterator<Item = &ImageGenerationCall> {
        self.output.iter().filter_map(|item| match item {
            OutputItem::ImageGenerationCall(call) => Some(call),
            _ => None,
        })
    }

    /// The concatenated `output_text` of every assistant message.
    pub fn output_text(&self) -> String {
        let mut text = String::new();
        for item in &self.output {
            if let OutputItem::Message(m) = item {
                for part in &m.content {
                    if let MessageContent::OutputText { text: t, .. } = part {
                        text.push_str(t);
                    }
                }
            }
        }
        text
    }
}

/// `response.error` of a failed response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseError {
    /// Open set of codes (`server_error`, `rate_limit_exceeded`, `insufficient_quota`…).
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: String,
}

/// `response.incomplete_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter` (open set).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Mainline model usage (excludes image-model tokens).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_details: Option<Value>,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<Value>,
    #[serde(default)]
    pub total_tokens: u64,
}

/// `tool_usage`: per hosted tool usage; every member optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_gen: Option<ImageGenUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search: Option<Value>,
}

/// `tool_usage.image_gen`: sums over all image calls of the response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageGenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_details: Option<TokenSplit>,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<TokenSplit>,
    #[serde(default)]
    pub total_tokens: u64,
}

/// Text/image split of a token count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenSplit {
    #[serde(default)]
    pub text_tokens: u64,
    #[serde(default)]
    pub image_tokens: u64,
}

/// One item of `output[]`.
///
/// Deserialize it with `serde_json::from_str`/`from_slice` (it borrows the raw text); it cannot be read from a
/// `serde_json::Value` or a reader.
#[derive(Debug, Clone)]
pub enum OutputItem {
    Message(MessageItem),
    ImageGenerationCall(ImageGenerationCall),
    Reasoning(ReasoningItem),
    /// Any other item type, kept verbatim (including its `type`).
    Other {
        kind: String,
        raw: Box<RawValue>,
    },
}

impl OutputItem {
    /// The wire `type` of the item.
    pub fn kind(&self) -> &str {
        match self {
            Self::Message(_) => "message",
            Self::ImageGenerationCall(_) => "image_generation_call",
            Self::Reasoning(_) => "reasoning",
            Self::Other { kind, .. } => kind,
        }
    }

    /// The item id, when it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Message(m) => m.id.as_deref(),
            Self::ImageGenerationCall(c) => Some(&c.id),
            Self::Reasoning(r) => Some(&r.id),
            Self::Other { .. } => None,
        }
    }
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    inner: &'a T,
}

impl Serialize for OutputItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = self.kind();
        match self {
            Self::Message(m) => Tagged { kind, inner: m }.serialize(s),
            Self::ImageGenerationCall(c) => Tagged { kind, inner: c }.serialize(s),
            Self::Reasoning(r) => Tagged { kind, inner: r }.serialize(s),
            Self::Other { raw, .. } => raw.serialize(s),
        }
    }
}

#[derive(Deserialize)]
struct KindPeek<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for OutputItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed: an image item is megabytes of base64, and a copy of it here would be pure waste.
        let raw = <&'de RawValue>::deserialize(d)?;
        let text: &'de str = raw.get();
        let peek: KindPeek<'_> = serde_json::from_str(text).map_err(D::Error::custom)?;
        let kind = peek.kind.map(|k| k.into_owned()).unwrap_or_default();
        let item = match kind.as_str() {
            "message" => Self::Message(serde_json::from_str(text).map_err(D::Error::custom)?),
            "image_generation_call" => {
                Self::ImageGenerationCall(serde_json::from_str(text).map_err(D::Error::custom)?)
            }
            "reasoning" => Self::Reasoning(serde_json::from_str(text).map_err(D::Error::custom)?),
            _ => Self::Other {
                kind,
                raw: RawValue::from_string(crate::b64::restore(text)).map_err(D::Error::custom)?,
            },
        };
        Ok(item)
    }
}

/// An assistant (or other role) message item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: Vec<MessageContent>,
    /// `final_answer` or `commentary` on newer models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A content part of an output message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MessageContent {
    #[serde(rename = "output_text")]
    OutputText {
        #[serde(default)]
        text: String,
        #[serde(default)]
        annotations: Vec<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logprobs: Option<Vec<Value>>,
    },
    #[serde(rename = "refusal")]
    Refusal {
        #[serde(default)]
        refusal: String,
    },
    /// Any other part, kept verbatim.
    #[serde(untagged)]
    Other(Value),
}

/// A reasoning item; the relay only needs to keep it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasoningItem {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub summary: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
}

/// An `image_generation_call` item. `result` is raw base64 (no `data:` prefix).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageGenerationCall {
    pub id: String,
    /// `in_progress | generating | completed | failed` — do not trust it for "done", see [`Self::is_done`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
    /// Moderation and other failures: `{type, code, message, param, moderation_details}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// The image, in the memory of the event it arrived in (see [`B64`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<B64>,
}

impl ImageGenerationCall {
    /// Done means "carries a non-empty result", whatever `status` says (`generating` with a full result
    /// happens in completed responses).
    pub fn is_done(&self) -> bool {
        self.result.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// `true` when the call failed (status `failed` or an `error`) and has no result.
    pub fn is_failed(&self) -> bool {
        !self.is_done() && (self.status.as_deref() == Some("failed") || self.error.is_some())
    }

    /// The `code` of the call's error, e.g. `moderation_blocked`.
    pub fn error_code(&self) -> Option<&str> {
        self.error.as_ref()?.get("code")?.as_str()
    }
}
