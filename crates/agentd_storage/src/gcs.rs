//! The GCS backend over the official `google-cloud-storage` crate: `Storage` writes and reads objects (JSON API),
//! `SignedUrlBuilder` makes V4 signed URLs (signed locally with the service-account key of
//! `GCS_CREDENTIALS_PATH`, or through IAM signBlob with application default credentials), and [`GcsAdmin`]
//! checks the bucket, lists and deletes (see its docs for why that differs between real GCS and emulators).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use google_cloud_auth::credentials::{self, Credentials};
use google_cloud_auth::signer::Signer;
use google_cloud_storage::builder::storage::SignedUrlBuilder;
use google_cloud_storage::client::{Storage, StorageControl};

use crate::error::{Result, StorageError};
use crate::gcs_admin::{GcsAdmin, map_gax_err};
use crate::{Blob, BlobStore, Provider, SignedUrl, UrlOptions};
use agentd_ids::{KeyPrefix, ObjectKey};

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the GCS backend needs; [`crate::StorageConfig`] fills it from the `GCS_*` settings.
#[derive(Clone, Debug)]
pub struct GcsSettings {
    /// The bucket id (not `projects/_/buckets/...`).
    pub bucket: String,
    /// A service-account key file. Used to authenticate (real GCS) and to sign URLs locally. Without it, real
    /// GCS uses application default credentials and signs through IAM; an emulator cannot sign URLs.
    pub credentials_path: Option<PathBuf>,
    /// A custom endpoint, e.g. an emulator at `http://127.0.0.1:4443`. Requests to it are anonymous.
    pub endpoint: Option<String>,
}

/// Objects in a GCS bucket.
pub struct GcsStore {
    storage: Storage,
    admin: GcsAdmin,
    signer: Option<Signer>,
    bucket: String,
    bucket_path: String,
    endpoint: Option<String>,
}

impl std::fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("can_sign", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl GcsStore {
    /// Reads the credentials and builds the clients; makes no request to the bucket.
    #[tracing::instrument(name = "gcs.new", skip(settings), fields(bucket = %settings.bucket))]
    pub async fn new(settings: GcsSettings) -> Result<Self> {
        if settings.bucket.is_empty() {
            return Err(StorageError::Config("GCS_BUCKET is required".to_owned()));
        }
        let key_json = match &settings.credentials_path {
            Some(path) => {
                let raw = tokio::fs::read(path).await.map_err(|e| {
                    StorageError::Config(format!(
                        "cannot read GCS_CREDENTIALS_PATH {}: {}",
                        path.display(),
                        e.kind()
                    ))
                })?;
                let json: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| {
                    StorageError::Config("GCS_CREDENTIALS_PATH is not a JSON service-account key".to_owned())
                })?;
                Some(json)
            }
            None => None,
        };
        let config_err =
            |what: &str, e: &dyn std::fmt::Display| StorageError::Config(format!("gcs {what}: {e}"));
        let signer = match (&key_json, &settings.endpoint) {
            (Some(json), _) => Some(
                credentials::service_account::Builder::new(json.clone())
                    .build_signer()
                    .map_err(|e| config_err("signer", &e))?,
            ),
            (None, None) => Some(
                credentials::Builder::default()
                    .build_signer()
                    .map_err(|e| config_err("signer", &e))?,
            ),
            (None, Some(_)) => None,
        };
        let bucket_path = format!("projects/_/buckets/{}", settings.bucket);
        let (storage, admin) = match &settings.endpoint {
            Some(endpoint) => {
                let anonymous: Credentials = credentials::anonymous::Builder::new().build();
                let storage = Storage::builder()
                    .with_endpoint(endpoint.trim_end_matches('/'))
                    .with_credentials(anonymous)
                    .build()
                    .await
                    .map_err(|e| config_err("client", &e))?;
                (storage, GcsAdmin::json(endpoint, &settings.bucket)?)
            }
            None => {
                let creds: Credentials = match key_json {
                    Some(json) => credentials::service_account::Builder::new(json)
                        .build()
                        .map_err(|e| config_err("credentials", &e))?,
                    None => credentials::Builder::default()
                        .build()
                        .map_err(|e| config_err("credentials", &e))?,
                };
                let storage = Storage::builder()
                    .with_credentials(creds.clone())
                    .build()
                    .await
                    .map_err(|e| config_err("client", &e))?;
                let control = StorageControl::builder()
                    .with_credentials(creds)
                    .build()
                    .await
                    .map_err(|e| config_err("control client", &e))?;
                (
                    storage,
                    GcsAdmin::Control {
                        control,
                        bucket_path: bucket_path.clone(),
                    },
                )
            }
        };
        Ok(Self {
            storage,
            admin,
            signer,
            bucket: settings.bucket,
            bucket_path,
            endpoint: settings.endpoint,
        })
    }
}

#[async_trait::async_trait]
impl BlobStore for GcsStore {
    fn provider(&self) -> Provider {
        Provider::Gcs
    }

    #[tracing::instrument(level = "debug", name = "gcs.put", skip(self, bytes), fields(key = %key, len = bytes.len()))]
    async fn put(&self, key: &ObjectKey, bytes: Bytes, content_type: &str) -> Result<()> {
        // The CRC32C goes up front in the metadata: the server checks it, and the upload is one plain
        // `multipart/related` request of metadata + media (without it the client appends a third, trailing
        // checksum part, which emulators such as fake-gcs-server mistake for the media).
        let crc = crc32c::crc32c(&bytes);
        // Boxed: the SDK's upload future is ~30 KB.
        let upload = self
            .storage
            .write_object(&self.bucket_path, key.as_str(), bytes)
            .set_content_type(content_type)
            .with_known_crc32c(crc)
            .send_unbuffered();
        Box::pin(upload).await.map_err(|e| map_gax_err("put", &e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "gcs.get", skip(self), fields(key = %key))]
    async fn get(&self, key: &ObjectKey) -> Result<Blob> {
        let mut resp = self
            .storage
            .read_object(&self.bucket_path, key.as_str())
            .send()
            .await
            .map_err(|e| map_gax_err("get", &e))?;
        let meta = resp.object();
        let mut buf = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        while let Some(chunk) = resp.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| map_gax_err("get", &e))?);
        }
        let content_type = if meta.content_type.is_empty() {
            DEFAULT_CONTENT_TYPE.to_owned()
        } else {
            meta.content_type
        };
        Ok(Blob {
            bytes: Bytes::from(buf),
            content_type,
        })
    }

    #[tracing::instrument(level = "debug", name = "gcs.delete", skip(self), fields(key = %key))]
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.admin.delete(key.as_str()).await
    }

    #[tracing::instrument(level = "debug", name = "gcs.delete_prefix", skip(self), fields(prefix = %prefix))]
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64> {
        let names = self.admin.list(prefix.as_str()).await?;
        for name in &names {
            self.admin.delete(name).await?;
        }
        Ok(names.len() as u64)
    }

    #[tracing::instrument(level = "debug", name = "gcs.signed_url", skip(self, options), fields(key = %key))]
    async fn signed_url(&self, key: &ObjectKey, options: &UrlOptions) -> Result<SignedUrl> {
        let signer = self.signer.as_ref().ok_or_else(|| {
            StorageError::Config(
                "signing GCS URLs against GCS_ENDPOINT needs GCS_CREDENTIALS_PATH".to_owned(),
            )
        })?;
        let ttl = options.clamped_ttl();
        let now = Utc::now();
        let mut builder = SignedUrlBuilder::for_object(&self.bucket_path, key.as_str()).with_expiration(ttl);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        if let Some(cd) = options.content_disposition() {
            builder = builder.with_query_param("response-content-disposition", cd);
        }
        if let Some(ct) = &options.content_type {
            builder = builder.with_query_param("response-content-type", ct);
        }
        let url = builder
            .sign_with(signer)
            .await
            .map_err(|e| StorageError::Unavailable(format!("gcs signing failed: {e}")))?;
        // The builder stamps its own time just after `now`; rounding `now` down keeps the promise conservative.
        let secs = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
        let expires_at = DateTime::<Utc>::from_timestamp(now.timestamp(), 0).unwrap_or(now) + secs;
        Ok(SignedUrl { url, expires_at })
    }

    async fn check(&self) -> Result<()> {
        tokio::time::timeout(CHECK_TIMEOUT, self.admin.check_bucket())
            .await
            .map_err(|_| StorageError::Unavailable("gcs check: timed out".to_owned()))?
    }

    /// GCS buckets are not ours to create: this only checks that the bucket exists.
    async fn ensure_ready(&self) -> Result<()> {
        self.check().await
    }
}
