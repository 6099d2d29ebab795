//! Who is calling: the tenant, the user and the scopes of a verified token.

pub use agentd_ids::TenantId;

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
