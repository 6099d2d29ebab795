//! Why a turn was refused before it started, as a stable code and an HTTP-like status.

/// A turn refused before its stream started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct TurnError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Logged, never answered.
    pub internal: Option<String>,
}

impl TurnError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            internal: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(500, "internal", "Something went wrong on our side.");
        e.internal = Some(cause.to_string());
        e
    }
}

impl From<agentd_db::DbError> for TurnError {
    fn from(e: agentd_db::DbError) -> Self {
        match e {
            agentd_db::DbError::Unavailable(_) => {
                let mut t = TurnError::new(
                    503,
                    "unavailable",
                    "The database is unavailable right now; retry shortly.",
                );
                t.internal = Some(e.to_string());
                t.retry_after(2)
            }
            other => TurnError::internal(other),
        }
    }
}
