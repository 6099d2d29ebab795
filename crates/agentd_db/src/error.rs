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
    Migrate(sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    /// A row holds something this binary cannot read back (a foreign key or an edited column).
    #[error("unreadable row: {0}")]
    Corrupt(String),
}

/// SQLSTATEs of a session the server ended or would not open: connection exceptions (08000, 08001, 08003,
/// 08004, 08006), admin and crash shutdown (57P01, 57P02), and "cannot connect now" (57P03, starting up).
const SESSION_GONE: [&str; 8] = [
    "08000", "08001", "08003", "08004", "08006", "57P01", "57P02", "57P03",
];

/// Whether `e` says the database could not be reached or answer in time, rather than what it answered.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            true
        }
        // The server ended or refused the session (shut down, restarting, failed over): the next
        // connection may well work. Not 08P01, a protocol violation, which would fail again.
        sqlx::Error::Database(d) => d.code().is_some_and(|c| SESSION_GONE.contains(&c.as_ref())),
        _ => false,
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            return DbError::Unavailable(e);
        }
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                DbError::Conflict(d.constraint().unwrap_or("a unique key").to_owned())
            }
            _ => DbError::Other(e),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for DbError {
    /// A migration that could not reach the database is [`DbError::Unavailable`], like any other statement.
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _)
                if is_unavailable(&e) =>
            {
                DbError::Unavailable(e)
            }
            e => DbError::Migrate(e),
        }
    }
}

impl DbError {
    /// The database may answer a later attempt: unreachable or timed out — not closed by this process, and not
    /// a TLS failure, which is almost always the configuration's (a CA, `sslmode`).
    pub fn is_transient(&self) -> bool {
        matches!(self, DbError::Unavailable(e) if !matches!(e, sqlx::Error::PoolClosed | sqlx::Error::Tls(_)))
    }

    /// The statement failed because a table does not exist (PostgreSQL's 42P01, SQLite's "no such table").
    pub(crate) fn is_missing_table(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(d)
            if d.code().as_deref() == Some("42P01") || d.message().starts_with("no such table"))
    }

    /// The pool was closed (the process is shutting down): no later attempt can succeed.
    pub fn is_closed(&self) -> bool {
        matches!(self, DbError::Unavailable(sqlx::Error::PoolClosed))
    }

    /// PostgreSQL refused a notification: its queue is full (SQLSTATE 54000, "too many notifications in the
    /// NOTIFY queue"), because a listener somewhere stopped reading. Every notification fails until it drains.
    pub fn is_notify_queue_full(&self) -> bool {
        matches!(self, DbError::Other(sqlx::Error::Database(d)) if d.code().as_deref() == Some("54000"))
    }
}
