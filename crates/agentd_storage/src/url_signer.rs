//! Download URLs that agentd signs itself, for stores that cannot presign (memory, local disk):
//! `{public_base_url}{path_prefix}/{key}?expires={unix seconds}&sig={hex HMAC-SHA256}`.
//! The HTTP layer serves that route and checks it with [`UrlSigner::verify_signed`].

use std::fmt;
use std::time::Duration;

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};

use crate::SignedUrl;
use crate::error::{Result, StorageError};
use agentd_ids::ObjectKey;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Signs and verifies self-served download URLs with a secret given at construction.
#[derive(Clone)]
pub struct UrlSigner {
    key: hmac::Key,
    public_base_url: String,
    path_prefix: String,
}

impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlSigner")
            .field("secret", &"[redacted]")
            .field("public_base_url", &self.public_base_url)
            .field("path_prefix", &self.path_prefix)
            .finish()
    }
}

impl UrlSigner {
    /// `public_base_url` is where clients reach agentd (e.g. `https://api.example.com`); `path_prefix` is the
    /// route that serves files (e.g. `/v1/files`). The secret must be at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8], public_base_url: &str, path_prefix: &str) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(StorageError::Config(format!(
                "the URL signing secret must be at least {MIN_SECRET_LEN} bytes"
            )));
        }
        let base = public_base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(StorageError::Config(
                "public base URL must start with http:// or https://".to_owned(),
            ));
        }
        let prefix = format!("/{}", path_prefix.trim_matches('/'));
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            public_base_url: base.to_owned(),
            path_prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    /// A signer with a random secret: its URLs stop verifying when the process restarts and are not valid on
    /// other replicas. Good for development and tests.
    pub fn random(public_base_url: &str, path_prefix: &str) -> Result<Self> {
        let mut secret = [0u8; MIN_SECRET_LEN];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| StorageError::Other("the system random generator failed".to_owned()))?;
        Self::new(&secret, public_base_url, path_prefix)
    }

    /// The route prefix the URLs use, e.g. `/v1/files`.
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    fn message(key: &str, expires: i64) -> String {
        format!("agentd-file-url-v1\n{key}\n{expires}")
    }

    /// A URL for `key` valid for `ttl` from `now`.
    pub fn sign(&self, key: &ObjectKey, ttl: Duration, now: DateTime<Utc>) -> SignedUrl {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let expires_at = now.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC);
        // Whole seconds: the URL carries seconds, so the promised expiry must not be later than the checked one.
        let expires = expires_at.timestamp();
        let expires_at = DateTime::<Utc>::from_timestamp(expires, 0).unwrap_or(expires_at);
        let sig = hex::encode(hmac::sign(
            &self.key,
            Self::message(key.as_str(), expires).as_bytes(),
        ));
        SignedUrl {
            url: format!(
                "{}{}/{}?expires={expires}&sig={sig}",
                self.public_base_url, self.path_prefix, key
            ),
            expires_at,
        }
    }

    /// True when `sig` (hex) is this signer's signature of `key` and `expires`, and `expires` has not passed at
    /// `now`. The comparison is constant-time.
    pub fn verify_signed(&self, key: &str, expires: i64, sig: &str, now: DateTime<Utc>) -> bool {
        if now.timestamp() > expires {
            return false;
        }
        let Ok(tag) = hex::decode(sig) else {
            return false;
        };
        hmac::verify(&self.key, Self::message(key, expires).as_bytes(), &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentd_ids::TenantId;

    fn parts(url: &str) -> (String, i64, String) {
        let (path, query) = url.split_once('?').unwrap();
        let key = path.split_once("/v1/files/").unwrap().1.to_owned();
        let mut expires = 0;
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=').unwrap() {
                ("expires", v) => expires = v.parse().unwrap(),
                ("sig", v) => sig = v.to_owned(),
                _ => panic!("unexpected query {pair}"),
            }
        }
        (key, expires, sig)
    }

    #[test]
    fn signs_and_verifies() {
        let s = UrlSigner::new(&[7u8; 32], "http://localhost:8080/", "v1/files/").unwrap();
        let key = ObjectKey::upload(&TenantId::parse("t1").unwrap(), "o1", "png").unwrap();
        let now = Utc::now();
        let signed = s.sign(&key, Duration::from_secs(60), now);
        assert!(
            signed
                .url
                .starts_with("http://localhost:8080/v1/files/tenants/t1/uploads/o1.png?expires=")
        );
        let (k, expires, sig) = parts(&signed.url);
        assert_eq!(expires, signed.expires_at.timestamp());
        assert!(s.verify_signed(&k, expires, &sig, now));
        // expired, other key, other expiry, tampered signature, other secret
        assert!(!s.verify_signed(&k, expires, &sig, now + chrono::Duration::seconds(61)));
        assert!(!s.verify_signed("tenants/t2/uploads/o1.png", expires, &sig, now));
        assert!(!s.verify_signed(&k, expires + 1, &sig, now));
        let mut bad = sig.clone();
        bad.replace_range(0..1, if bad.starts_with('0') { "1" } else { "0" });
        assert!(!s.verify_signed(&k, expires, &bad, now));
        assert!(!s.verify_signed(&k, expires, "zz", now));
        let other = UrlSigner::new(&[8u8; 32], "http://localhost:8080", "/v1/files").unwrap();
        assert!(!other.verify_signed(&k, expires, &sig, now));
    }

    #[test]
    fn rejects_short_secret_and_redacts_debug() {
        assert!(UrlSigner::new(b"short", "http://x", "/f").is_err());
        let s = UrlSigner::random("http://x", "/f").unwrap();
        assert!(format!("{s:?}").contains("[redacted]"));
    }
}
