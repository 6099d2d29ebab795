//! OpenAI Responses API client that knows nothing of the rest of agentd.
//!
//! - [`request`], [`response`], [`events`]: lenient serde wire types shared with the fake upstream
//!   (unknown fields ignored, unknown output items and event types kept verbatim, never an error).
//! - [`ResponsesClient`]: reqwest + `sse-stream` (linear SSE parser) behind a framer that cuts the body into
//!   blocks first (`frame`: large image events parsed off the async workers, their images left in the reads
//!   they came in), idle/total deadlines, a per-event size cap, and bounded retries that happen only before
//!   any body has been read.
//! - [`metrics`]: request latency by status and retries, as generic `agentd_upstream_*` metrics.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agentd_responses::Error> {
//! use agentd_responses::{ClientConfig, CreateResponse, Input, ResponsesClient, StreamEvent};
//! use futures_util::StreamExt;
//! let client = ResponsesClient::new(ClientConfig::new("https://api.openai.com/v1", Some("sk-…".into())))?;
//! let req = CreateResponse { model: "gpt-5.5".into(), input: Some(Input::Text("hi".into())), ..Default::default() };
//! let mut events = client.stream(&req).await?;
//! while let Some(ev) = events.next().await {
//!     if let StreamEvent::OutputTextDelta(d) = ev? { let _ = d.delta; }
//! }
//! # Ok(()) }
//! ```

pub mod b64;
pub mod client;
pub mod config;
mod elide;
pub mod error;
pub mod events;
mod frame;
pub mod metrics;
pub mod pricing;
pub mod request;
pub mod response;
mod rope;
pub mod stream;
mod stream_error;

pub use b64::B64;
pub use client::{Completed, ResponsesClient};
pub use config::ClientConfig;
pub use error::{ApiErrorBody, Error, TimeoutKind};
pub use events::{
    ImageGenCallEvent, OutputItemEvent, OutputTextDeltaEvent, OutputTextDoneEvent, PartialImageEvent,
    ResponseEvent, StreamError, StreamEvent,
};
pub use request::{
    CreateResponse, ImageGenerationTool, Input, InputContent, InputContentPart, InputItem, InputMessage, Tool,
};
pub use response::{
    ImageGenUsage, ImageGenerationCall, IncompleteDetails, MessageContent, MessageItem, OutputItem,
    ReasoningItem, ResponseError, ResponseObject, TokenSplit, ToolUsage, Usage,
};
pub use stream::EventStream;
