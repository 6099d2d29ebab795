//! Bucket checks, object deletion and listing for the GCS backend. `google-cloud-storage` offers these only on
//! `StorageControl`, which speaks gRPC (`google.storage.v2`); the emulators (fake-gcs-server serves only the JSON
//! API and the legacy `google.storage.v1` gRPC service) cannot answer it. So against a custom endpoint
//! (`GCS_ENDPOINT`) these calls use the GCS JSON API with reqwest, and against real GCS they use
//! `StorageControl`.

use std::time::Duration;

use google_cloud_gax::error::rpc::Code;
use google_cloud_storage::client::StorageControl;
use serde::Deserialize;

use crate::error::{Result, StorageError};

/// The bucket and object administration calls the GCS backend needs.
#[derive(Debug)]
pub(crate) enum GcsAdmin {
    /// Real GCS: gRPC through `StorageControl`.
    Control {
        control: StorageControl,
        bucket_path: String,
    },
    /// An emulator: the JSON API over plain HTTP.
    Json {
        http: reqwest::Client,
        endpoint: String,
        bucket: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    items: Vec<ListItem>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ListItem {
    name: String,
}

/// Keys only contain `[A-Za-z0-9._-/]`; the JSON API wants the slash escaped in a path segment.
fn encode(name: &str) -> String {
    name.replace('/', "%2F")
}

impl GcsAdmin {
    pub(crate) fn json(endpoint: &str, bucket: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| StorageError::Config(format!("gcs: building the HTTP client failed: {e}")))?;
        Ok(Self::Json {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            bucket: bucket.to_owned(),
        })
    }

    /// Ok when the bucket exists; [`StorageError::Config`] when it does not.
    pub(crate) async fn check_bucket(&self) -> Result<()> {
        match self {
            Self::Control { control, bucket_path } => {
                match control.get_bucket().set_name(bucket_path).send().await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(bucket_missing(map_gax_err("check bucket", &e))),
                }
            }
            Self::Json {
                http,
                endpoint,
                bucket,
            } => {
                let resp = http
                    .get(format!("{endpoint}/storage/v1/b/{bucket}"))
                    .send()
                    .await
                    .map_err(|e| unavailable("check bucket", &e))?;
                status_result("check bucket", resp.status()).map_err(bucket_missing)
            }
        }
    }

    /// Deletes one object; a missing object is not an error.
    pub(crate) async fn delete(&self, name: &str) -> Result<()> {
        let result = match self {
            Self::Control { control, bucket_path } => control
                .delete_object()
                .set_bucket(bucket_path)
                .set_object(name)
                .send()
                .await
                .map_err(|e| map_gax_err("delete", &e)),
            Self::Json {
                http,
                endpoint,
                bucket,
            } => {
                let resp = http
                    .delete(format!("{endpoint}/storage/v1/b/{bucket}/o/{}", encode(name)))
                    .send()
                    .await
                    .map_err(|e| unavailable("delete", &e))?;
                status_result("delete", resp.status())
            }
        };
        match result {
            Err(StorageError::NotFound) => Ok(()),
            other => other,
        }
    }

    /// Names of all objects under `prefix`.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token = String::new();
        loop {
            let next = match self {
                Self::Control { control, bucket_path } => {
                    let page = control
                        .list_objects()
                        .set_parent(bucket_path)
                        .set_prefix(prefix)
                        .set_page_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| map_gax_err("list", &e))?;
                    names.extend(page.objects.into_iter().map(|o| o.name));
                    page.next_page_token
                }
                Self::Json {
                    http,
                    endpoint,
                    bucket,
                } => {
                    let mut req = http
                        .get(format!("{endpoint}/storage/v1/b/{bucket}/o"))
                        .query(&[("prefix", prefix)]);
                    if !token.is_empty() {
                        req = req.query(&[("pageToken", token.as_str())]);
                    }
                    let resp = req.send().await.map_err(|e| unavailable("list", &e))?;
                    status_result("list", resp.status())?;
                    let page: ListPage = resp.json().await.map_err(|e| unavailable("list", &e))?;
                    names.extend(page.items.into_iter().map(|i| i.name));
                    page.next_page_token.unwrap_or_default()
                }
            };
            if next.is_empty() {
                return Ok(names);
            }
            token = next;
        }
    }
}

fn bucket_missing(e: StorageError) -> StorageError {
    match e {
        StorageError::NotFound => StorageError::Config("the GCS bucket does not exist".to_owned()),
        other => other,
    }
}

fn unavailable(op: &str, e: &reqwest::Error) -> StorageError {
    // reqwest's Display includes the URL, which here holds only the endpoint, bucket and key: no secrets.
    StorageError::Unavailable(format!("gcs {op}: {e}"))
}

fn status_result(op: &str, status: reqwest::StatusCode) -> Result<()> {
    match status.as_u16() {
        200..=299 => Ok(()),
        404 => Err(StorageError::NotFound),
        401 | 403 => Err(StorageError::Config(format!(
            "gcs {op}: access denied ({status})"
        ))),
        s if s >= 500 || s == 429 => Err(StorageError::Unavailable(format!("gcs {op}: {status}"))),
        _ => Err(StorageError::Other(format!("gcs {op}: {status}"))),
    }
}

/// Maps a `google-cloud-storage` error (HTTP or gRPC) onto ours.
pub(crate) fn map_gax_err(op: &str, e: &google_cloud_storage::Error) -> StorageError {
    let code = e.status().map(|s| s.code);
    if e.http_status_code() == Some(404) || code == Some(Code::NotFound) {
        return StorageError::NotFound;
    }
    if e.is_authentication()
        || matches!(e.http_status_code(), Some(401 | 403))
        || matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated))
    {
        return StorageError::Config(format!("gcs {op}: access denied, check the credentials: {e}"));
    }
    if e.is_timeout()
        || e.is_connect()
        || e.is_io()
        || e.is_exhausted()
        || e.is_transport()
        || e.http_status_code().is_some_and(|s| s >= 500 || s == 429)
        || matches!(
            code,
            Some(Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted)
        )
    {
        return StorageError::Unavailable(format!("gcs {op}: {e}"));
    }
    StorageError::Other(format!("gcs {op}: {e}"))
}
