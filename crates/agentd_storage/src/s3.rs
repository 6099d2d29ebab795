//! The MinIO / S3 backend over `aws-sdk-s3`: path-style requests, static credentials (MinIO) or the AWS default
//! credential chain (S3 without keys), and presigned GET URLs built against the *public* endpoint, because a
//! SigV4 signature covers the host the client will call.

use std::time::{Duration, SystemTime};

use aws_runtime::auth::PayloadSigningOverride;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::Secret;
use crate::error::{Result, StorageError};
use crate::{Blob, BlobStore, Provider, SignedUrl, UrlOptions};
use agentd_ids::{KeyPrefix, ObjectKey};

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// What the S3 backend needs; [`crate::StorageConfig`] fills it from the `MINIO_*` settings.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// [`Provider::Minio`] (bucket created by us) or [`Provider::S3`] (bucket must exist).
    pub provider: Provider,
    /// Where agentd reaches the server, e.g. `http://minio:9000`. Required for MinIO; `None` means AWS.
    pub endpoint: Option<String>,
    /// Where clients reach it; presigned URLs point here. Defaults to `endpoint`.
    pub public_endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Static credentials. Required for MinIO; for S3 the AWS default chain is used when they are absent.
    pub access_key: Option<String>,
    pub secret_key: Option<Secret>,
}

/// Objects in an S3-compatible bucket.
#[derive(Debug)]
pub struct S3Store {
    client: Client,
    presign_client: Client,
    bucket: String,
    region: String,
    provider: Provider,
}

impl S3Store {
    /// Builds the clients; makes no request.
    #[tracing::instrument(name = "s3.new", skip(settings), fields(provider = ?settings.provider, bucket = %settings.bucket))]
    pub async fn new(settings: S3Settings) -> Result<Self> {
        if settings.bucket.is_empty() {
            return Err(StorageError::Config("MINIO_BUCKET is required".to_owned()));
        }
        let base = match (&settings.access_key, &settings.secret_key) {
            (Some(ak), Some(sk)) => aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(Credentials::new(ak, sk.expose(), None, None, "agentd-static")),
            (None, None) if settings.provider == Provider::S3 => {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(settings.region.clone()))
                    .load()
                    .await;
                aws_sdk_s3::config::Builder::from(&shared)
            }
            _ => {
                return Err(StorageError::Config(
                    "MINIO_ACCESS_KEY and MINIO_SECRET_KEY must both be set".to_owned(),
                ));
            }
        };
        let base = base
            .region(Region::new(settings.region.clone()))
            .force_path_style(true)
            // Only where the API requires a checksum: older MinIO and other S3 look-alikes reject the rest.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        let endpoint = match (settings.provider, &settings.endpoint) {
            (Provider::Minio, None) => {
                return Err(StorageError::Config(
                    "MINIO_ENDPOINT is required for minio".to_owned(),
                ));
            }
            (_, e) => e.as_deref().map(check_endpoint).transpose()?,
        };
        let public = settings
            .public_endpoint
            .as_deref()
            .map(check_endpoint)
            .transpose()?;
        let mut internal = base.clone();
        if let Some(e) = endpoint {
            internal = internal.endpoint_url(e);
        }
        let client = Client::from_conf(internal.build());
        let presign_client = match public.or(endpoint) {
            Some(p) => Client::from_conf(base.endpoint_url(p).build()),
            None => client.clone(),
        };
        Ok(Self {
            client,
            presign_client,
            bucket: settings.bucket,
            region: settings.region,
            provider: settings.provider,
        })
    }

    async fn create_bucket(&self) -> Result<()> {
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        if self.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "created the bucket");
                Ok(())
            }
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
            Err(e) => Err(map_err("create bucket", e)),
        }
    }
}

impl S3Store {
    async fn put_object(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
        sha256: Option<&str>,
    ) -> Result<()> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .body(ByteStream::from(bytes));
        let sent = match sha256 {
            Some(h) => {
                req.customize()
                    .interceptor(PrecomputedSha256(h.to_owned()))
                    .send()
                    .await
            }
            None => req.send().await,
        };
        sent.map_err(|e| map_err("put", e))?;
        Ok(())
    }
}

/// Gives SigV4 the payload's SHA-256 (`x-amz-content-sha256`), so that the SDK does not hash the body again.
/// The server still checks it against the bytes it receives.
#[derive(Debug)]
struct PrecomputedSha256(String);

impl Intercept for PrecomputedSha256 {
    fn name(&self) -> &'static str {
        "PrecomputedSha256"
    }

    fn modify_before_signing(
        &self,
        _ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(PayloadSigningOverride::Precomputed(self.0.clone()));
        Ok(())
    }
}

fn check_endpoint(e: &str) -> Result<&str> {
    if e.starts_with("http://") || e.starts_with("https://") {
        Ok(e.trim_end_matches('/'))
    } else {
        Err(StorageError::Config(
            "MINIO_ENDPOINT and MINIO_PUBLIC_ENDPOINT must start with http(s)://".to_owned(),
        ))
    }
}

/// Maps an SDK error onto ours. The SDK's messages carry no credentials.
fn map_err<E>(op: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let detail = DisplayErrorContext(&err);
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            return StorageError::Unavailable(format!("s3 {op}: {detail}"));
        }
        SdkError::ConstructionFailure(_) => return StorageError::Config(format!("s3 {op}: {detail}")),
        _ => {}
    }
    match (err.code(), status) {
        (Some("NoSuchBucket"), _) => StorageError::Config(format!("s3 {op}: the bucket does not exist")),
        (Some("NoSuchKey" | "NotFound"), _) | (_, Some(404)) => StorageError::NotFound,
        (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"), _) | (_, Some(401 | 403)) => {
            StorageError::Config(format!("s3 {op}: access denied, check the credentials: {detail}"))
        }
        (_, Some(s)) if s >= 500 => StorageError::Unavailable(format!("s3 {op}: {detail}")),
        _ => StorageError::Other(format!("s3 {op}: {detail}")),
    }
}

#[async_trait::async_trait]
impl BlobStore for S3Store {
    fn provider(&self) -> Provider {
        self.provider
    }

    #[tracing::instrument(level = "debug", name = "s3.put", skip(self, bytes), fields(key = %key, len = bytes.len()))]
    async fn put(&self, key: &ObjectKey, bytes: Bytes, content_type: &str) -> Result<()> {
        self.put_object(key, bytes, content_type, None).await
    }

    #[tracing::instrument(level = "debug", name = "s3.put", skip(self, bytes, sha256), fields(key = %key, len = bytes.len()))]
    async fn put_digested(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
        sha256: &str,
    ) -> Result<()> {
        self.put_object(key, bytes, content_type, Some(sha256)).await
    }

    #[tracing::instrument(level = "debug", name = "s3.get", skip(self), fields(key = %key))]
    async fn get(&self, key: &ObjectKey) -> Result<Blob> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| map_err("get", e))?;
        let content_type = out.content_type().unwrap_or(DEFAULT_CONTENT_TYPE).to_owned();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable(format!("s3 get: reading the body failed: {e}")))?
            .into_bytes();
        Ok(Blob { bytes, content_type })
    }

    #[tracing::instrument(level = "debug", name = "s3.delete", skip(self), fields(key = %key))]
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match map_err("delete", e) {
                StorageError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    #[tracing::instrument(level = "debug", name = "s3.delete_prefix", skip(self), fields(prefix = %prefix))]
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64> {
        let mut deleted = 0u64;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix.as_str())
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| map_err("list", e))?;
            let ids = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| StorageError::Other(format!("s3 delete: {e}")))?;
            if !ids.is_empty() {
                let n = ids.len() as u64;
                let delete = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| StorageError::Other(format!("s3 delete: {e}")))?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| map_err("delete", e))?;
                if let Some(err) = out.errors().first() {
                    return Err(StorageError::Other(format!(
                        "s3 delete: {} objects not deleted, first: {}",
                        out.errors().len(),
                        err.code().unwrap_or("unknown error")
                    )));
                }
                deleted += n;
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(deleted),
            }
        }
    }

    #[tracing::instrument(level = "debug", name = "s3.signed_url", skip(self, options), fields(key = %key))]
    async fn signed_url(&self, key: &ObjectKey, options: &UrlOptions) -> Result<SignedUrl> {
        let ttl = options.clamped_ttl();
        // Whole seconds, so that the promised expiry equals the signed one (X-Amz-Date has second precision).
        let now = DateTime::<Utc>::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
        let config = PresigningConfig::builder()
            .start_time(SystemTime::from(now))
            .expires_in(ttl)
            .build()
            .map_err(|e| StorageError::Other(format!("s3 presign: {e}")))?;
        let mut req = self
            .presign_client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str());
        if let Some(cd) = options.content_disposition() {
            req = req.response_content_disposition(cd);
        }
        if let Some(ct) = &options.content_type {
            req = req.response_content_type(ct);
        }
        let presigned = req.presigned(config).await.map_err(|e| map_err("presign", e))?;
        let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
        Ok(SignedUrl {
            url: presigned.uri().to_owned(),
            expires_at,
        })
    }

    async fn check(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(match map_err("check", e) {
                StorageError::NotFound => {
                    StorageError::Config(format!("bucket {} does not exist", self.bucket))
                }
                other => other,
            }),
        }
    }

    #[tracing::instrument(name = "s3.ensure_ready", skip(self), fields(bucket = %self.bucket))]
    async fn ensure_ready(&self) -> Result<()> {
        match self.check().await {
            Err(StorageError::Config(_)) if self.provider == Provider::Minio => self.create_bucket().await,
            other => other,
        }
    }
}
