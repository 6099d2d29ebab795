//! Database errors, split by what a caller can do about them.

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached or timed out: callers answer 503.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint refused the write.
    #[error("conflict on {0}")]
    Conflict(String),
    /// The schema is behind the binary.
    #[error(
        "the database schema is behind this binary ({pending} migration(s) pending): run `agentd migrate` or set AUTO_MIGRATE=true"
    )]
    SchemaBehind { pending: usize },
    #[error("invalid database configuration: {0}")]
    Config(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    /// A row holds something this binary cannot read back (a foreign key or an edited column).
    #[error("unreadable row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => DbError::Unavailable(e),
            // The server ended the session: shut down, restarted, failed over (SQLSTATE class 08, connection
            // exception, and 57P, operator intervention) — the next connection may well work.
            sqlx::Error::Database(d)
                if d.code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
            {
                DbError::Unavailable(e)
            }
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                DbError::Conflict(d.constraint().unwrap_or("a unique key").to_owned())
            }
            _ => DbError::Other(e),
        }
    }
}
