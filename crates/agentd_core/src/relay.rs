//! The relay: upstream events → [`TurnEvent`]s for the client, and a [`Draft`] of the reply (text, stored
//! images, image calls, the upstream's final response). It knows no SQL: images go to the [`Ingest`] it is
//! handed, events to the [`Sink`]. It enforces what one upstream may cost this process: the reply text cap,
//! images stored per turn, the size of a relayed preview, and the monthly budget as images arrive.

use crate::event::{AttachmentStored, ImageFailed, ImagePartial, ImageProgress, MessageDelta, TurnEvent};
use crate::failure::Failure;
use crate::image_check::{ImageFormat, IngestFailure, max_b64_chars};
use crate::ingest::Ingest;
use crate::sink::Sink;
use crate::upstream::{ended_early, mid_stream_error, response_failed};
use crate::usage::ImageCalls;
use agentd_agents::Agent;
use agentd_db::AttachmentMeta;
use agentd_responses::{EventStream, ImageGenerationCall, OutputItem, ResponseObject, StreamEvent};
use futures_util::StreamExt as _;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The reply as it stands.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    /// Text from the deltas.
    pub text: String,
    pub stored: Vec<AttachmentMeta>,
    pub calls: ImageCalls,
    /// The upstream response id, once the upstream named it.
    pub response_id: Option<String>,
}

/// What the upstream's final response said.
#[derive(Debug)]
pub(crate) struct Final {
    pub id: String,
    pub model: String,
    /// `response.incomplete` (token limit, content filter).
    pub incomplete: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `tool_usage.image_gen.output_tokens`, when reported.
    pub image_output_tokens: Option<u64>,
    /// The final text as the response has it (empty when it carried none).
    pub text: String,
}

/// How the relay ended.
#[derive(Debug)]
pub(crate) enum Ending {
    Done(Box<Final>),
    /// The reply reached `CHAT_MAX_REPLY_MB`: kept as it is, `incomplete`.
    TooLong,
    Failed(Failure),
    /// The server's shutdown grace ran out.
    Cut,
}

/// The limits a relay enforces.
pub(crate) struct Caps {
    pub max_reply_bytes: usize,
    pub max_images: usize,
    /// `IMAGE_TENANT_MONTHLY_BUDGET_USD` and this tenant's spend this month before the turn.
    pub budget: Option<Budget>,
}

pub(crate) struct Budget {
    pub limit_usd: f64,
    pub spent_before_usd: f64,
}

pub(crate) struct Relay<'a> {
    pub agent: &'a Agent,
    pub sink: &'a mut Sink,
    pub ingest: &'a Ingest,
    pub caps: Caps,
    pub cut: &'a CancellationToken,
    pub draft: Draft,
}

impl Relay<'_> {
    /// Relays until the upstream's terminal event (or a failure, the reply cap, the shutdown deadline).
    pub(crate) async fn run(&mut self, mut upstream: EventStream) -> Ending {
        let mut last_error = None;
        loop {
            let next = tokio::select! {
                biased;
                () = self.cut.cancelled() => return Ending::Cut,
                next = upstream.next() => next,
            };
            let ev = match next {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => return Ending::Failed(mid_stream_error(&e)),
                None => return Ending::Failed(ended_early()),
            };
            match ev {
                StreamEvent::Created(r) | StreamEvent::InProgress(r) if !r.response.id.is_empty() => {
                    self.draft.response_id = Some(r.response.id);
                }
                StreamEvent::OutputTextDelta(d) => {
                    if self.draft.text.len() + d.delta.len() > self.caps.max_reply_bytes {
                        tracing::warn!(
                            limit = self.caps.max_reply_bytes,
                            "reply over CHAT_MAX_REPLY_MB: cut"
                        );
                        return Ending::TooLong;
                    }
                    self.draft.text.push_str(&d.delta);
                    self.sink
                        .emit(TurnEvent::Delta(MessageDelta { delta: d.delta }))
                        .await;
                }
                StreamEvent::ImageGenCallInProgress(e) => self.progress(e.item_id, "in_progress").await,
                StreamEvent::ImageGenCallGenerating(e) => self.progress(e.item_id, "generating").await,
                StreamEvent::ImageGenCallCompleted(e) => self.progress(e.item_id, "completed").await,
                StreamEvent::PartialImage(p) => {
                    if p.partial_image_b64.len() as u64 > max_b64_chars(self.ingest.max_bytes) {
                        tracing::warn!(tool_call_id = %p.item_id, "preview over IMAGE_OUTPUT_MAX_MB: not relayed");
                        continue;
                    }
                    // Base64 is ASCII; a large preview's text was not checked when it was parsed.
                    if !p.partial_image_b64.is_ascii() {
                        tracing::warn!(tool_call_id = %p.item_id, "preview is not base64 text: not relayed");
                        continue;
                    }
                    self.draft.calls.partials += 1;
                    let mime = ImageFormat::sniff_b64(&p.partial_image_b64.head(24))
                        .map_or("application/octet-stream", ImageFormat::mime);
                    let preview = ImagePartial {
                        tool_call_id: p.item_id,
                        partial_image_index: p.partial_image_index,
                        mime_type: mime.to_owned(),
                        b64: p.partial_image_b64,
                    };
                    self.sink.emit(TurnEvent::ImagePartial(preview)).await;
                }
                StreamEvent::OutputItemDone(d) => {
                    if let OutputItem::ImageGenerationCall(call) = d.item {
                        self.image_call(call).await;
                    }
                }
                StreamEvent::Completed(r) | StreamEvent::Incomplete(r) => {
                    return Ending::Done(Box::new(self.finish(r.response).await));
                }
                StreamEvent::Failed(r) => {
                    let code = r
                        .response
                        .error
                        .as_ref()
                        .and_then(|e| e.code.clone())
                        .or(last_error.take());
                    tracing::warn!(
                        upstream_code = code.as_deref().unwrap_or("-"),
                        "upstream response failed"
                    );
                    return Ending::Failed(response_failed(code.as_deref()));
                }
                StreamEvent::Error(e) => {
                    tracing::warn!(
                        upstream_code = e.code.as_deref().unwrap_or("-"),
                        "upstream error event"
                    );
                    last_error = e.code.or(e.error_type);
                }
                _ => {}
            }
        }
    }

    async fn progress(&mut self, tool_call_id: String, status: &str) {
        let ev = ImageProgress {
            tool_call_id,
            status: status.to_owned(),
        };
        self.sink.emit(TurnEvent::ImageProgress(ev)).await;
    }

    /// The final response: images that first appear in it are stored (each image once, however often it
    /// came); those already stored are skipped, their base64 never copied.
    async fn finish(&mut self, mut r: ResponseObject) -> Final {
        let text = r.output_text();
        for item in std::mem::take(&mut r.output) {
            if let OutputItem::ImageGenerationCall(call) = item {
                self.image_call(call).await;
            }
        }
        let usage = r.usage.as_ref();
        Final {
            incomplete: r.status == "incomplete",
            input_tokens: usage.map_or(0, |u| u.input_tokens),
            output_tokens: usage.map_or(0, |u| u.output_tokens),
            image_output_tokens: r
                .tool_usage
                .as_ref()
                .and_then(|t| t.image_gen.as_ref())
                .map(|u| u.output_tokens),
            id: r.id,
            model: r.model,
            text,
        }
    }

    /// A finished or failed image call: stored once (the first time its result arrives), or reported failed.
    async fn image_call(&mut self, mut call: ImageGenerationCall) {
        let received = Instant::now();
        if !self.draft.calls.first_sight(&call.id) {
            return;
        }
        if call.is_failed() {
            let code = call.error_code().unwrap_or("image_failed").to_owned();
            let f = IngestFailure::new(
                if code == "moderation_blocked" {
                    "moderation_blocked"
                } else {
                    "image_failed"
                },
                format!("upstream: {code}"),
            );
            return self.image_failed(call.id, &f).await;
        }
        let Some(b64) = call.result.take().filter(|r| !r.is_empty()) else {
            self.draft.calls.forget(&call.id); // not finished yet: its result may come later
            return;
        };
        self.draft.calls.finished(self.agent, &call);
        if self.draft.calls.count() > self.caps.max_images {
            let f = IngestFailure::new(
                "too_many_images",
                format!("over IMAGE_MAX_PER_TURN={}", self.caps.max_images),
            );
            return self.image_failed(call.id, &f).await;
        }
        if let Err(f) = self.within_budget().await {
            return self.image_failed(call.id, &f).await;
        }
        match self.ingest.image(&call.id, b64).await {
            Ok(meta) => {
                tracing::info!(tool_call_id = %call.id, object_id = %meta.object_id, size_bytes = meta.size_bytes,
                    ingest_ms = received.elapsed().as_secs_f64() * 1000.0, "image stored");
                self.sink.meter.image_stored(meta.size_bytes, received.elapsed());
                self.draft.stored.push(meta.clone());
                self.sink
                    .emit(TurnEvent::Attachment(AttachmentStored { attachment: meta }))
                    .await;
            }
            Err(f) => self.image_failed(call.id, &f).await,
        }
    }

    /// The budget, re-checked as each image arrives: this month's spend before the turn plus this turn's.
    async fn within_budget(&self) -> Result<(), IngestFailure> {
        let Some(b) = &self.caps.budget else { return Ok(()) };
        let spent = b.spent_before_usd + self.draft.calls.estimated_usd(self.agent);
        if spent > b.limit_usd {
            return Err(IngestFailure::new(
                "budget_exhausted",
                format!("${spent:.2} of ${:.2} this month", b.limit_usd),
            ));
        }
        Ok(())
    }

    async fn image_failed(&mut self, tool_call_id: String, f: &IngestFailure) {
        tracing::warn!(
            tenant_id = %self.ingest.tenant,
            conversation_id = %self.ingest.conversation,
            agent = %self.agent.key,
            tool_call_id = %tool_call_id,
            reason = %f.reason,
            "image.ingest_failed"
        );
        self.sink.meter.image_failed(f.code);
        let ev = ImageFailed {
            tool_call_id,
            code: f.code.to_owned(),
            message: f.message().to_owned(),
        };
        self.sink.emit(TurnEvent::ImageFailed(ev)).await;
    }
}
