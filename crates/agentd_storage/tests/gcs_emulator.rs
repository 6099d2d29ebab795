//! GCS-only behaviour against fake-gcs-server: the shape of V4 signed URLs (the emulator checks no signature,
//! so the conformance suite's download proves reachability only), and what needs credentials. Needs
//! `AGENTD_TEST_GCS_ENDPOINT` (see `scripts/storage-services.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // test support code outside #[test] fns

mod common;

use std::time::Duration;

use agentd_storage::{ObjectKey, Provider, StorageConfig, StorageError, UrlOptions, build};
use common::{create_gcs_bucket, external_endpoint, random_hex, tenant, write_service_account};

fn gcs_config(endpoint: &str, bucket: &str) -> StorageConfig {
    StorageConfig {
        provider: Provider::Gcs,
        gcs_bucket: Some(bucket.to_owned()),
        gcs_endpoint: Some(endpoint.to_owned()),
        ..StorageConfig::default()
    }
}

#[tokio::test]
async fn signed_url_is_v4_on_the_endpoint() {
    let Some(endpoint) = external_endpoint("AGENTD_TEST_GCS_ENDPOINT") else {
        return;
    };
    let bucket = format!("agentd-test-{}", random_hex(6));
    create_gcs_bucket(&reqwest::Client::new(), &endpoint, &bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = gcs_config(&endpoint, &bucket);
    config.gcs_credentials_path = Some(write_service_account(dir.path()));
    let store = build(&config).await.unwrap();
    let key = ObjectKey::in_conversation(&tenant(), "c", "o", "png").unwrap();
    let opts = UrlOptions::new(Duration::from_secs(600)).with_filename("image.png");
    let url = store.signed_url(&key, &opts).await.unwrap().url;
    assert!(url.starts_with(&format!("{endpoint}/{bucket}/tenants/")), "{url}");
    for part in [
        "X-Goog-Algorithm=GOOG4-RSA-SHA256",
        "X-Goog-Credential=agentd-test%40agentd-test.iam.gserviceaccount.com%2F",
        "X-Goog-Expires=600",
        "X-Goog-SignedHeaders=host",
        "response-content-disposition=inline%3B%20filename%3D%22image.png%22",
        "X-Goog-Signature=",
    ] {
        assert!(url.contains(part), "{part} missing in {url}");
    }
}

#[tokio::test]
async fn emulator_without_credentials_cannot_sign() {
    let Some(endpoint) = external_endpoint("AGENTD_TEST_GCS_ENDPOINT") else {
        return;
    };
    let bucket = format!("agentd-test-{}", random_hex(6));
    create_gcs_bucket(&reqwest::Client::new(), &endpoint, &bucket).await;
    let store = build(&gcs_config(&endpoint, &bucket)).await.unwrap();
    store.ensure_ready().await.unwrap();
    let key = ObjectKey::upload(&tenant(), "o", "png").unwrap();
    let err = store
        .signed_url(&key, &UrlOptions::new(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Config(_)), "{err}");
}

#[tokio::test]
async fn missing_bucket_is_a_config_error() {
    let Some(endpoint) = external_endpoint("AGENTD_TEST_GCS_ENDPOINT") else {
        return;
    };
    let store = build(&gcs_config(
        &endpoint,
        &format!("agentd-missing-{}", random_hex(6)),
    ))
    .await
    .unwrap();
    let err = store.ensure_ready().await.unwrap_err();
    assert!(matches!(err, StorageError::Config(_)), "{err}");
}

#[tokio::test]
async fn unreadable_credentials_are_a_config_error() {
    let config = StorageConfig {
        gcs_credentials_path: Some("/nonexistent/agentd/key.json".into()),
        ..gcs_config("http://127.0.0.1:9", "b")
    };
    let err = build(&config).await.unwrap_err();
    assert!(matches!(err, StorageError::Config(_)), "{err}");
}
