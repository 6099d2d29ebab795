//! Tenant-scoped object keys. Every key starts with `tenants/{tenant_id}/`, and every component is checked against
//! a small character set, so keys are safe as file paths (no `..`, no absolute paths) and two tenants can never
//! produce the same key.
//!
//! Layout:
//! - uploads: `tenants/{tenant_id}/uploads/{object_id}.{ext}`
//! - objects that belong to a conversation: `tenants/{tenant_id}/conversations/{conversation_id}/{object_id}.{ext}`
//!
//! Prefixes for bulk deletion: `tenants/{tenant_id}/` and `tenants/{tenant_id}/conversations/{conversation_id}/`.

use std::fmt;

use crate::{InvalidId, TenantId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

type Result<T> = std::result::Result<T, InvalidId>;

const MAX_COMPONENT: usize = 64;
const MAX_EXT: usize = 10;

/// Object and conversation ids: 1–64 characters of `[A-Za-z0-9_-]` (UUIDs fit; no dots, so a file name
/// `{object_id}.{ext}` has exactly one dot).
fn check_id(what: &str, id: &str) -> Result<()> {
    if (1..=MAX_COMPONENT).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        Ok(())
    } else {
        Err(InvalidId(format!(
            "{what} must be 1-{MAX_COMPONENT} characters of [A-Za-z0-9_-]"
        )))
    }
}

/// File extensions: 1–10 characters of `[a-z0-9]`.
fn check_ext(ext: &str) -> Result<()> {
    if (1..=MAX_EXT).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(InvalidId(format!(
            "extension must be 1-{MAX_EXT} characters of [a-z0-9]"
        )))
    }
}

/// A complete, validated object key (see the module docs for the layout).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    key: String,
    tenant_end: usize,
}

impl ObjectKey {
    /// `tenants/{tenant}/uploads/{object_id}.{ext}`: an object that belongs to no conversation (yet).
    pub fn upload(tenant: &TenantId, object_id: &str, ext: &str) -> Result<Self> {
        check_id("object id", object_id)?;
        check_ext(ext)?;
        Ok(Self::assemble(tenant, &format!("uploads/{object_id}.{ext}")))
    }

    /// `tenants/{tenant}/conversations/{conversation_id}/{object_id}.{ext}`: deleted with the conversation.
    pub fn in_conversation(
        tenant: &TenantId,
        conversation_id: &str,
        object_id: &str,
        ext: &str,
    ) -> Result<Self> {
        check_id("conversation id", conversation_id)?;
        check_id("object id", object_id)?;
        check_ext(ext)?;
        Ok(Self::assemble(
            tenant,
            &format!("conversations/{conversation_id}/{object_id}.{ext}"),
        ))
    }

    fn assemble(tenant: &TenantId, rest: &str) -> Self {
        let key = format!("tenants/{}/{rest}", tenant.as_str());
        Self {
            tenant_end: "tenants/".len() + tenant.as_str().len(),
            key,
        }
    }

    /// Parses a key produced by [`ObjectKey::as_str`] (for example from a download URL path), accepting only the
    /// two layouts above.
    pub fn parse(key: &str) -> Result<Self> {
        let invalid = || InvalidId("not an agentd object key".to_owned());
        let parts: Vec<&str> = key.split('/').collect();
        let (tenant, file, conversation) = match parts.as_slice() {
            ["tenants", tenant, "uploads", file] => (*tenant, *file, None),
            ["tenants", tenant, "conversations", conversation, file] => (*tenant, *file, Some(*conversation)),
            _ => return Err(invalid()),
        };
        let tenant = TenantId::parse(tenant)?;
        let (object_id, ext) = file.split_once('.').ok_or_else(invalid)?;
        match conversation {
            None => Self::upload(&tenant, object_id, ext),
            Some(conversation) => Self::in_conversation(&tenant, conversation, object_id, ext),
        }
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The tenant the object belongs to.
    pub fn tenant(&self) -> &str {
        &self.key["tenants/".len()..self.tenant_end]
    }

    /// The last component, `{object_id}.{ext}`.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

impl Serialize for ObjectKey {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.key)
    }
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A validated key prefix ending in `/`, for [`crate::BlobStore::delete_prefix`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Every object of a tenant: `tenants/{tenant}/`.
    pub fn tenant(tenant: &TenantId) -> Self {
        Self(format!("tenants/{}/", tenant.as_str()))
    }

    /// Every object of one conversation: `tenants/{tenant}/conversations/{conversation_id}/`.
    pub fn conversation(tenant: &TenantId, conversation_id: &str) -> Result<Self> {
        check_id("conversation id", conversation_id)?;
        Ok(Self(format!(
            "tenants/{}/conversations/{conversation_id}/",
            tenant.as_str()
        )))
    }

    /// The prefix as stored, ending in `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `key` lies under this prefix.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        key.as_str().starts_with(&self.0)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_both_layouts() {
        let t = TenantId::parse("acme.co_1-x").unwrap();
        let up = ObjectKey::upload(&t, "0190-abc", "png").unwrap();
        assert_eq!(up.as_str(), "tenants/acme.co_1-x/uploads/0190-abc.png");
        assert_eq!(up.tenant(), "acme.co_1-x");
        assert_eq!(up.file_name(), "0190-abc.png");
        assert_eq!(ObjectKey::parse(up.as_str()).unwrap(), up);
        let conv = ObjectKey::in_conversation(&t, "c1", "o1", "webp").unwrap();
        assert_eq!(conv.as_str(), "tenants/acme.co_1-x/conversations/c1/o1.webp");
        assert_eq!(ObjectKey::parse(conv.as_str()).unwrap(), conv);
        assert!(KeyPrefix::conversation(&t, "c1").unwrap().contains(&conv));
        assert!(KeyPrefix::tenant(&t).contains(&conv));
        assert!(!KeyPrefix::conversation(&t, "c2").unwrap().contains(&conv));
    }

    #[test]
    fn rejects_traversal_and_odd_characters() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a b", "ä", "a%2e", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
        let t = TenantId::parse("t").unwrap();
        assert!(ObjectKey::upload(&t, "..", "png").is_err());
        assert!(ObjectKey::upload(&t, "a.b", "png").is_err());
        assert!(ObjectKey::upload(&t, "a", "PNG").is_err());
        assert!(ObjectKey::upload(&t, "a", "").is_err());
        assert!(KeyPrefix::conversation(&t, "../x").is_err());
        for bad in [
            "tenants/../uploads/a.png",
            "/tenants/t/uploads/a.png",
            "tenants/t/uploads/a.png/",
            "tenants/t/uploads/../a.png",
            "tenants/t/other/a.png",
            "tenants/t/uploads/a",
            "tenants/t/uploads/a.png.meta",
            "tenants/t/conversations/../a.png",
        ] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenants_never_collide() {
        // A tenant id may contain dots, but never a slash: no key of one tenant lies under another's prefix.
        let a = TenantId::parse("a").unwrap();
        let ab = TenantId::parse("a.b").unwrap();
        let k = ObjectKey::upload(&ab, "x", "png").unwrap();
        assert!(!KeyPrefix::tenant(&a).contains(&k));
        assert_ne!(ObjectKey::upload(&a, "x", "png").unwrap(), k);
    }
}
