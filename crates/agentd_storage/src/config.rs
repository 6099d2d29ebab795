//! Storage configuration ([`StorageConfig`], one serde type whose field names are the lower-case environment
//! names of the design: `minio_endpoint` ← `MINIO_ENDPOINT`, ...) and [`build`], which turns it into a store.
//! Secrets are wrapped in [`Secret`], whose `Debug` and `Serialize` never show the value.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::gcs::{GcsSettings, GcsStore};
use crate::local::LocalStore;
use crate::memory::MemoryStore;
use crate::s3::{S3Settings, S3Store};
use crate::{BlobStore, UrlSigner};

/// Which backend holds the objects (`STORAGE_PROVIDER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// A map in the process.
    Memory,
    /// Files under `filesystem_root` (the zero-configuration default).
    #[default]
    Filesystem,
    /// MinIO or another S3-compatible server; the bucket is created at startup if missing.
    Minio,
    /// AWS S3; the bucket must already exist.
    S3,
    /// Google Cloud Storage; the bucket must already exist.
    Gcs,
}

impl Provider {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Filesystem => "filesystem",
            Self::Minio => "minio",
            Self::S3 => "s3",
            Self::Gcs => "gcs",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret string: readable with [`Secret::expose`], shown as `[redacted]` everywhere else.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

fn default_ttl() -> u64 {
    900
}
fn default_root() -> PathBuf {
    PathBuf::from("var/objects")
}
/// Where a store built without a `public_base_url` (nor a server's address) points its self-signed URLs.
const FALLBACK_PUBLIC_BASE_URL: &str = "http://127.0.0.1:8080";
fn default_files_path() -> String {
    "/v1/files".to_owned()
}
fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Everything the storage layer reads from configuration. Every field has a default, so an empty
/// configuration gives local-disk storage under `var/objects`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `STORAGE_PROVIDER`.
    #[serde(default, alias = "storage_provider")]
    pub provider: Provider,
    /// `STORAGE_SIGNED_URL_TTL_SECONDS`: lifetime of download URLs (default 900).
    #[serde(default = "default_ttl", alias = "storage_signed_url_ttl_seconds")]
    pub signed_url_ttl_seconds: u64,

    /// Root directory of the filesystem provider (default `var/objects`).
    #[serde(default = "default_root")]
    pub filesystem_root: PathBuf,
    /// Where clients reach agentd; self-signed URLs (memory, filesystem) start with it. Unset: the server's
    /// bound address (`http://127.0.0.1:8080` for a store built without one).
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// The route that serves self-signed URLs (default `/v1/files`).
    #[serde(default = "default_files_path")]
    pub files_path_prefix: String,
    /// HMAC secret of self-signed URLs, at least 32 bytes. When absent a random one is made at startup: URLs
    /// then stop working on restart and are not valid across replicas.
    #[serde(default)]
    pub url_signing_secret: Option<Secret>,

    #[serde(default)]
    pub minio_endpoint: Option<String>,
    /// Where clients reach MinIO/S3; presigned URLs point here (default: `minio_endpoint`).
    #[serde(default)]
    pub minio_public_endpoint: Option<String>,
    #[serde(default)]
    pub minio_access_key: Option<String>,
    #[serde(default)]
    pub minio_secret_key: Option<Secret>,
    #[serde(default)]
    pub minio_bucket: Option<String>,
    #[serde(default = "default_region")]
    pub minio_region: String,

    #[serde(default)]
    pub gcs_bucket: Option<String>,
    #[serde(default)]
    pub gcs_credentials_path: Option<PathBuf>,
    #[serde(default)]
    pub gcs_endpoint: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            provider: Provider::default(),
            signed_url_ttl_seconds: default_ttl(),
            filesystem_root: default_root(),
            public_base_url: None,
            files_path_prefix: default_files_path(),
            url_signing_secret: None,
            minio_endpoint: None,
            minio_public_endpoint: None,
            minio_access_key: None,
            minio_secret_key: None,
            minio_bucket: None,
            minio_region: default_region(),
            gcs_bucket: None,
            gcs_credentials_path: None,
            gcs_endpoint: None,
        }
    }
}

impl StorageConfig {
    /// `signed_url_ttl_seconds` as a duration.
    pub fn signed_url_ttl(&self) -> Duration {
        Duration::from_secs(self.signed_url_ttl_seconds)
    }

    fn url_signer(&self) -> Result<UrlSigner> {
        let public = self
            .public_base_url
            .as_deref()
            .unwrap_or(FALLBACK_PUBLIC_BASE_URL);
        match &self.url_signing_secret {
            Some(secret) => UrlSigner::new(secret.expose().as_bytes(), public, &self.files_path_prefix),
            None => {
                tracing::warn!(
                    provider = %self.provider,
                    "no URL signing secret configured: using a random one, so download URLs stop working on \
                     restart and are not valid on other replicas"
                );
                UrlSigner::random(public, &self.files_path_prefix)
            }
        }
    }

    fn s3_settings(&self) -> Result<S3Settings> {
        let bucket = self
            .minio_bucket
            .clone()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| StorageError::Config(format!("MINIO_BUCKET is required for {}", self.provider)))?;
        Ok(S3Settings {
            provider: self.provider,
            endpoint: self.minio_endpoint.clone().filter(|e| !e.is_empty()),
            public_endpoint: self.minio_public_endpoint.clone().filter(|e| !e.is_empty()),
            region: self.minio_region.clone(),
            bucket,
            access_key: self.minio_access_key.clone().filter(|k| !k.is_empty()),
            secret_key: self.minio_secret_key.clone().filter(|k| !k.expose().is_empty()),
        })
    }
}

/// Builds the configured store. Call [`BlobStore::ensure_ready`] on it once at startup.
#[tracing::instrument(skip(config), fields(provider = %config.provider))]
pub async fn build(config: &StorageConfig) -> Result<Arc<dyn BlobStore>> {
    let store: Arc<dyn BlobStore> = match config.provider {
        Provider::Memory => Arc::new(MemoryStore::new(config.url_signer()?)),
        Provider::Filesystem => Arc::new(LocalStore::new(
            config.filesystem_root.clone(),
            config.url_signer()?,
        )),
        Provider::Minio | Provider::S3 => Arc::new(S3Store::new(config.s3_settings()?).await?),
        Provider::Gcs => {
            let bucket = config
                .gcs_bucket
                .clone()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| StorageError::Config("GCS_BUCKET is required for gcs".to_owned()))?;
            Arc::new(
                GcsStore::new(GcsSettings {
                    bucket,
                    credentials_path: config.gcs_credentials_path.clone(),
                    endpoint: config.gcs_endpoint.clone().filter(|e| !e.is_empty()),
                })
                .await?,
            )
        }
    };
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_redaction() {
        let c: StorageConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, StorageConfig::default());
        assert_eq!(c.provider, Provider::Filesystem);
        assert_eq!(c.signed_url_ttl_seconds, 900);
        assert_eq!(c.filesystem_root, PathBuf::from("var/objects"));

        let c: StorageConfig = serde_json::from_str(
            r#"{"storage_provider":"minio","minio_secret_key":"s3cr3t-value","url_signing_secret":"another-s3cr3t"}"#,
        )
        .unwrap();
        assert_eq!(c.provider, Provider::Minio);
        assert_eq!(c.minio_secret_key.as_ref().unwrap().expose(), "s3cr3t-value");
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn rejects_unknown_fields_and_providers() {
        assert!(serde_json::from_str::<StorageConfig>(r#"{"provider":"azure"}"#).is_err());
        assert!(serde_json::from_str::<StorageConfig>(r#"{"minio_bukket":"x"}"#).is_err());
    }

    #[tokio::test]
    async fn build_reports_missing_settings() {
        for provider in [Provider::Minio, Provider::S3, Provider::Gcs] {
            let c = StorageConfig {
                provider,
                ..StorageConfig::default()
            };
            let err = build(&c).await.unwrap_err();
            assert!(matches!(err, StorageError::Config(_)), "{provider}: {err}");
        }
        let c = StorageConfig {
            provider: Provider::Minio,
            minio_bucket: Some("b".into()),
            minio_endpoint: Some("http://127.0.0.1:1".into()),
            ..StorageConfig::default()
        };
        assert!(matches!(build(&c).await.unwrap_err(), StorageError::Config(_)));
    }

    #[tokio::test]
    async fn builds_memory_and_filesystem() {
        let c = StorageConfig {
            provider: Provider::Memory,
            ..StorageConfig::default()
        };
        let store = build(&c).await.unwrap();
        assert_eq!(store.provider(), Provider::Memory);
        assert!(store.url_signer().is_some());
    }
}
