//! Request side of the wire: the `POST /v1/responses` body (`CreateResponse`), its input items and tools.
//!
//! Every optional field is skipped when `None`, so what we send is exactly what the caller set. Unknown
//! input parts and tools survive a round trip through the `Raw` escape hatches.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Body of `POST /v1/responses`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateResponse {
    /// Mainline model that calls the tools (not the image model).
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// Server-side conversation (id string or `{id}`); mutually exclusive with `previous_response_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `"auto"`, `"none"`, `"required"` or an object such as `{"type":"image_generation"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
}

impl CreateResponse {
    /// The text of the last user message (joined `input_text` parts), or the whole input when it is a string.
    pub fn last_user_text(&self) -> Option<String> {
        match self.input.as_ref()? {
            Input::Text(text) => Some(text.clone()),
            Input::Items(items) => items.iter().rev().find_map(|item| match item {
                InputItem::Message(m) if m.role == "user" => Some(m.content.text()),
                _ => None,
            }),
        }
    }

    /// The `image_generation` tool, if one is configured.
    pub fn image_tool(&self) -> Option<&ImageGenerationTool> {
        self.tools.as_ref()?.iter().find_map(|t| match t {
            Tool::ImageGeneration(t) => Some(t),
            Tool::Raw(_) => None,
        })
    }
}

/// `input`: a plain string or a list of items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<InputItem>),
}

/// One input item: a message, or anything else kept verbatim (item references, image call references…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputItem {
    Message(InputMessage),
    Raw(Value),
}

/// `{"type":"message"?, "role", "content"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    /// `Some("message")` when the explicit form is wanted.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `user`, `assistant`, `system` or `developer`.
    pub role: String,
    pub content: InputContent,
}

impl InputMessage {
    /// A user message made of parts.
    pub fn user(parts: Vec<InputContentPart>) -> Self {
        Self {
            kind: None,
            role: "user".to_owned(),
            content: InputContent::Parts(parts),
        }
    }
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputContent {
    Text(String),
    Parts(Vec<InputContentPart>),
}

impl InputContent {
    /// All text of the content, text parts joined with a newline.
    pub fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    InputContentPart::InputText { text } | InputContentPart::OutputText { text, .. } => {
                        Some(text.as_str())
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// A content part of an input message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InputContentPart {
    #[serde(rename = "input_text")]
    InputText { text: String },
    /// `image_url` is an https URL or a `data:<mime>;base64,…` URL; or `file_id`.
    #[serde(rename = "input_image")]
    InputImage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Prior assistant text sent back as history.
    #[serde(rename = "output_text")]
    OutputText {
        text: String,
        #[serde(default)]
        annotations: Vec<Value>,
    },
    /// Any other part, kept verbatim.
    #[serde(untagged)]
    Raw(Value),
}

/// A tool in `tools[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Tool {
    #[serde(rename = "image_generation")]
    ImageGeneration(ImageGenerationTool),
    /// Any other tool (function, web_search…), kept verbatim including its `type`.
    #[serde(untagged)]
    Raw(Value),
}

/// The hosted `image_generation` tool. Every parameter is optional and skipped when `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageGenerationTool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_compression: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_images: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fidelity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}
