//! The error envelope of `api-v1.md`: `{"error": {"code", "message", "details"}}`. A 5xx is logged exactly once,
//! with its cause, and answers only a generic message plus the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
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

impl From<agentd_db::DbError> for ApiError {
    fn from(e: agentd_db::DbError) -> Self {
        match e {
            agentd_db::DbError::Unavailable(_) => ApiError::unavailable("database", e),
            _ => ApiError::internal(e),
        }
    }
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
            let mut d = details.take().unwrap_or_else(|| json!({}));
            if let Some(obj) = d.as_object_mut() {
                obj.insert("request_id".into(), Value::String(rid));
            }
            details = Some(d);
        }
        let mut body = json!({ "code": self.code, "message": self.message });
        if let (Some(d), Some(obj)) = (details, body.as_object_mut()) {
            obj.insert("details".into(), d);
        }
        let mut res = (self.status, axum::Json(json!({ "error": body }))).into_response();
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
