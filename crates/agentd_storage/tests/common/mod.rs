//! Test fixtures shared by the integration tests: one store per backend (memory, local disk, SeaweedFS as
//! MinIO, fake-gcs-server as GCS, and real GCS when enabled), each with its own bucket or directory, plus a
//! tiny file server that plays the HTTP layer's `/v1/files` route for the self-signing stores.
#![allow(dead_code)]

use std::any::Any;
use std::sync::Arc;

use agentd_storage::{BlobStore, Provider, Secret, StorageConfig, TenantId, build};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const SCRIPT_HINT: &str = "start the test servers with `scripts/storage-services.sh start target/storage-services \
     && source target/storage-services/storage.env`, or set AGENTD_TEST_SKIP_EXTERNAL=1 to skip these tests";

pub enum Backend {
    Memory,
    Local,
    S3,
    Gcs,
    /// Real GCS through StorageControl (gRPC): only with AGENTD_TEST_GCS_REAL=1.
    GcsReal,
}

pub struct Fixture {
    pub store: Arc<dyn BlobStore>,
    pub http: reqwest::Client,
    /// fake-gcs-server takes an object's content type from the media part's own header (which the
    /// google-cloud-storage client does not set) or sniffs it, instead of from the object metadata as GCS does.
    pub content_type_is_sniffed: bool,
    _guards: Vec<Box<dyn Any + Send>>,
}

/// A random lower-case hex string of `n` bytes.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).unwrap();
    hex::encode(buf)
}

/// Lowercase hex SHA-256, as `put_digested` takes it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// A tenant id no other test uses.
pub fn tenant() -> TenantId {
    TenantId::parse(&format!("t-{}", random_hex(6))).unwrap()
}

/// The endpoint from `var`, `None` when external tests are skipped, and a failing test otherwise.
pub fn external_endpoint(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("AGENTD_TEST_SKIP_EXTERNAL").as_deref() == Ok("1") => {
            eprintln!("skipped: {var} is not set and AGENTD_TEST_SKIP_EXTERNAL=1");
            None
        }
        _ => panic!("{var} is not set: {SCRIPT_HINT}"),
    }
}

pub fn s3_config(endpoint: &str, bucket: &str) -> StorageConfig {
    StorageConfig {
        provider: Provider::Minio,
        minio_endpoint: Some(endpoint.to_owned()),
        minio_access_key: Some(
            std::env::var("AGENTD_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "minioadmin".into()),
        ),
        minio_secret_key: Some(Secret::new(
            std::env::var("AGENTD_TEST_S3_SECRET_KEY").unwrap_or_else(|_| "minioadmin".into()),
        )),
        minio_bucket: Some(bucket.to_owned()),
        ..StorageConfig::default()
    }
}

pub use agentd_storage::testing::write_service_account;

/// Creates a bucket on fake-gcs-server (GCS buckets are not ours to create in production).
pub async fn create_gcs_bucket(http: &reqwest::Client, endpoint: &str, bucket: &str) {
    let resp = http
        .post(format!("{endpoint}/storage/v1/b?project=agentd-test"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "creating bucket: {}", resp.status());
}

pub async fn fixture(backend: Backend) -> Option<Fixture> {
    let http = reqwest::Client::new();
    let mut guards: Vec<Box<dyn Any + Send>> = Vec::new();
    let content_type_is_sniffed = matches!(backend, Backend::Gcs);
    let store = match backend {
        Backend::Memory | Backend::Local => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut config = StorageConfig {
                provider: Provider::Memory,
                public_base_url: Some(format!("http://{}", listener.local_addr().unwrap())),
                url_signing_secret: Some(Secret::new(random_hex(32))),
                ..StorageConfig::default()
            };
            if matches!(backend, Backend::Local) {
                let dir = tempfile::tempdir().unwrap();
                config.provider = Provider::Filesystem;
                config.filesystem_root = dir.path().join("objects");
                guards.push(Box::new(dir));
            }
            let store = build(&config).await.unwrap();
            let server = tokio::spawn(serve_files(listener, store.clone()));
            guards.push(Box::new(AbortOnDrop(server)));
            store
        }
        Backend::S3 => {
            let endpoint = external_endpoint("AGENTD_TEST_S3_ENDPOINT")?;
            build(&s3_config(&endpoint, &format!("agentd-test-{}", random_hex(6))))
                .await
                .unwrap()
        }
        Backend::Gcs => {
            let endpoint = external_endpoint("AGENTD_TEST_GCS_ENDPOINT")?;
            let bucket = format!("agentd-test-{}", random_hex(6));
            create_gcs_bucket(&http, &endpoint, &bucket).await;
            let dir = tempfile::tempdir().unwrap();
            let config = StorageConfig {
                provider: Provider::Gcs,
                gcs_bucket: Some(bucket),
                gcs_endpoint: Some(endpoint),
                gcs_credentials_path: Some(write_service_account(dir.path())),
                ..StorageConfig::default()
            };
            guards.push(Box::new(dir));
            build(&config).await.unwrap()
        }
        Backend::GcsReal => {
            if std::env::var("AGENTD_TEST_GCS_REAL").as_deref() != Ok("1") {
                eprintln!("skipped: real-GCS tests run only with AGENTD_TEST_GCS_REAL=1");
                return None;
            }
            let var = |name: &str| {
                std::env::var(name).unwrap_or_else(|_| panic!("AGENTD_TEST_GCS_REAL=1 needs {name}"))
            };
            let config = StorageConfig {
                provider: Provider::Gcs,
                gcs_bucket: Some(var("AGENTD_TEST_GCS_BUCKET")),
                gcs_credentials_path: Some(var("AGENTD_TEST_GCS_CREDENTIALS_PATH").into()),
                ..StorageConfig::default()
            };
            build(&config).await.unwrap()
        }
    };
    store.ensure_ready().await.unwrap();
    Some(Fixture {
        store,
        http,
        content_type_is_sniffed,
        _guards: guards,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(serde::Deserialize)]
struct SignedQuery {
    expires: i64,
    sig: String,
}

/// What the HTTP layer's file route does: verify the signature, then stream the object.
async fn serve_files(listener: tokio::net::TcpListener, store: Arc<dyn BlobStore>) {
    let app = axum::Router::new()
        .route("/v1/files/{*key}", axum::routing::get(file))
        .with_state(store);
    axum::serve(listener, app).await.unwrap();
}

async fn file(
    State(store): State<Arc<dyn BlobStore>>,
    UrlPath(key): UrlPath<String>,
    Query(q): Query<SignedQuery>,
) -> Response {
    let Some(signer) = store.url_signer() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !signer.verify_signed(&key, q.expires, &q.sig, chrono::Utc::now()) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Ok(key) = agentd_storage::ObjectKey::parse(&key) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match store.get(&key).await {
        Ok(blob) => ([(header::CONTENT_TYPE, blob.content_type)], blob.bytes).into_response(),
        Err(e) if e.is_not_found() => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
