//! Housekeeping, per process (harmless when every replica does it), every ten minutes: idempotency keys older
//! than 24 hours, run events older than `RUN_EVENTS_RETENTION_HOURS`, and uploads no conversation has used
//! within [`UPLOAD_TTL`] of their upload (their bytes, then their row) are deleted.

use crate::TurnSettings;
use agentd_db::Db;
use agentd_storage::BlobStore;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(600);

/// How long an upload is kept for a turn to use it: one no conversation uses by then would be kept for ever,
/// on the operator's disk or bill (a tenant may upload about 1 GB a minute within its rate limit).
pub(crate) const UPLOAD_TTL: chrono::Duration = chrono::Duration::hours(24);

/// Unused uploads listed at a time, and listings per sweep at most: a statement and an object store call
/// each, 10,000 a sweep — more than one tenant's rate limit lets it upload in ten minutes.
const UPLOADS_PER_LIST: i64 = 500;
const LISTS_PER_SWEEP: usize = 20;
/// Uploads that could not be deleted before a sweep stops (they are listed again, oldest first, at the next).
const FAILURES_PER_SWEEP: usize = 10;

pub(crate) async fn run(db: Db, store: Arc<dyn BlobStore>, settings: TurnSettings, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        sweep(&db, store.as_ref(), &settings).await;
    }
}

/// One sweep; failures are logged and retried at the next one.
pub(crate) async fn sweep(db: &Db, store: &dyn BlobStore, settings: &TurnSettings) {
    let now = agentd_db::now();
    match db.purge_idempotency(now - agentd_db::IDEMPOTENCY_TTL).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "expired idempotency keys purged"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot purge expired idempotency keys"),
    }
    let retention = chrono::Duration::hours(settings.run_events_retention_hours as i64);
    match db.purge_run_events(now - retention).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "expired run events purged"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot purge expired run events"),
    }
    purge_uploads(db, store, now - UPLOAD_TTL).await;
}

/// Deletes the uploads made before `before` that no conversation uses, each marked deleted in a transaction that
/// holds its row, so that a turn that comes to use one meanwhile keeps it (the turn waits for the row, or finds it
/// deleted and is told so); then its bytes and its row, outside any transaction (a store call must not hold
/// SQLite's write lock, nor a row lock). Bytes that could not be deleted are tried again at the next sweep: the
/// marked row is listed again.
async fn purge_uploads(db: &Db, store: &dyn BlobStore, before: chrono::DateTime<chrono::Utc>) {
    let (mut deleted, mut failed) = (0, 0);
    'lists: for _ in 0..LISTS_PER_SWEEP {
        let stale = match db.stale_uploads(before, UPLOADS_PER_LIST).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list unused uploads");
                break;
            }
        };
        let listed = stale.len();
        for upload in stale {
            match delete_upload(db, store, &upload, before).await {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, object_id = %upload.id, "cannot delete an unused upload");
                    failed += 1;
                    if failed == FAILURES_PER_SWEEP {
                        break 'lists;
                    }
                }
            }
        }
        if (listed as i64) < UPLOADS_PER_LIST {
            break;
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "unused uploads older than a day deleted");
    }
}

/// One unused upload marked, then its bytes and its row deleted; `false` when a conversation came to use it
/// meanwhile.
async fn delete_upload(
    db: &Db,
    store: &dyn BlobStore,
    upload: &agentd_db::StoredObject,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<bool, String> {
    let tenant = agentd_db::TenantId::parse(upload.object_key.tenant()).map_err(|e| e.to_string())?;
    let mut tx = db.scoped(&tenant).begin().await.map_err(|e| e.to_string())?;
    if !tx
        .lock_unused_upload(upload.id, before)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(false);
    }
    tx.mark_deleted(upload.id).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    store
        .delete(&upload.object_key)
        .await
        .map_err(|e| e.to_string())?;
    db.scoped(&tenant)
        .delete_object(upload.id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use agentd_db::{NewObject, ObjectKey};
    use agentd_storage::{MemoryStore, UrlSigner};
    use uuid::Uuid;

    /// An upload no conversation used within a day goes, row and bytes; one a conversation uses stays, and so
    /// does a younger one.
    #[tokio::test]
    async fn unused_uploads_older_than_a_day_are_deleted_with_their_bytes() {
        let (db, tenant) = crate::test_db().await;
        let store = MemoryStore::new(UrlSigner::random("http://127.0.0.1:1", "/v1/files").unwrap());
        let s = db.scoped(&tenant);
        let conv = s.create_conversation("u", "assistant", "t").await.unwrap();
        let mut uploads = Vec::new();
        for _ in ["old", "used", "fresh"] {
            let id = Uuid::now_v7();
            let object_key = ObjectKey::upload(&tenant, &id.simple().to_string(), "png").unwrap();
            store
                .put(&object_key, bytes::Bytes::from_static(b"png"), "image/png")
                .await
                .unwrap();
            let o = NewObject {
                id,
                object_key,
                conversation_id: None,
                tool_call_id: None,
                kind: "upload",
                filename: "x.png".into(),
                mime_type: "image/png".into(),
                size_bytes: 3,
                sha256: String::new(),
            };
            s.insert_object(&o).await.unwrap();
            uploads.push(o);
        }
        let [old, used, fresh] = &uploads[..] else {
            unreachable!()
        };
        let mut tx = s.begin().await.unwrap();
        tx.reference_objects(conv.id, &[used.id]).await.unwrap();
        tx.commit().await.unwrap();
        let Db::Sqlite(pool) = &db else { unreachable!() };
        let long_ago = agentd_db::now() - chrono::Duration::hours(25);
        for id in [old.id, used.id] {
            sqlx::query("UPDATE stored_objects SET created_at = $1 WHERE id = $2")
                .bind(long_ago)
                .bind(id)
                .execute(pool)
                .await
                .unwrap();
        }

        sweep(&db, &store, &TurnSettings::default()).await;
        assert!(s.object(old.id).await.unwrap().is_none());
        assert!(store.get(&old.object_key).await.is_err(), "its bytes");
        assert!(listed(&db).await.is_empty(), "its row, not only marked deleted");
        for kept in [used, fresh] {
            assert!(s.object(kept.id).await.unwrap().is_some());
            assert!(store.get(&kept.object_key).await.is_ok());
        }
    }

    /// The unused uploads older than a day (marked deleted or not).
    async fn listed(db: &Db) -> Vec<Uuid> {
        let stale = db
            .stale_uploads(agentd_db::now() - UPLOAD_TTL, 100)
            .await
            .unwrap();
        stale.into_iter().map(|o| o.id).collect()
    }

    /// Bytes that cannot be deleted keep their row, marked deleted (no turn or download finds it), and are tried
    /// again at the next sweep. Here the upload's path on a local disk is a directory, which `remove_file` refuses.
    #[tokio::test]
    async fn an_upload_whose_bytes_cannot_be_deleted_is_tried_again_at_the_next_sweep() {
        let (db, tenant) = crate::test_db().await;
        let root = tempfile::tempdir().unwrap();
        let signer = UrlSigner::random("http://127.0.0.1:1", "/v1/files").unwrap();
        let store = agentd_storage::LocalStore::new(root.path(), signer);
        let id = Uuid::now_v7();
        let object_key = ObjectKey::upload(&tenant, &id.simple().to_string(), "png").unwrap();
        let s = db.scoped(&tenant);
        s.insert_object(&NewObject {
            id,
            object_key: object_key.clone(),
            conversation_id: None,
            tool_call_id: None,
            kind: "upload",
            filename: "x.png".into(),
            mime_type: "image/png".into(),
            size_bytes: 3,
            sha256: String::new(),
        })
        .await
        .unwrap();
        let Db::Sqlite(pool) = &db else { unreachable!() };
        sqlx::query("UPDATE stored_objects SET created_at = $1 WHERE id = $2")
            .bind(agentd_db::now() - chrono::Duration::hours(25))
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        let in_the_way = root.path().join(object_key.as_str());
        std::fs::create_dir_all(in_the_way.join("x")).unwrap();

        sweep(&db, &store, &TurnSettings::default()).await;
        assert!(s.object(id).await.unwrap().is_none(), "marked deleted");
        assert_eq!(listed(&db).await, [id], "its row kept, to be tried again");

        std::fs::remove_dir_all(&in_the_way).unwrap();
        sweep(&db, &store, &TurnSettings::default()).await;
        assert!(listed(&db).await.is_empty(), "gone at the next sweep");
    }
}
