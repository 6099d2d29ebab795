//! Object storage for agentd: the [`BlobStore`] trait, tenant-scoped keys ([`ObjectKey`], [`KeyPrefix`]), and
//! its backends (memory, local disk, MinIO/S3 through `aws-sdk-s3`, GCS through `google-cloud-storage`).
//! Image bytes live here, never in the database; clients get them through time-limited URLs ([`SignedUrl`]),
//! presigned by the store where it can, or signed by agentd ([`UrlSigner`]) and served by the HTTP layer.
//!
//! Build a store from configuration with [`build`], then call [`BlobStore::ensure_ready`] once at startup.
//!
//! Tests: one conformance suite (`tests/conformance.rs`) runs against every backend. The S3 and GCS ones need
//! SeaweedFS and fake-gcs-server: `scripts/storage-services.sh start target/storage-services && source
//! target/storage-services/storage.env` (sets `AGENTD_TEST_S3_ENDPOINT` and `AGENTD_TEST_GCS_ENDPOINT`);
//! without them those tests fail unless `AGENTD_TEST_SKIP_EXTERNAL=1`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

pub mod config;
pub mod error;
mod gcs;
mod gcs_admin;
mod local;
mod memory;
mod s3;
pub mod url_signer;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use agentd_ids::{KeyPrefix, ObjectKey, TenantId};
pub use config::{Provider, Secret, StorageConfig, build};
pub use error::{Result, StorageError};
pub use gcs::{GcsSettings, GcsStore};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use s3::{S3Settings, S3Store};
pub use url_signer::UrlSigner;

/// Longest URL lifetime any store accepts (S3 and GCS V4 signatures allow seven days).
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// An object's bytes with the content type it was stored with.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    pub bytes: Bytes,
    pub content_type: String,
}

/// An object being read in pieces ([`BlobStore::get_stream`]).
pub struct BlobStream {
    /// Its size, when known before reading.
    pub len: Option<u64>,
    pub content_type: String,
    pub body: std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>,
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream")
            .field("len", &self.len)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the bytes themselves: they would end up in logs.
        f.debug_struct("Blob")
            .field("len", &self.bytes.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// A time-limited download URL. It is a bearer credential: do not log it.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let without_query = self.url.split('?').next().unwrap_or_default();
        f.debug_struct("SignedUrl")
            .field("url", &format_args!("{without_query}?[redacted]"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// How a download URL should behave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlOptions {
    /// Lifetime, clamped to 1 s ..= [`MAX_URL_TTL`].
    pub ttl: Duration,
    /// Suggested file name; presigning stores send it back as `Content-Disposition: inline; filename="..."`.
    pub filename: Option<String>,
    /// Content type the presigning stores should answer with (they otherwise use the stored one).
    pub content_type: Option<String>,
}

impl UrlOptions {
    /// A URL valid for `ttl`, without hints.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            filename: None,
            content_type: None,
        }
    }

    /// Adds a file name hint.
    pub fn with_filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = Some(filename.into());
        self
    }

    /// Adds a content type hint.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    pub(crate) fn clamped_ttl(&self) -> Duration {
        self.ttl.clamp(Duration::from_secs(1), MAX_URL_TTL)
    }

    /// `inline; filename="..."` with the name reduced to `[A-Za-z0-9._-]`, so it cannot break the header.
    pub(crate) fn content_disposition(&self) -> Option<String> {
        self.filename.as_ref().map(|name| {
            let safe: String = name
                .chars()
                .take(128)
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("inline; filename=\"{safe}\"")
        })
    }
}

/// A place to keep objects. Implementations are cheap to share as `Arc<dyn BlobStore>`.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Which backend this is (for logs and readiness messages).
    fn provider(&self) -> Provider;

    /// Stores `bytes` under `key`, replacing any previous object.
    async fn put(&self, key: &ObjectKey, bytes: Bytes, content_type: &str) -> Result<()>;

    /// [`Self::put`] of bytes whose SHA-256 (lowercase hex) the caller already has: a backend whose protocol
    /// hashes the payload (S3's SigV4) uses it instead of reading the bytes once more.
    async fn put_digested(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
        sha256: &str,
    ) -> Result<()> {
        let _ = sha256;
        self.put(key, bytes, content_type).await
    }

    /// Reads an object; [`StorageError::NotFound`] when there is none.
    async fn get(&self, key: &ObjectKey) -> Result<Blob>;

    /// Reads an object to serve it: in pieces where the backend can (local disk, 64 KiB at a time), so that a
    /// reader — a slow one, or many at once — never makes the server hold a copy of the whole object each.
    /// By default [`Self::get`] as one piece (for the memory store a shared view of its one copy).
    async fn get_stream(&self, key: &ObjectKey) -> Result<BlobStream> {
        let blob = self.get(key).await?;
        Ok(BlobStream {
            len: Some(blob.bytes.len() as u64),
            content_type: blob.content_type,
            body: Box::pin(futures_util::stream::iter([Ok(blob.bytes)])),
        })
    }

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Deletes every object under `prefix` and returns how many it deleted.
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64>;

    /// A URL that downloads the object without further credentials until it expires. It does not check that
    /// the object exists.
    async fn signed_url(&self, key: &ObjectKey, options: &UrlOptions) -> Result<SignedUrl>;

    /// Readiness probe: the store answers and the bucket (or directory) exists.
    async fn check(&self) -> Result<()>;

    /// Startup: creates the bucket or directory where that is ours to do (memory, local disk, MinIO), and
    /// otherwise checks that it exists (S3, GCS).
    async fn ensure_ready(&self) -> Result<()>;

    /// For stores whose URLs agentd signs and serves itself (memory, local disk): the signer that the file
    /// route must verify requests with. `None` for stores that presign.
    fn url_signer(&self) -> Option<&UrlSigner> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_is_sanitised() {
        let o = UrlOptions::new(Duration::from_secs(5)).with_filename("a\"b\r\nc d.png");
        assert_eq!(
            o.content_disposition().as_deref(),
            Some("inline; filename=\"a_b__c_d.png\"")
        );
        assert_eq!(
            UrlOptions::new(Duration::ZERO).clamped_ttl(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn debug_hides_bytes_and_signatures() {
        let b = Blob {
            bytes: Bytes::from_static(b"secret-bytes"),
            content_type: "image/png".into(),
        };
        assert!(!format!("{b:?}").contains("secret-bytes"));
        let u = SignedUrl {
            url: "http://h/k?sig=abc".into(),
            expires_at: Utc::now(),
        };
        assert!(!format!("{u:?}").contains("abc"));
    }
}
