//! The error envelope of `api-v1.md`: `{"error": {"code", "message", "details"}}`. A 5xx is logged exactly once,
//! with its cause, and answers only a generic message plus the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// For 5xx: the cause, logged and never sent.
    internal: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            internal: None,
            retry_after: None,
        }
    }

    /// Adds `details` (a typed value; it must serialize to a JSON object).
    pub fn with_details(mut self, details: impl Serialize) -> Self {
        self.details = serde_json::to_value(details).ok();
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A 500 whose cause is logged, never answered.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side.",
        );
        e.internal = Some(cause.to_string());
        e
    }

    /// A 5xx with a given status and code whose cause is logged, never answered.
    pub fn internal_with(status: StatusCode, code: &'static str, message: String, cause: String) -> Self {
        let mut e = Self::new(status, code, message);
        e.internal = Some(cause);
        e
    }

    /// A 503 for a dependency that is down; the cause is logged, never answered.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("The {what} is unavailable right now; retry shortly."),
        );
        e.internal = Some(cause.to_string());
        e.retry_after = Some(2);
        e
    }
}

/// The HTTP status of each of the contract's codes: the only place they are mapped.
pub fn status_of(code: agentd_core::Code) -> StatusCode {
    use agentd_core::Code as C;
    match code {
        C::InvalidRequest => StatusCode::BAD_REQUEST,
        C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::AgentNotFound | C::ConversationNotFound | C::AttachmentNotFound | C::RunNotFound => {
            StatusCode::NOT_FOUND
        }
        C::ConversationBusy | C::RequestInProgress => StatusCode::CONFLICT,
        C::IdempotencyKeyReused | C::UnsupportedForAgent => StatusCode::UNPROCESSABLE_ENTITY,
        C::RateLimited | C::BudgetExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::UpstreamError => StatusCode::BAD_GATEWAY,
        C::UpstreamUnavailable | C::Unavailable | C::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        C::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<agentd_core::Failure> for ApiError {
    fn from(f: agentd_core::Failure) -> Self {
        let status = status_of(f.code);
        let mut e = Self::new(status, f.code.as_str(), f.message);
        e.internal = f.cause;
        e.retry_after = f.retry_after;
        e
    }
}

impl From<agentd_db::DbError> for ApiError {
    fn from(e: agentd_db::DbError) -> Self {
        match e {
            agentd_db::DbError::Unavailable(_) => ApiError::unavailable("database", e),
            _ => ApiError::internal(e),
        }
    }
}

/// The error envelope: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A `snake_case` code of the error table; each route lists the codes it answers.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// More about it, when there is more: `retryable` for a failed turn, `checks` from `/readyz`; every 5xx
    /// carries `request_id`, the `x-request-id` response header and the server log's id of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, required = false)]
    pub details: Option<Value>,
}

/// `details` of a failed turn: whether the same request may succeed later.
#[derive(Debug, Serialize)]
pub struct RetryDetails {
    pub retryable: bool,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut details = self.details;
        if self.status.is_server_error() {
            let rid = crate::request_id().unwrap_or_default();
            tracing::error!(
                status = self.status.as_u16(),
                code = self.code,
                cause = self.internal.as_deref(),
                "request failed"
            );
            let mut d = details
                .take()
                .unwrap_or_else(|| Value::Object(Default::default()));
            if let Some(obj) = d.as_object_mut() {
                obj.insert("request_id".into(), Value::String(rid));
            }
            details = Some(d);
        }
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: self.message,
                details,
            },
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

/// A panicking handler becomes a logged 500 with the envelope, not a dropped connection.
pub(crate) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}
