//! Image ingestion: one image result → checked, decoded, sniffed, hashed, stored, its object row written →
//! the [`AttachmentMeta`] the `attachment` event announces.
//!
//! The checks (`image_check.rs`: length before decoding, strict decode, size again, format by magic bytes,
//! sha256) run on the blocking pool; then the bytes are stored under a tenant-scoped key and the metadata row is
//! written. A failure after the object was written removes it; a failure before leaves no row.
//!
//! Memory: the base64 is the upstream event's own reads ([`B64`]), decoded across them and hashed as it is
//! decoded, and dropped the moment it is decoded; the CPU work runs on the blocking pool, at most one image
//! per core at once, before waiting for an upload slot — so at most one base64 and one decoded copy of an
//! image exist, and only while it is being handled.

use agentd_db::{AttachmentMeta, Db, NewObject};
use agentd_ids::{ObjectKey, TenantId};
use agentd_responses::B64;
use agentd_storage::BlobStore;
use std::sync::Arc;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::image_check::{Checked, IngestFailure, check_b64, max_b64_chars};

/// Process-wide bounds on image work: decodes at once (one per core) and uploads at once.
pub(crate) struct IngestPool {
    cpu: Semaphore,
    uploads: Semaphore,
}

impl IngestPool {
    /// A CPU slot for checking one image.
    pub(crate) async fn cpu(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.cpu.acquire().await.ok()
    }

    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            cpu: Semaphore::new(cores),
            uploads: Semaphore::new(4),
        }
    }
}

/// Where a turn's images go: handed to the relay, which calls [`Ingest::image`] for each result.
pub(crate) struct Ingest {
    pub store: Arc<dyn BlobStore>,
    pub db: Db,
    pub tenant: TenantId,
    pub conversation: Uuid,
    pub max_bytes: u64,
    pub pool: Arc<IngestPool>,
}

/// Where and how an image is stored.
pub(crate) struct Placement<'a> {
    pub conversation: Option<Uuid>,
    pub tool_call_id: Option<&'a str>,
    pub kind: &'static str,
}

impl Ingest {
    /// Decodes, checks and stores one image result of this turn's conversation.
    pub(crate) async fn image(&self, tool_call_id: &str, b64: B64) -> Result<AttachmentMeta, IngestFailure> {
        let checked = decode(&self.pool, b64, self.max_bytes).await?;
        let at = Placement {
            conversation: Some(self.conversation),
            tool_call_id: Some(tool_call_id),
            kind: "generated",
        };
        store(&self.pool, &self.store, &self.db, &self.tenant, at, checked).await
    }
}

/// [`check_b64`] on the blocking pool, one image per core at once. The base64 is dropped when it is decoded.
pub(crate) async fn decode(pool: &IngestPool, b64: B64, max_bytes: u64) -> Result<Checked, IngestFailure> {
    if b64.len() as u64 > max_b64_chars(max_bytes) {
        return Err(IngestFailure::new(
            "image_too_large",
            format!("{} base64 characters", b64.len()),
        ));
    }
    let _cpu = pool.cpu().await;
    tokio::task::spawn_blocking(move || check_b64(&b64, max_bytes))
        .await
        .unwrap_or_else(|e| Err(IngestFailure::new("storage_failed", format!("decoder task: {e}"))))
}

/// Stores checked bytes (one upload slot) and records them; the object is removed again if its row cannot be
/// written.
pub(crate) async fn store(
    pool: &IngestPool,
    store: &Arc<dyn BlobStore>,
    db: &Db,
    tenant: &TenantId,
    at: Placement<'_>,
    checked: Checked,
) -> Result<AttachmentMeta, IngestFailure> {
    let object_id = Uuid::now_v7();
    let oid = object_id.simple().to_string();
    let ext = checked.format.ext();
    let key = match at.conversation {
        Some(c) => ObjectKey::in_conversation(tenant, &c.simple().to_string(), &oid, ext),
        None => ObjectKey::upload(tenant, &oid, ext),
    }
    .map_err(|e| IngestFailure::new("storage_failed", e.to_string()))?;
    let stem = at.tool_call_id.map_or_else(|| oid.clone(), str::to_owned);
    let filename = format!("image-{stem}.{ext}");
    let size = checked.bytes.len() as i64;
    let mime = checked.format.mime();
    {
        let _slot = pool.uploads.acquire().await;
        store
            .put_digested(&key, checked.bytes, mime, &checked.sha256)
            .await
            .map_err(|e| IngestFailure::new("storage_failed", format!("put {key}: {e}")))?;
    }
    let row = NewObject {
        id: object_id,
        object_key: key.clone(),
        conversation_id: at.conversation,
        tool_call_id: at.tool_call_id.map(str::to_owned),
        kind: at.kind,
        filename: filename.clone(),
        mime_type: mime.to_owned(),
        size_bytes: size,
        sha256: checked.sha256,
    };
    if let Err(e) = db.scoped(tenant).insert_object(&row).await {
        if let Err(del) = store.delete(&key).await {
            tracing::error!(key = %key, error = %del, "could not remove an object whose row failed; it is orphaned");
        }
        return Err(IngestFailure::new("storage_failed", format!("metadata row: {e}")));
    }
    Ok(AttachmentMeta {
        object_id,
        object_key: key,
        filename,
        mime_type: mime.to_owned(),
        size_bytes: size,
        tool_call_id: at.tool_call_id.map(str::to_owned),
    })
}
