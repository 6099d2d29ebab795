//! The image side of a turn: each image call stored once (the first time its result arrives), failures
//! reported without stopping the turn, and the turn's image usage (reported by the upstream or estimated).

use crate::ingest::{self, Placement};
use crate::run::{Sink, Turn};
use crate::{ImageUsage, TurnEvent};
use agentd_db::AttachmentMeta;
use agentd_responses::{ImageGenerationCall, ResponseObject, pricing};

/// The image calls of a turn: which were stored, and what each costs.
#[derive(Default)]
pub(crate) struct Images {
    pub seen: std::collections::HashSet<String>,
    pub partials: std::collections::HashMap<String, u64>,
    /// (quality, size) of each finished call, for the estimate.
    pub done: Vec<(String, String)>,
    pub stored: Vec<AttachmentMeta>,
}

impl Turn {
    /// A finished or failed image call: stored once (the first time its result arrives), or reported failed.
    pub(crate) async fn image_call(
        &self,
        conversation: uuid::Uuid,
        mut call: ImageGenerationCall,
        images: &mut Images,
        sink: &mut Sink,
    ) {
        let received = std::time::Instant::now();
        if !images.seen.insert(call.id.clone()) {
            return; // already handled: the same image arrives again in `response.completed`
        }
        if call.is_failed() {
            let code = call.error_code().unwrap_or("image_failed").to_owned();
            self.ingest_failed(conversation, &call.id, &format!("upstream: {code}"));
            let message = image_failure_message(&code);
            sink.emit(TurnEvent::ImageFailed {
                tool_call_id: call.id,
                code,
                message,
            })
            .await;
            return;
        }
        let Some(b64) = call.result.take().filter(|r| !r.is_empty()) else {
            images.seen.remove(&call.id); // not finished yet; its result may come later
            return;
        };
        let quality = call.quality.clone().unwrap_or_else(|| {
            self.agent
                .image
                .as_ref()
                .map(|i| i.quality.to_string())
                .unwrap_or_default()
        });
        let size = call.size.clone().unwrap_or_else(|| {
            self.agent
                .image
                .as_ref()
                .map(|i| i.size.clone())
                .unwrap_or_default()
        });
        images.done.push((quality, size));
        let inner = &self.turns.0;
        let max = inner.images.output_max_bytes();
        let _slot = inner.ingest_slots.acquire().await;
        let checked = match tokio::task::spawn_blocking(move || ingest::check_b64(&b64, max)).await {
            Ok(r) => r,
            Err(e) => Err(ingest::IngestFailure {
                code: "storage_failed",
                reason: format!("decoder task: {e}"),
            }),
        };
        let at = Placement {
            tenant: self.principal.tenant_id.as_str(),
            conversation: Some(conversation),
            tool_call_id: Some(&call.id),
            kind: "generated",
        };
        let check_ms = received.elapsed().as_secs_f64() * 1000.0;
        let stored = match checked {
            Ok(c) => ingest::store(&inner.store, inner.db.scoped(at.tenant), at, c).await,
            Err(f) => Err(f),
        };
        match stored {
            Ok(meta) => {
                tracing::info!(tool_call_id = %call.id, object_id = %meta.object_id, size_bytes = meta.size_bytes, ingest_ms = received.elapsed().as_secs_f64() * 1000.0, check_ms,
                    "image stored");
                images.stored.push(meta.clone());
                sink.emit(TurnEvent::Attachment(meta)).await;
            }
            Err(f) => {
                self.ingest_failed(conversation, &call.id, &f.reason);
                sink.emit(TurnEvent::ImageFailed {
                    tool_call_id: call.id,
                    code: f.code.to_owned(),
                    message: f.message().to_owned(),
                })
                .await;
            }
        }
    }

    fn ingest_failed(&self, conversation: uuid::Uuid, tool_call_id: &str, reason: &str) {
        tracing::warn!(
            tenant_id = %self.principal.tenant_id,
            conversation_id = %conversation,
            agent = %self.agent.key,
            tool_call_id,
            reason,
            "image.ingest_failed"
        );
    }

    /// Image usage: the upstream's `tool_usage.image_gen` when reported, else the published tables.
    pub(crate) fn image_usage(
        &self,
        response: Option<&ResponseObject>,
        images: &Images,
    ) -> Option<ImageUsage> {
        if images.done.is_empty() {
            return None;
        }
        let model = self
            .agent
            .image
            .as_ref()
            .map_or("gpt-image-2", |i| i.model.as_str());
        let reported = response
            .and_then(|r| r.tool_usage.as_ref())
            .and_then(|t| t.image_gen.as_ref())
            .map(|u| u.output_tokens);
        let output_tokens = reported.unwrap_or_else(|| {
            let finals: u64 = images
                .done
                .iter()
                .map(|(q, s)| pricing::image_output_tokens(model, q, s))
                .sum();
            finals + pricing::PARTIAL_IMAGE_TOKENS * images.partials.values().sum::<u64>()
        });
        let usd = output_tokens as f64 * pricing::image_output_usd_per_million(model) / 1_000_000.0;
        Some(ImageUsage {
            images: images.done.len() as u64,
            output_tokens,
            estimated_cost_usd: (usd * 1e6).round() / 1e6,
        })
    }
}

pub(crate) fn image_failure_message(code: &str) -> String {
    match code {
        "moderation_blocked" => "The image was refused by the model's safety system.".into(),
        _ => "The model could not generate this image.".into(),
    }
}
