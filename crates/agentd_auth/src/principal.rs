//! Who is calling: the tenant, the user and the scopes of a verified token.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A tenant id as carried by the `tenant_id` claim: 1–64 characters of `A-Z a-z 0-9 . _ -`, not `.` or `..`
/// (the same rule as the object store's tenant key component, so every authenticated tenant can store).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub const RULE: &'static str =
        "1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, and not `.` or `..`";

    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("tenant id must be {}", Self::RULE))
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scopes of `api-v1.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Run turns.
    Chat,
    ConversationsRead,
    /// Delete conversations.
    ConversationsWrite,
    AgentsRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Chat,
        Scope::ConversationsRead,
        Scope::ConversationsWrite,
        Scope::AgentsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::ConversationsRead => "conversations:read",
            Scope::ConversationsWrite => "conversations:write",
            Scope::AgentsRead => "agents:read",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes. A token without a `scope` claim has all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeSet(u8);

impl ScopeSet {
    pub fn all() -> Self {
        Self::of(&Scope::ALL)
    }

    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Parses a space-separated `scope` claim; names this server does not know are ignored.
    pub fn parse(claim: &str) -> Self {
        let found: Vec<Scope> = claim
            .split_whitespace()
            .filter_map(|w| Scope::ALL.into_iter().find(|s| s.as_str() == w))
            .collect();
        Self::of(&found)
    }

    pub fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    /// The claim value for these scopes.
    pub fn to_claim(self) -> String {
        Scope::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: TenantId,
    /// The `sub` claim.
    pub user_id: String,
    pub scopes: ScopeSet,
}
