//! Streaming events: the [`StreamEvent`] enum, its payload structs, the two-step parse (peek the `type`
//! envelope, then deserialize only the matching variant) and serialization back to one-line wire JSON.
//!
//! Unknown event types never fail: they become [`StreamEvent::Other`] with the raw JSON kept verbatim.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::b64::B64;
use crate::response::{OutputItem, ResponseObject};
pub use crate::stream_error::StreamError;

/// A parsed Responses stream event.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// `response.created`
    Created(ResponseEvent),
    /// `response.in_progress`
    InProgress(ResponseEvent),
    /// `response.output_item.added`
    OutputItemAdded(OutputItemEvent),
    /// `response.output_item.done` (an image call here carries the full `result`)
    OutputItemDone(OutputItemEvent),
    /// `response.image_generation_call.in_progress`
    ImageGenCallInProgress(ImageGenCallEvent),
    /// `response.image_generation_call.generating`
    ImageGenCallGenerating(ImageGenCallEvent),
    /// `response.image_generation_call.completed` (no image data)
    ImageGenCallCompleted(ImageGenCallEvent),
    /// `response.image_generation_call.partial_image` (a complete lower-quality image, not a delta)
    PartialImage(PartialImageEvent),
    /// `response.output_text.delta`
    OutputTextDelta(OutputTextDeltaEvent),
    /// `response.output_text.done`
    OutputTextDone(OutputTextDoneEvent),
    /// `response.completed` (terminal)
    Completed(ResponseEvent),
    /// `response.failed` (terminal)
    Failed(ResponseEvent),
    /// `response.incomplete` (terminal)
    Incomplete(ResponseEvent),
    /// `error` (nested or flat shape); usually followed by `response.failed`.
    Error(StreamError),
    /// Any other event type, kept verbatim.
    Other { kind: String, raw: Box<RawValue> },
}

/// Payload of the events that carry a response snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResponseEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    pub response: ResponseObject,
}

/// Payload of `response.output_item.added` / `.done`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputItemEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    #[serde(default)]
    pub output_index: u32,
    pub item: OutputItem,
}

/// Payload of `response.image_generation_call.{in_progress,generating,completed}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageGenCallEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub item_id: String,
}

/// Payload of `response.image_generation_call.partial_image`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialImageEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub item_id: String,
    /// 0-based.
    #[serde(default)]
    pub partial_image_index: u32,
    pub partial_image_b64: B64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
}

/// Payload of `response.output_text.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputTextDeltaEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub content_index: u32,
    #[serde(default)]
    pub delta: String,
}

/// Payload of `response.output_text.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputTextDoneEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub content_index: u32,
    #[serde(default)]
    pub text: String,
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    inner: &'a T,
}

impl Serialize for StreamEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = self.event_type();
        match self {
            Self::Created(e)
            | Self::InProgress(e)
            | Self::Completed(e)
            | Self::Failed(e)
            | Self::Incomplete(e) => Tagged { kind, inner: e }.serialize(s),
            Self::OutputItemAdded(e) | Self::OutputItemDone(e) => Tagged { kind, inner: e }.serialize(s),
            Self::ImageGenCallInProgress(e)
            | Self::ImageGenCallGenerating(e)
            | Self::ImageGenCallCompleted(e) => Tagged { kind, inner: e }.serialize(s),
            Self::PartialImage(e) => Tagged { kind, inner: e }.serialize(s),
            Self::OutputTextDelta(e) => Tagged { kind, inner: e }.serialize(s),
            Self::OutputTextDone(e) => Tagged { kind, inner: e }.serialize(s),
            Self::Error(e) => e.serialize_event(s),
            Self::Other { raw, .. } => raw.serialize(s),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

impl StreamEvent {
    /// Parses one SSE `data` payload held in `data`; image base64 in it becomes slices of `data` (no copies).
    pub fn parse_bytes(data: &bytestring::ByteString) -> Result<Self, serde_json::Error> {
        crate::b64::with_source(data, Self::parse)
    }

    /// [`Self::parse_bytes`] without cutting the image strings out first: for data the rope path could not
    /// cut (`stream.rs`), which a second scan would not cut either.
    pub(crate) fn parse_whole(data: &bytestring::ByteString) -> Result<Self, serde_json::Error> {
        crate::b64::with_whole_source(data, Self::parse)
    }

    /// [`Self::parse`] over data held in the reads it arrived in, its image strings ropes over them; `None`
    /// when no image string is cut out or the parse fails (the caller then joins the data and parses that).
    pub(crate) fn parse_rope(data: &crate::rope::Rope) -> Option<Self> {
        crate::b64::with_rope(data, Self::parse)
    }

    /// Parses one SSE `data` payload. Unknown types become [`StreamEvent::Other`]; a known type whose body
    /// does not match its shape is a decode error.
    pub fn parse(data: &str) -> Result<Self, serde_json::Error> {
        let env: Envelope<'_> = serde_json::from_str(data)?;
        let kind = env.kind.unwrap_or_default();
        let ev = match kind.as_ref() {
            "response.created" => Self::Created(serde_json::from_str(data)?),
            "response.in_progress" => Self::InProgress(serde_json::from_str(data)?),
            "response.output_item.added" => Self::OutputItemAdded(serde_json::from_str(data)?),
            "response.output_item.done" => Self::OutputItemDone(serde_json::from_str(data)?),
            "response.image_generation_call.in_progress" => {
                Self::ImageGenCallInProgress(serde_json::from_str(data)?)
            }
            "response.image_generation_call.generating" => {
                Self::ImageGenCallGenerating(serde_json::from_str(data)?)
            }
            "response.image_generation_call.completed" => {
                Self::ImageGenCallCompleted(serde_json::from_str(data)?)
            }
            "response.image_generation_call.partial_image" => Self::PartialImage(serde_json::from_str(data)?),
            "response.output_text.delta" => Self::OutputTextDelta(serde_json::from_str(data)?),
            "response.output_text.done" => Self::OutputTextDone(serde_json::from_str(data)?),
            "response.completed" => Self::Completed(serde_json::from_str(data)?),
            "response.failed" => Self::Failed(serde_json::from_str(data)?),
            "response.incomplete" => Self::Incomplete(serde_json::from_str(data)?),
            "error" => Self::Error(StreamError::parse(data)?),
            other => Self::Other {
                kind: other.to_owned(),
                raw: RawValue::from_string(crate::b64::restore(data))?,
            },
        };
        Ok(ev)
    }

    /// The wire `type` of the event.
    pub fn event_type(&self) -> &str {
        match self {
            Self::Created(_) => "response.created",
            Self::InProgress(_) => "response.in_progress",
            Self::OutputItemAdded(_) => "response.output_item.added",
            Self::OutputItemDone(_) => "response.output_item.done",
            Self::ImageGenCallInProgress(_) => "response.image_generation_call.in_progress",
            Self::ImageGenCallGenerating(_) => "response.image_generation_call.generating",
            Self::ImageGenCallCompleted(_) => "response.image_generation_call.completed",
            Self::PartialImage(_) => "response.image_generation_call.partial_image",
            Self::OutputTextDelta(_) => "response.output_text.delta",
            Self::OutputTextDone(_) => "response.output_text.done",
            Self::Completed(_) => "response.completed",
            Self::Failed(_) => "response.failed",
            Self::Incomplete(_) => "response.incomplete",
            Self::Error(_) => "error",
            Self::Other { kind, .. } => kind,
        }
    }

    /// `sequence_number` when the event carried one (for `Other`, read from the raw JSON).
    pub fn sequence_number(&self) -> Option<u64> {
        match self {
            Self::Created(e)
            | Self::InProgress(e)
            | Self::Completed(e)
            | Self::Failed(e)
            | Self::Incomplete(e) => e.sequence_number,
            Self::OutputItemAdded(e) | Self::OutputItemDone(e) => e.sequence_number,
            Self::ImageGenCallInProgress(e)
            | Self::ImageGenCallGenerating(e)
            | Self::ImageGenCallCompleted(e) => e.sequence_number,
            Self::PartialImage(e) => e.sequence_number,
            Self::OutputTextDelta(e) => e.sequence_number,
            Self::OutputTextDone(e) => e.sequence_number,
            Self::Error(e) => e.sequence_number,
            Self::Other { raw, .. } => {
                #[derive(Deserialize)]
                struct Seq {
                    sequence_number: Option<u64>,
                }
                serde_json::from_str::<Seq>(raw.get()).ok()?.sequence_number
            }
        }
    }

    /// Sets `sequence_number` on typed events (used by emitters such as the fake upstream). For `Other` the
    /// raw JSON is rewritten, which costs a re-parse.
    pub fn set_sequence_number(&mut self, n: u64) {
        let slot = match self {
            Self::Created(e)
            | Self::InProgress(e)
            | Self::Completed(e)
            | Self::Failed(e)
            | Self::Incomplete(e) => &mut e.sequence_number,
            Self::OutputItemAdded(e) | Self::OutputItemDone(e) => &mut e.sequence_number,
            Self::ImageGenCallInProgress(e)
            | Self::ImageGenCallGenerating(e)
            | Self::ImageGenCallCompleted(e) => &mut e.sequence_number,
            Self::PartialImage(e) => &mut e.sequence_number,
            Self::OutputTextDelta(e) => &mut e.sequence_number,
            Self::OutputTextDone(e) => &mut e.sequence_number,
            Self::Error(e) => &mut e.sequence_number,
            Self::Other { raw, .. } => {
                if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(raw.get()) {
                    map.insert("sequence_number".to_owned(), n.into());
                    if let Ok(text) = serde_json::to_string(&map)
                        && let Ok(new_raw) = RawValue::from_string(text)
                    {
                        *raw = new_raw;
                    }
                }
                return;
            }
        };
        *slot = Some(n);
    }

    /// `true` for `response.completed`, `response.failed` and `response.incomplete`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed(_) | Self::Failed(_) | Self::Incomplete(_))
    }

    /// The response snapshot carried by created/in_progress/terminal events.
    pub fn response(&self) -> Option<&ResponseObject> {
        match self {
            Self::Created(e)
            | Self::InProgress(e)
            | Self::Completed(e)
            | Self::Failed(e)
            | Self::Incomplete(e) => Some(&e.response),
            _ => None,
        }
    }

    /// Serializes to the compact one-line JSON used as the SSE `data` field.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
