//! The tenant id: one charset and length rule for the whole system, so a tenant the token layer admits is one
//! the database and the object store can hold, and no id can escape its key prefix.

use crate::InvalidId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A validated tenant id: 1–64 characters of `[A-Za-z0-9._-]`, and not `.` or `..`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// The rule, for error messages.
    pub const RULE: &'static str =
        "1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, and not `.` or `..`";

    /// Checks `id` against [`TenantId::RULE`].
    pub fn parse(id: &str) -> Result<Self, InvalidId> {
        let ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && id != "."
            && id != "..";
        if ok {
            Ok(Self(Arc::from(id)))
        } else {
            Err(InvalidId(format!("tenant id must be {}", Self::RULE)))
        }
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0.as_ref().to_owned()
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule() {
        for good in ["a", "acme.co_1-x", &"x".repeat(64), "..a", "a.."] {
            assert!(TenantId::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a b",
            "ä",
            "a%2e",
            "a\n",
            "a\0",
            &"x".repeat(65),
        ] {
            let e = TenantId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("tenant id must be"), "{bad:?}");
        }
        let t: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<TenantId>("\"..\"").is_err());
    }
}
