//! One failure type for everything a turn can answer instead of a result: refused before it ran (answered as an
//! HTTP error) or ended early (the stream's `error` event). It carries the contract's code, a message that says
//! what to do, whether a retry may help, and — logged, never answered — the cause. HTTP statuses are mapped in
//! `agentd_http`, nowhere else.

use serde::{Deserialize, Serialize};

/// The contract's error codes (`api-v1.md`, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ErrorCode)]
pub enum Code {
    InvalidRequest,
    PayloadTooLarge,
    AgentNotFound,
    ConversationNotFound,
    AttachmentNotFound,
    RunNotFound,
    ConversationBusy,
    RequestInProgress,
    IdempotencyKeyReused,
    UnsupportedForAgent,
    RateLimited,
    BudgetExhausted,
    UpstreamError,
    UpstreamUnavailable,
    UpstreamTimeout,
    Unavailable,
    ShuttingDown,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::AgentNotFound => "agent_not_found",
            Self::ConversationNotFound => "conversation_not_found",
            Self::AttachmentNotFound => "attachment_not_found",
            Self::RunNotFound => "run_not_found",
            Self::ConversationBusy => "conversation_busy",
            Self::RequestInProgress => "request_in_progress",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::UnsupportedForAgent => "unsupported_for_agent",
            Self::RateLimited => "rate_limited",
            Self::BudgetExhausted => "budget_exhausted",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Unavailable => "unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Internal => "internal",
        }
    }

    /// Whether the same request may succeed later, unless a failure says otherwise.
    fn retryable(self) -> bool {
        matches!(
            self,
            Self::ConversationBusy
                | Self::RequestInProgress
                | Self::RateLimited
                | Self::UpstreamUnavailable
                | Self::UpstreamTimeout
                | Self::Unavailable
                | Self::ShuttingDown
                | Self::Internal
        )
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A turn that did not (or not fully) happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    pub code: Code,
    /// For the client: what went wrong and what to do.
    pub message: String,
    pub retryable: bool,
    /// Seconds for `retry-after`.
    pub retry_after: Option<u64>,
    /// For the log only.
    pub cause: Option<String>,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: code.retryable(),
            retry_after: None,
            cause: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidRequest, message)
    }

    /// 500 `internal`: the cause is logged, never answered.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(Code::Internal, "Something went wrong on our side.").caused_by(cause)
    }

    /// 503 `unavailable` for a dependency that is down.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        Self::new(
            Code::Unavailable,
            format!("The {what} is unavailable right now; retry shortly."),
        )
        .retry_after(2)
        .caused_by(cause)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    pub fn caused_by(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }
}

impl From<agentd_db::DbError> for Failure {
    fn from(e: agentd_db::DbError) -> Self {
        match e {
            agentd_db::DbError::Unavailable(_) => Failure::unavailable("database", e),
            other => Failure::internal(other),
        }
    }
}
