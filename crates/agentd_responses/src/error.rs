//! The client's error type: what went wrong talking to the upstream, with the upstream status, error body,
//! `x-request-id` and `retry-after` when there was an HTTP answer. Never contains the API key.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which deadline fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// TCP/TLS connect took longer than `connect_timeout`.
    Connect,
    /// No SSE event for longer than `idle_timeout`.
    Idle,
    /// The whole call took longer than `total_timeout`.
    Total,
    /// An event over 1 MiB (an image) stopped arriving for longer than `stall_timeout` while it held a slot of
    /// the large-event gate.
    Stalled,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Idle => "idle",
            Self::Total => "total",
            Self::Stalled => "stalled mid-event",
        })
    }
}

/// The `error` member of an upstream error body (`{"error":{message,type,param,code}}`). When the body was
/// not JSON, `message` holds a short excerpt of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "type", default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
}

impl ApiErrorBody {
    /// Parses an upstream error body; non-JSON bodies become a message of at most 512 characters.
    pub fn from_body(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Wrapper {
            error: ApiErrorBody,
        }
        if let Ok(w) = serde_json::from_slice::<Wrapper>(body) {
            return w.error;
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let short: String = text.chars().take(512).collect();
        Self {
            message: short,
            ..Self::default()
        }
    }

    /// `true` for the 429 that means "out of credit" (never retried).
    pub fn is_insufficient_quota(&self) -> bool {
        self.error_type.as_deref() == Some("insufficient_quota")
            || self.code.as_deref() == Some("insufficient_quota")
    }
}

/// Everything the client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upstream answered with a non-success status before any stream started.
    #[error("upstream answered HTTP {status}: {}", error.message)]
    Api {
        status: u16,
        error: Box<ApiErrorBody>,
        request_id: Option<String>,
        retry_after: Option<Duration>,
    },
    /// Could not reach the upstream (DNS, TCP, TLS) or the request failed before response headers.
    #[error("could not reach upstream: {0}")]
    Connect(String),
    /// A deadline fired.
    #[error("upstream timed out ({0})")]
    Timeout(TimeoutKind),
    /// One SSE event (or a non-streamed body) exceeded the configured maximum.
    #[error("upstream event exceeds the limit of {limit} bytes")]
    EventTooLarge { limit: usize },
    /// The stream ended without `response.completed` / `failed` / `incomplete`.
    #[error("upstream stream ended before a terminal event")]
    UnexpectedEof,
    /// The connection broke while reading the body (after headers).
    #[error("upstream body read failed: {0}")]
    Transport(String),
    /// A payload could not be decoded.
    #[error("could not decode upstream payload: {0}")]
    Decode(String),
    /// A 200 whose content type is not the expected one (`text/event-stream` for streams).
    #[error("upstream answered with unexpected content-type {0:?}")]
    InvalidContentType(String),
    /// The client could not be built (bad TLS setup, invalid header value…).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Upstream `x-request-id`, when the upstream answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Upstream error body of an [`Error::Api`].
    pub fn api_error(&self) -> Option<&ApiErrorBody> {
        match self {
            Self::Api { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }

    /// Whether a fresh attempt could succeed (only meaningful before a stream has started):
    /// 408, 409, 429 (except `insufficient_quota`), 5xx, connection failures and connect timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, error, .. } => match *status {
                408 | 409 => true,
                429 => !error.is_insufficient_quota(),
                s => s >= 500,
            },
            Self::Connect(_) | Self::Timeout(TimeoutKind::Connect) => true,
            _ => false,
        }
    }
}
