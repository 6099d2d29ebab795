//! What a turn brings besides text: uploaded input images (checked to belong to the tenant and sent as data
//! URLs), uploads themselves, and the tenant's monthly image budget.

use crate::ingest::{self, IngestFailure, Placement};
use crate::{TurnError, Turns};
use agentd_agents::Agent;
use agentd_db::AttachmentMeta;
use agentd_storage::BlobStore;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{Datelike as _, TimeZone as _, Utc};
use std::sync::Arc;
use uuid::Uuid;

/// Input images of a turn: their metadata, checked up front (tenant, agent); the bytes are fetched by the
/// turn task just before the upstream request, so refused, rate-limited or replayed requests never download
/// them.
#[derive(Default)]
pub(crate) struct Inputs {
    pub metas: Vec<AttachmentMeta>,
}

/// Checks that every id is an object of this tenant and that the agent takes image input (no bytes read).
pub(crate) async fn resolve(
    turns: &Turns,
    tenant: &str,
    agent: &Agent,
    ids: &[Uuid],
) -> Result<Inputs, TurnError> {
    let mut inputs = Inputs::default();
    if ids.is_empty() {
        return Ok(inputs);
    }
    if agent.image.is_none() {
        return Err(TurnError::new(
            422,
            "unsupported_for_agent",
            format!(
                "Agent {:?} has no image tools and does not take image input; use an agent with image_generation.",
                agent.key
            ),
        ));
    }
    let scoped = turns.0.db.scoped(tenant);
    for id in ids {
        let obj = scoped.object(*id).await?.ok_or_else(|| not_found(*id))?;
        inputs.metas.push(AttachmentMeta {
            object_id: obj.id,
            object_key: obj.object_key,
            filename: obj.filename,
            mime_type: obj.mime_type,
            size_bytes: obj.size_bytes,
            tool_call_id: None,
        });
    }
    Ok(inputs)
}

fn not_found(id: Uuid) -> TurnError {
    TurnError::new(
        404,
        "attachment_not_found",
        format!("No uploaded image {id}; upload it with POST /v1/uploads."),
    )
}

impl Inputs {
    /// The images as `data:` URLs for the upstream request.
    pub(crate) async fn data_urls(&self, store: &Arc<dyn BlobStore>) -> Result<Vec<String>, TurnError> {
        let mut urls = Vec::with_capacity(self.metas.len());
        for meta in &self.metas {
            let key = agentd_storage::ObjectKey::parse(&meta.object_key).map_err(TurnError::internal)?;
            let blob = store.get(&key).await.map_err(|e| {
                if e.is_not_found() {
                    not_found(meta.object_id)
                } else {
                    TurnError::new(
                        503,
                        "unavailable",
                        "The object store is unavailable; retry shortly.",
                    )
                    .retry_after(2)
                }
            })?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&blob.bytes);
            urls.push(format!("data:{};base64,{b64}", meta.mime_type));
        }
        Ok(urls)
    }
}

/// 429 `budget_exhausted` when the tenant's estimated image spend this month reached the budget.
pub(crate) async fn check_budget(turns: &Turns, tenant: &str) -> Result<(), TurnError> {
    let Some(budget) = turns.0.settings.monthly_budget_usd else {
        return Ok(());
    };
    let now = Utc::now();
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let spent = turns.0.db.scoped(tenant).image_cost_since(month_start).await?;
    if spent < budget {
        return Ok(());
    }
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let next = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(now);
    Err(TurnError::new(
        429,
        "budget_exhausted",
        format!("This tenant's image budget for the month (${budget:.2}) is used up (${spent:.2} spent); it renews on {}.", next.date_naive()),
    )
    .retry_after((next - now).num_seconds().max(1) as u64))
}

impl Turns {
    /// `UPLOAD_MAX_MB` in bytes.
    pub fn upload_max_bytes(&self) -> u64 {
        u64::from(self.0.settings.upload_max_mb) * 1024 * 1024
    }

    /// Stores an uploaded input image after checking its bytes (real PNG/JPEG/WebP, under `UPLOAD_MAX_MB`).
    pub async fn upload(&self, tenant: &str, bytes: Bytes) -> Result<AttachmentMeta, TurnError> {
        let max = u64::from(self.0.settings.upload_max_mb) * 1024 * 1024;
        let checked = tokio::task::spawn_blocking(move || ingest::check_bytes(bytes, max))
            .await
            .map_err(TurnError::internal)?
            .map_err(|f| upload_error(&f, self.0.settings.upload_max_mb))?;
        let at = Placement {
            tenant,
            conversation: None,
            tool_call_id: None,
            kind: "upload",
        };
        ingest::store(&self.0.store, self.0.db.scoped(tenant), at, checked)
            .await
            .map_err(|f| {
                tracing::warn!(tenant_id = tenant, reason = %f.reason, "upload.store_failed");
                TurnError::new(
                    503,
                    "unavailable",
                    "The object store is unavailable; retry shortly.",
                )
                .retry_after(2)
            })
    }
}

fn upload_error(f: &IngestFailure, max_mb: u32) -> TurnError {
    match f.code {
        "image_too_large" => TurnError::new(
            413,
            "payload_too_large",
            format!("The image is over {max_mb} MB (UPLOAD_MAX_MB); send a smaller one."),
        ),
        _ => TurnError::new(
            400,
            "invalid_request",
            "The file is not a PNG, JPEG or WebP image; upload one of those.",
        ),
    }
}
