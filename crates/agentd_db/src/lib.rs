//! Persistence over PostgreSQL (production) or SQLite (the zero-config default) with one schema
//! (`migrations/postgres` and `migrations/sqlite`, kept in step) and, wherever the dialects allow, one SQL text per
//! query.
//!
//! Tenant data is reached only through [`Db::scoped`], which returns a [`Scoped`] handle bound to one
//! [`TenantId`]: every query it runs filters on that tenant, so no call site can forget the filter or cross
//! tenants. Rows hold metadata only — never image bytes, base64 or URLs.
//!
//! A chat turn touches the database in three transactions (see [`turns`]): admission (limits, idempotency
//! claim, the conversation lease and the user message), one row per stored image, and the finished turn.
//! On PostgreSQL a new conversation's opening with its limits (`opening`, the function `agentd_open_turn`) and
//! the finished turn (`finish_pg`) are one statement each: with nothing else to check, a turn on a new
//! conversation needs two round trips (fifteen at first; not counting sqlx's connection pings). The run event
//! log ([`journal`]) is written beside them, batched.

mod connect;
mod conversations;
mod error;
mod finish_pg;
mod idempotency;
pub mod journal;
mod limits;
mod messages;
mod models;
mod objects;
mod opening;
mod tenants;
pub mod turns;
mod tx;
mod usage;

pub use agentd_ids::{ObjectKey, TenantId};
pub use connect::{Db, DbSettings, redact_url};
pub use conversations::{ConversationCursor, ConversationPage, DeleteOutcome};
pub use error::DbError;
pub use idempotency::{IDEMPOTENCY_TTL, IdempotencyState};
pub use limits::RateDecision;
pub use messages::MessagePage;
pub use models::{ActiveRun, AttachmentMeta, Conversation, Message, NewMessage, Role, TenantStatus};
pub use objects::{NewObject, StoredObject};
pub use opening::{OpenTurn, Opening};
pub use tx::TurnTx;
pub use usage::{DailyUsage, NewUsage};

/// A handle on one tenant's data. Built by [`Db::scoped`]; every method filters on `tenant`.
#[derive(Clone, Copy)]
pub struct Scoped<'a> {
    db: &'a Db,
    tenant: &'a TenantId,
}

impl<'a> Scoped<'a> {
    pub fn tenant(&self) -> &'a TenantId {
        self.tenant
    }

    pub(crate) fn t(&self) -> &'a str {
        self.tenant.as_str()
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
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let n = chrono::Utc::now();
    chrono::DurationRound::duration_trunc(n, chrono::Duration::microseconds(1)).unwrap_or(n)
}
