//! S3-only behaviour against SeaweedFS, a real S3 server that checks SigV4 signatures and expiry: presigned URLs
//! point at the public endpoint, and the server refuses tampered and expired URLs. Needs
//! `AGENTD_TEST_S3_ENDPOINT` (see `scripts/storage-services.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // test support code outside #[test] fns

mod common;

use std::time::Duration;

use agentd_storage::{ObjectKey, Provider, StorageError, UrlOptions, build};
use bytes::Bytes;
use common::{external_endpoint, random_hex, s3_config, tenant};

async fn store_with_object(
    public_endpoint: Option<String>,
) -> Option<(std::sync::Arc<dyn agentd_storage::BlobStore>, ObjectKey)> {
    let endpoint = external_endpoint("AGENTD_TEST_S3_ENDPOINT")?;
    let mut config = s3_config(&endpoint, &format!("agentd-test-{}", random_hex(6)));
    config.minio_public_endpoint = public_endpoint;
    let store = build(&config).await.unwrap();
    store.ensure_ready().await.unwrap();
    let key = ObjectKey::upload(&tenant(), "img", "png").unwrap();
    store
        .put(&key, Bytes::from_static(b"presigned bytes"), "image/png")
        .await
        .unwrap();
    Some((store, key))
}

#[tokio::test]
async fn presigned_url_uses_the_public_endpoint() {
    let Some(endpoint) = external_endpoint("AGENTD_TEST_S3_ENDPOINT") else {
        return;
    };
    // `localhost` reaches the same server as `127.0.0.1` but is a different host in the signature.
    let public = endpoint.replace("127.0.0.1", "localhost");
    assert_ne!(public, endpoint, "the test expects a 127.0.0.1 endpoint");
    let Some((store, key)) = store_with_object(Some(public.clone())).await else {
        return;
    };
    let opts = UrlOptions::new(Duration::from_secs(60))
        .with_filename("cat.png")
        .with_content_type("image/png");
    let signed = store.signed_url(&key, &opts).await.unwrap();
    assert!(signed.url.starts_with(&format!("{public}/")), "{}", signed.url);
    assert!(signed.url.contains("X-Amz-Signature="));
    let resp = reqwest::get(&signed.url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-disposition"],
        "inline; filename=\"cat.png\""
    );
    assert_eq!(
        resp.bytes().await.unwrap(),
        Bytes::from_static(b"presigned bytes")
    );

    // Calling the internal host with a URL signed for the public one breaks the signature.
    let internal = signed.url.replacen(&public, &endpoint, 1);
    assert_eq!(reqwest::get(&internal).await.unwrap().status(), 403);
}

#[tokio::test]
async fn tampered_signature_is_refused() {
    let Some((store, key)) = store_with_object(None).await else {
        return;
    };
    let signed = store
        .signed_url(&key, &UrlOptions::new(Duration::from_secs(60)))
        .await
        .unwrap();
    let (head, sig) = signed.url.rsplit_once("X-Amz-Signature=").unwrap();
    let flipped: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '0' { '1' } else { '0' }
            } else {
                c
            }
        })
        .collect();
    let resp = reqwest::get(format!("{head}X-Amz-Signature={flipped}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The untouched URL works; the bare object URL without a signature does not.
    assert_eq!(reqwest::get(&signed.url).await.unwrap().status(), 200);
    assert_eq!(
        reqwest::get(signed.url.split('?').next().unwrap())
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn expired_url_is_refused() {
    let Some((store, key)) = store_with_object(None).await else {
        return;
    };
    let signed = store
        .signed_url(&key, &UrlOptions::new(Duration::from_secs(1)))
        .await
        .unwrap();
    // Wait until the URL is certainly past its expiry (second granularity on both sides).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resp = reqwest::get(&signed.url).await.unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn s3_provider_only_checks_the_bucket() {
    let Some(endpoint) = external_endpoint("AGENTD_TEST_S3_ENDPOINT") else {
        return;
    };
    let mut config = s3_config(&endpoint, &format!("agentd-missing-{}", random_hex(6)));
    config.provider = Provider::S3;
    let store = build(&config).await.unwrap();
    let err = store.ensure_ready().await.unwrap_err();
    assert!(matches!(err, StorageError::Config(_)), "{err}");
    assert!(matches!(
        store.check().await.unwrap_err(),
        StorageError::Config(_)
    ));
}

#[tokio::test]
async fn wrong_credentials_are_a_config_error_without_the_secret() {
    let Some(endpoint) = external_endpoint("AGENTD_TEST_S3_ENDPOINT") else {
        return;
    };
    let mut config = s3_config(&endpoint, "agentd-any");
    config.minio_secret_key = Some(agentd_storage::Secret::new("wrong-secret-value"));
    let store = build(&config).await.unwrap();
    let err = store.check().await.unwrap_err();
    assert!(matches!(err, StorageError::Config(_)), "{err}");
    assert!(!err.to_string().contains("wrong-secret-value"));
    assert!(!format!("{store:?}").contains("wrong-secret-value"));
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let store = build(&s3_config(&endpoint, "agentd-any")).await.unwrap();
    let err = store.check().await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
}

/// One PUT received by [`capture_put`]: its `x-amz-content-sha256` header.
async fn capture_put(put: impl AsyncFnOnce(std::sync::Arc<dyn agentd_storage::BlobStore>)) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let head_end = loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "request cut short");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_owned()))
        };
        let len: usize = header("content-length").unwrap().parse().unwrap();
        while buf.len() < head_end + len {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "body cut short");
            buf.extend_from_slice(&chunk[..n]);
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        header("x-amz-content-sha256")
    });
    put(build(&s3_config(&endpoint, "captured")).await.unwrap()).await;
    server.await.unwrap()
}

#[tokio::test]
async fn a_digested_put_is_signed_with_the_given_digest_not_a_second_hash() {
    let bytes = Bytes::from_static(b"the real bytes");
    let key = ObjectKey::upload(&tenant(), "digested", "png").unwrap();
    // A digest the SDK would never compute from these bytes: seen on the wire, it was not recomputed.
    let given = common::sha256_hex(b"other bytes");
    let (k, b, g) = (key.clone(), bytes.clone(), given.clone());
    let sent = capture_put(async move |store| {
        store.put_digested(&k, b, "image/png", &g).await.unwrap();
    })
    .await;
    assert_eq!(sent.as_deref(), Some(given.as_str()));
    // A plain put is hashed by the SDK.
    let sent = capture_put(async move |store| {
        store.put(&key, bytes, "image/png").await.unwrap();
    })
    .await;
    assert_eq!(sent, Some(common::sha256_hex(b"the real bytes")));
}
