//! Identifiers that cross crate boundaries, validated once where they enter the system and carried typed from
//! then on: [`TenantId`] (checked at authentication, used by the database, storage and logs) and the
//! tenant-scoped object keys [`ObjectKey`] and [`KeyPrefix`] (made by ingestion, stored as metadata, turned into
//! URLs by the HTTP layer — never re-parsed from strings along the way).

mod key;
mod tenant;

pub use key::{KeyPrefix, ObjectKey};
pub use tenant::TenantId;

/// A string that is not a valid identifier or key; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(pub String);
