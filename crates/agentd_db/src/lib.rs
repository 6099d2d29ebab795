//! Persistence over PostgreSQL (production) or SQLite (the zero-config default) with one schema
//! (`migrations/postgres` and `migrations/sqlite`, kept in step) and one SQL text per query.
//!
//! Tenant data is reached only through [`Db::scoped`], which returns a [`Scoped`] handle bound to one tenant:
//! every query it runs filters on that tenant, so no call site can forget the filter or cross tenants.
//! Rows hold metadata only — never image bytes, base64 or URLs.

mod connect;
mod conversations;
mod error;
mod messages;
mod models;
mod objects;
mod runs;
mod tenants;
mod usage;

pub use connect::{Db, DbSettings};
pub use conversations::{ConversationCursor, ConversationPage};
pub use error::DbError;
pub use models::{AttachmentMeta, Conversation, Message, NewMessage, Role, TenantStatus};
pub use objects::{NewObject, StoredObject};
pub use runs::IdempotencyState;
pub use usage::{DailyUsage, NewUsage};

/// A handle on one tenant's data. Built by [`Db::scoped`]; every method filters on `tenant`.
#[derive(Clone, Copy)]
pub struct Scoped<'a> {
    db: &'a Db,
    tenant: &'a str,
}

impl<'a> Scoped<'a> {
    pub fn tenant(&self) -> &'a str {
        self.tenant
    }
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds. The body is compiled once per driver, so the
/// same SQL text and binds serve both databases.
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::Db::Postgres($pool) => $body,
            $crate::Db::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Now, truncated to microseconds so that both databases store and return the same instant.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    let n = chrono::Utc::now();
    chrono::DurationRound::duration_trunc(n, chrono::Duration::microseconds(1)).unwrap_or(n)
}
