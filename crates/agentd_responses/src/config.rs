//! Client configuration with the defaults recommended by the wire notes (600 s total, 300 s idle gap,
//! 64 MiB per event, one stream per core buffering an event over 1 MiB at once and pausing at most 30 s in it, 2 retries honouring `retry-after` up to 120 s). `Debug` redacts the API key.

use std::fmt;
use std::time::Duration;

/// Configuration of a [`crate::ResponsesClient`].
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `https://api.openai.com/v1`; requests go to `{base_url}/responses`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`; never logged nor put in errors.
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// Longest silence between two SSE events.
    pub idle_timeout: Duration,
    /// Longest whole call (all attempts, headers and body).
    pub total_timeout: Duration,
    /// Largest single SSE event (and largest non-streamed body).
    pub max_event_bytes: usize,
    /// Streams of this client that may buffer an event over 1 MiB at once (an image); the others wait, reading
    /// nothing, until one of them has handled its event. Bounds the memory of many concurrent image turns.
    pub large_events_at_once: usize,
    /// Longest pause in the middle of an event that holds one of those slots. The API writes an event at once
    /// (its long silences fall between events), so an image that stops arriving halfway is a dead connection;
    /// without this limit it would keep its slot — and every other image turn waiting for one — for the whole
    /// `idle_timeout`.
    pub stall_timeout: Duration,
    /// Retries after the first attempt, only before a body/stream has started.
    pub max_retries: u32,
    /// A `retry-after` longer than this is not waited for: the error is returned instead.
    pub max_retry_after: Duration,
    /// Base of the exponential backoff (`base·2^n`, capped at 16×base, jitter −25 %); 500 ms by default.
    pub retry_base: Duration,
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".to_owned(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            total_timeout: Duration::from_secs(600),
            max_event_bytes: 64 * 1024 * 1024,
            large_events_at_once: one_per_core(),
            stall_timeout: Duration::from_secs(30),
            max_retries: 2,
            max_retry_after: Duration::from_secs(120),
            retry_base: Duration::from_millis(500),
            user_agent: concat!("agentd/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The default of [`ClientConfig::large_events_at_once`]: one per CPU core, at least 2 (measured on 2 cores: 4
/// slots peaked at 170–210 MB over idle for 20 concurrent 6 MB image turns, 2 at 110–130 MB, at the same
/// images per second — the work is CPU-bound, so more slots than cores only hold more images in memory).
pub fn one_per_core() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

impl ClientConfig {
    /// Default configuration for a base URL and key.
    pub fn new(base_url: impl Into<String>, api_key: Option<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            ..Self::default()
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("large_events_at_once", &self.large_events_at_once)
            .field("stall_timeout", &self.stall_timeout)
            .field("max_retries", &self.max_retries)
            .field("max_retry_after", &self.max_retry_after)
            .field("retry_base", &self.retry_base)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}
