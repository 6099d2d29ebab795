//! Uploaded images: `POST /v1/uploads` (checked by their bytes, stored, recorded) and, for a turn that
//! attaches them, their bytes as `data:` URLs for the upstream request — read by the turn task just before it
//! calls the upstream, after admission, so refused, rate-limited or replayed requests never read them.

use crate::context::Context;
use crate::failure::{Code, Failure};
use crate::image_check::{self, IngestFailure};
use crate::ingest::{self, Placement};
use crate::per_tenant::Held;
use agentd_db::{AttachmentMeta, TenantId};
use agentd_storage::BlobStore;
use bytes::Bytes;
use std::sync::Arc;

/// The images as `data:` URLs for the upstream request.
pub(crate) async fn data_urls(
    store: &Arc<dyn BlobStore>,
    metas: &[AttachmentMeta],
) -> Result<Vec<String>, Failure> {
    let mut urls = Vec::with_capacity(metas.len());
    for meta in metas {
        let blob = store.get(&meta.object_key).await.map_err(|e| {
            if e.is_not_found() {
                Failure::new(
                    Code::AttachmentNotFound,
                    format!("Uploaded image {} is gone; upload it again.", meta.object_id),
                )
            } else {
                Failure::unavailable("object store", e)
            }
        })?;
        let prefix = format!("data:{};base64,", meta.mime_type);
        let mut url = String::with_capacity(prefix.len() + blob.bytes.len().div_ceil(3) * 4);
        url.push_str(&prefix);
        base64_simd::STANDARD.encode_append(&blob.bytes, &mut url);
        urls.push(url);
    }
    Ok(urls)
}

/// Uploads of one tenant received at once, per process.
pub const UPLOADS_AT_ONCE: u32 = 4;

/// Uploads of one tenant that no conversation uses, at most — give or take the few received at once
/// ([`UPLOADS_AT_ONCE`] per replica), counted before they are stored — about 2 GB at the default `UPLOAD_MAX_MB`:
/// beyond it, uploads are refused until some are used or deleted a day after they were made. Without it, a tenant's rate
/// limit let it keep about 1.7 TB of them on the operator's disk or bill.
pub const UNUSED_UPLOADS_PER_TENANT: i64 = 100;

/// An admitted upload; gives its slot back on drop.
pub struct UploadPermit(#[expect(dead_code, reason = "held for its drop")] Held);

/// See [`crate::Turns::admit_upload`].
pub(crate) async fn admit_upload(ctx: &Arc<Context>, tenant: &TenantId) -> Result<UploadPermit, Failure> {
    let Some(held) = ctx.uploads.take(tenant, UPLOADS_AT_ONCE) else {
        return Err(Failure::new(
            Code::RateLimited,
            format!(
                "This tenant is already sending {UPLOADS_AT_ONCE} uploads at once; retry when one is done."
            ),
        )
        .retry_after(1));
    };
    let permit = UploadPermit(held);
    let per_minute = ctx.settings.rate_limit_per_minute;
    if per_minute > 0 {
        ctx.check_refusal(tenant)?;
        let now_us = chrono::Utc::now().timestamp_micros();
        let mut tx = ctx.db.scoped(tenant).begin().await?;
        let decision = tx.take_rate(per_minute, now_us).await?;
        tx.commit().await?;
        if let agentd_db::RateDecision::Refused {
            retry_after,
            until_us,
        } = decision
        {
            ctx.refusals.remember(tenant, until_us, now_us);
            return Err(crate::context::rate_limited(per_minute, retry_after));
        }
    }
    // After the rate limit, which refuses a flood without a query. Uploads older than the sweep's age (and its
    // ten minutes) are not counted: they are on their way out, and counting them would read all of them.
    let since = chrono::Utc::now() - crate::housekeeping::UPLOAD_TTL - chrono::Duration::minutes(15);
    if ctx.db.scoped(tenant).unused_uploads(since).await? >= UNUSED_UPLOADS_PER_TENANT {
        return Err(Failure::new(
            Code::RateLimited,
            format!(
                "This tenant has {UNUSED_UPLOADS_PER_TENANT} uploads no turn has used; send them in turns' \
                 `attachments` first (an unused upload is deleted a day after it was made)."
            ),
        )
        .retry_after(60));
    }
    Ok(permit)
}

/// Stores an uploaded input image after checking its bytes (real PNG/JPEG/WebP, under `UPLOAD_MAX_MB`).
pub(crate) async fn upload(
    inner: &Context,
    tenant: &TenantId,
    bytes: Bytes,
) -> Result<AttachmentMeta, Failure> {
    {
        let max = u64::from(inner.settings.upload_max_mb) * 1024 * 1024;
        let checked = {
            let _cpu = inner.ingest.cpu().await;
            tokio::task::spawn_blocking(move || image_check::check_bytes(bytes, max))
                .await
                .map_err(Failure::internal)?
                .map_err(|f| upload_error(&f, inner.settings.upload_max_mb))?
        };
        let at = Placement {
            conversation: None,
            tool_call_id: None,
            kind: "upload",
        };
        ingest::store(&inner.ingest, &inner.store, &inner.db, tenant, at, checked)
            .await
            .map_err(|f| Failure::unavailable("object store", format!("upload: {}", f.reason)))
    }
}

fn upload_error(f: &IngestFailure, max_mb: u32) -> Failure {
    match f.code {
        "image_too_large" => Failure::new(
            Code::PayloadTooLarge,
            format!("The image is over {max_mb} MB (UPLOAD_MAX_MB); send a smaller one."),
        ),
        _ => Failure::invalid("The file is not a PNG, JPEG or WebP image; upload one of those."),
    }
}
