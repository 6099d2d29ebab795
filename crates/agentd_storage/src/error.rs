//! The one error type of the storage layer. Messages name what failed and never carry credentials, signed URLs
//! or object bytes, so they are safe to log and to map onto HTTP status codes.

/// What went wrong in a storage call.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object (or, for `check`, nothing else) does not exist.
    #[error("object not found")]
    NotFound,
    /// A tenant id, object id, extension or key does not follow the key grammar.
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    /// The store could not be reached, timed out or answered with a server error: worth retrying later.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The configuration is wrong or incomplete (missing bucket, unreadable credentials, bucket absent, ...).
    #[error("storage configuration error: {0}")]
    Config(String),
    /// Anything else the store answered.
    #[error("object store error: {0}")]
    Other(String),
}

impl StorageError {
    /// True for [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound)
    }
}

/// Result alias of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl From<agentd_ids::InvalidId> for StorageError {
    fn from(e: agentd_ids::InvalidId) -> Self {
        Self::InvalidKey(e.0)
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => Self::NotFound,
            _ => Self::Other(format!("i/o error: {e}")),
        }
    }
}
