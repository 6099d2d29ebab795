//! One conformance suite, instantiated per backend: memory, local disk, SeaweedFS (as MinIO/S3),
//! fake-gcs-server (as GCS), and real GCS when `AGENTD_TEST_GCS_REAL=1`. The external ones read
//! `AGENTD_TEST_S3_ENDPOINT` / `AGENTD_TEST_GCS_ENDPOINT` (see `scripts/storage-services.sh`) and fail without
//! them unless `AGENTD_TEST_SKIP_EXTERNAL=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // test support code outside #[test] fns

mod common;

use std::time::Duration;

use agentd_storage::{KeyPrefix, ObjectKey, StorageError, UrlOptions};
use bytes::Bytes;
use common::{Fixture, tenant};

mod cases {
    use super::*;

    pub async fn round_trip(f: &Fixture) {
        let key = ObjectKey::upload(&tenant(), "round-trip", "png").unwrap();
        let bytes = Bytes::from_static(b"\x89PNG\r\n\x1a\n not really a png");
        f.store.put(&key, bytes.clone(), "image/png").await.unwrap();
        let blob = f.store.get(&key).await.unwrap();
        assert_eq!(blob.bytes, bytes);
        assert_eq!(blob.content_type, "image/png");
        // Overwrite replaces bytes and content type.
        f.store
            .put(&key, Bytes::from_static(b"RIFF....WEBP"), "image/webp")
            .await
            .unwrap();
        let blob = f.store.get(&key).await.unwrap();
        assert_eq!(blob.bytes, Bytes::from_static(b"RIFF....WEBP"));
        if f.content_type_is_sniffed {
            eprintln!(
                "emulator quirk: stored content type {:?} was sniffed, not taken from metadata",
                blob.content_type
            );
        } else {
            assert_eq!(blob.content_type, "image/webp");
        }
    }

    pub async fn get_missing_is_not_found(f: &Fixture) {
        let key = ObjectKey::upload(&tenant(), "missing", "png").unwrap();
        let err = f.store.get(&key).await.unwrap_err();
        assert!(matches!(err, StorageError::NotFound), "{err}");
    }

    pub async fn delete_is_idempotent(f: &Fixture) {
        let key = ObjectKey::upload(&tenant(), "doomed", "jpg").unwrap();
        f.store.delete(&key).await.unwrap();
        f.store
            .put(&key, Bytes::from_static(b"jpeg"), "image/jpeg")
            .await
            .unwrap();
        f.store.delete(&key).await.unwrap();
        assert!(f.store.get(&key).await.unwrap_err().is_not_found());
        f.store.delete(&key).await.unwrap();
    }

    pub async fn delete_prefix_is_scoped(f: &Fixture) {
        let (a, b) = (tenant(), tenant());
        let put = |key: ObjectKey| async move {
            f.store
                .put(&key, Bytes::from(key.as_str().to_owned()), "text/plain")
                .await
                .unwrap();
            key
        };
        let a_c1 = [
            put(ObjectKey::in_conversation(&a, "c1", "o1", "png").unwrap()).await,
            put(ObjectKey::in_conversation(&a, "c1", "o2", "png").unwrap()).await,
        ];
        let a_c10 = put(ObjectKey::in_conversation(&a, "c10", "o1", "png").unwrap()).await;
        let a_up = put(ObjectKey::upload(&a, "o1", "png").unwrap()).await;
        let b_c1 = put(ObjectKey::in_conversation(&b, "c1", "o1", "png").unwrap()).await;
        let b_up = put(ObjectKey::upload(&b, "o1", "png").unwrap()).await;

        let n = f
            .store
            .delete_prefix(&KeyPrefix::conversation(&a, "c1").unwrap())
            .await
            .unwrap();
        assert_eq!(n, 2);
        for k in &a_c1 {
            assert!(f.store.get(k).await.unwrap_err().is_not_found(), "{k}");
        }
        for k in [&a_c10, &a_up, &b_c1, &b_up] {
            assert_eq!(
                f.store.get(k).await.unwrap().bytes,
                Bytes::from(k.as_str().to_owned()),
                "{k}"
            );
        }

        let n = f.store.delete_prefix(&KeyPrefix::tenant(&a)).await.unwrap();
        assert_eq!(n, 2);
        for k in [&a_c10, &a_up] {
            assert!(f.store.get(k).await.unwrap_err().is_not_found(), "{k}");
        }
        for k in [&b_c1, &b_up] {
            assert!(f.store.get(k).await.is_ok(), "{k}");
        }
        // Nothing left: still fine.
        assert_eq!(f.store.delete_prefix(&KeyPrefix::tenant(&a)).await.unwrap(), 0);
        f.store.delete_prefix(&KeyPrefix::tenant(&b)).await.unwrap();
    }

    pub async fn signed_url_downloads(f: &Fixture) {
        let key = ObjectKey::in_conversation(&tenant(), "c1", "img", "png").unwrap();
        let bytes = Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<u8>>());
        f.store.put(&key, bytes.clone(), "image/png").await.unwrap();
        let before = chrono::Utc::now();
        let opts = UrlOptions::new(Duration::from_secs(300)).with_filename("image-ig_1.png");
        let signed = f.store.signed_url(&key, &opts).await.unwrap();
        assert!(
            signed.expires_at > before + chrono::Duration::seconds(250),
            "{:?}",
            signed.expires_at
        );
        assert!(
            signed.expires_at <= before + chrono::Duration::seconds(301),
            "{:?}",
            signed.expires_at
        );
        let resp = f.http.get(&signed.url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
        assert_eq!(resp.bytes().await.unwrap(), bytes);
    }

    pub async fn check_and_ensure_ready(f: &Fixture) {
        f.store.ensure_ready().await.unwrap();
        f.store.ensure_ready().await.unwrap();
        f.store.check().await.unwrap();
    }

    pub async fn tenants_never_collide(f: &Fixture) {
        let (a, b) = (tenant(), tenant());
        let ka = ObjectKey::upload(&a, "same-id", "png").unwrap();
        let kb = ObjectKey::upload(&b, "same-id", "png").unwrap();
        assert_ne!(ka, kb);
        f.store
            .put(&ka, Bytes::from_static(b"A"), "image/png")
            .await
            .unwrap();
        f.store
            .put(&kb, Bytes::from_static(b"B"), "image/png")
            .await
            .unwrap();
        assert_eq!(f.store.get(&ka).await.unwrap().bytes, Bytes::from_static(b"A"));
        assert_eq!(f.store.get(&kb).await.unwrap().bytes, Bytes::from_static(b"B"));
        f.store.delete(&ka).await.unwrap();
        assert_eq!(f.store.get(&kb).await.unwrap().bytes, Bytes::from_static(b"B"));
    }

    pub async fn six_megabytes_round_trip(f: &Fixture) {
        let key = ObjectKey::upload(&tenant(), "big", "png").unwrap();
        let mut data = vec![0u8; 6 * 1024 * 1024];
        aws_lc_rs::rand::fill(&mut data).unwrap();
        let bytes = Bytes::from(data);
        f.store.put(&key, bytes.clone(), "image/png").await.unwrap();
        let blob = f.store.get(&key).await.unwrap();
        assert_eq!(blob.bytes.len(), bytes.len());
        assert!(blob.bytes == bytes, "6 MB object differs after the round trip");
        // The same with the digest handed over (S3 signs with it instead of hashing the body again).
        let key = ObjectKey::upload(&tenant(), "big-digested", "png").unwrap();
        let sha = common::sha256_hex(&bytes);
        f.store
            .put_digested(&key, bytes.clone(), "image/png", &sha)
            .await
            .unwrap();
        assert!(f.store.get(&key).await.unwrap().bytes == bytes);
    }
}

/// Instantiates every case as a `#[tokio::test]` in a module named after the backend.
macro_rules! conformance_suite {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;
            conformance_suite!(@cases $backend; round_trip, get_missing_is_not_found, delete_is_idempotent,
                delete_prefix_is_scoped, signed_url_downloads, check_and_ensure_ready, tenants_never_collide,
                six_megabytes_round_trip);
        }
    };
    (@cases $backend:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(f) = common::fixture($backend).await {
                    cases::$case(&f).await;
                }
            }
        )+
    };
}

conformance_suite!(memory, common::Backend::Memory);
conformance_suite!(local_disk, common::Backend::Local);
conformance_suite!(seaweedfs_s3, common::Backend::S3);
conformance_suite!(fake_gcs, common::Backend::Gcs);
conformance_suite!(real_gcs, common::Backend::GcsReal);
