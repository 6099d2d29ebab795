//! The turn task: opens the upstream stream, persists the conversation and the user message once the upstream
//! accepted the turn, relays events, and on the terminal event persists the assistant message and the response
//! id the next turn continues from. It runs to its end whether or not the client still reads.

use crate::limits::Slot;
use crate::turn_images::Images;
use crate::turns::Mode;
use crate::upstream::{build_request, is_previous_response_missing, mid_stream_error, pre_stream_error};
use crate::{TurnError, TurnEvent, TurnResult, Turns, Usage};
use agentd_agents::Agent;
use agentd_auth::Principal;
use agentd_db::{Conversation, NewMessage, NewUsage, Role};
use agentd_responses::{OutputItem, ResponseObject, StreamEvent};
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

pub(crate) struct Turn {
    pub turns: Turns,
    pub principal: Principal,
    pub agent: Arc<Agent>,
    pub conversation: Option<Conversation>,
    pub message: String,
    pub run_id: String,
    pub mode: Mode,
    pub idempotency_key: Option<String>,
    pub inputs: crate::inputs::Inputs,
    pub _slot: Slot,
}

/// Delivers events while the client reads; a client that is gone (or stalls for 30 s) stops receiving,
/// and the turn goes on.
pub(crate) struct Sink {
    tx: mpsc::Sender<TurnEvent>,
    gone: bool,
}

impl Sink {
    pub(crate) async fn emit(&mut self, ev: TurnEvent) {
        if self.gone {
            return;
        }
        if self.tx.send_timeout(ev, Duration::from_secs(30)).await.is_err() {
            self.gone = true;
            tracing::info!("client stopped reading; the turn goes on");
        }
    }
}

/// How the upstream stream ended.
enum Outcome {
    Done(Box<ResponseObject>),
    Failed {
        code: &'static str,
        message: String,
        retryable: bool,
    },
}

impl Turn {
    pub(crate) async fn run(
        self,
        accepted: oneshot::Sender<Result<(), TurnError>>,
        tx: mpsc::Sender<TurnEvent>,
    ) {
        let span = tracing::info_span!(
            "turn",
            tenant_id = %self.principal.tenant_id,
            run_id = %self.run_id,
            agent = %self.agent.key,
            conversation_id = tracing::field::Empty,
        );
        self.run_inner(accepted, tx).instrument(span).await;
    }

    async fn run_inner(self, accepted: oneshot::Sender<Result<(), TurnError>>, tx: mpsc::Sender<TurnEvent>) {
        let inner = &self.turns.0;
        let previous = self
            .conversation
            .as_ref()
            .and_then(|c| c.last_response_id.clone());
        let streaming = self.mode == Mode::Stream;
        let images = match self.inputs.data_urls(&inner.store).await {
            Ok(urls) => urls,
            Err(e) => {
                self.abandon().await;
                let _ = accepted.send(Err(e));
                return;
            }
        };
        let mut request = build_request(&self.agent, &self.message, images, previous.as_deref(), streaming);
        let mut opened = inner.client.stream(&request).await;
        if let Err(e) = &opened
            && previous.is_some()
            && is_previous_response_missing(e)
        {
            tracing::warn!("the upstream lost this conversation's previous response; continuing without it");
            request.previous_response_id = None;
            opened = inner.client.stream(&request).await;
        }
        let mut upstream = match opened {
            Ok(s) => s,
            Err(e) => {
                self.abandon().await;
                let _ = accepted.send(Err(pre_stream_error(&e)));
                return;
            }
        };
        let upstream_id = upstream.request_id().unwrap_or("-").to_owned();
        tracing::info!(upstream_request_id = %upstream_id, "upstream accepted the turn");

        // The conversation id is chosen now and announced at once; the conversation, its lease and the user
        // message are written while the first events are relayed (their latency stays off the client's path).
        let conversation_id = self
            .conversation
            .as_ref()
            .map_or_else(uuid::Uuid::now_v7, |c| c.id);
        tracing::Span::current().record("conversation_id", tracing::field::display(conversation_id));
        let mut opening = Opening::start(self.opening(conversation_id));
        let _ = accepted.send(Ok(()));
        let model = inner
            .offline_label
            .clone()
            .unwrap_or_else(|| self.agent.model.clone());
        let mut sink = Sink { tx, gone: false };
        sink.emit(TurnEvent::Started {
            conversation_id,
            run_id: self.run_id.clone(),
            agent: self.agent.key.clone(),
            model: model.clone(),
        })
        .await;

        let mut text = String::new();
        let mut images = Images::default();
        let mut last_stream_error = None;
        let outcome = loop {
            let ev = match upstream.next().await {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    let (code, message, retryable) = mid_stream_error(&e);
                    break Outcome::Failed {
                        code,
                        message,
                        retryable,
                    };
                }
                None => {
                    break Outcome::Failed {
                        code: "upstream_error",
                        message: "The model API stream ended early.".into(),
                        retryable: true,
                    };
                }
            };
            match ev {
                StreamEvent::OutputTextDelta(d) => {
                    text.push_str(&d.delta);
                    sink.emit(TurnEvent::Delta { delta: d.delta }).await;
                }
                StreamEvent::ImageGenCallInProgress(e) => sink.emit(progress(e.item_id, "in_progress")).await,
                StreamEvent::ImageGenCallGenerating(e) => sink.emit(progress(e.item_id, "generating")).await,
                StreamEvent::ImageGenCallCompleted(e) => sink.emit(progress(e.item_id, "completed")).await,
                StreamEvent::PartialImage(p) => {
                    *images.partials.entry(p.item_id.clone()).or_default() += 1;
                    let mime_type = sniff_b64(&p.partial_image_b64);
                    sink.emit(TurnEvent::ImagePartial {
                        tool_call_id: p.item_id,
                        partial_image_index: p.partial_image_index,
                        mime_type,
                        b64: p.partial_image_b64,
                    })
                    .await;
                }
                StreamEvent::OutputItemDone(d) => {
                    if let OutputItem::ImageGenerationCall(call) = d.item {
                        // An image row points at the conversation row: that must be written first.
                        if let Err(e) = opening.wait().await {
                            break opening_failed(&e);
                        }
                        self.image_call(conversation_id, call, &mut images, &mut sink)
                            .await;
                    }
                }
                StreamEvent::Completed(mut r) | StreamEvent::Incomplete(mut r) => {
                    if let Err(e) = opening.wait().await {
                        break opening_failed(&e);
                    }
                    // An image may first appear in the final response; each is stored once however often it came.
                    for item in &mut r.response.output {
                        if let OutputItem::ImageGenerationCall(call) = item {
                            let call = std::mem::take(call);
                            self.image_call(conversation_id, call, &mut images, &mut sink)
                                .await;
                        }
                    }
                    break Outcome::Done(Box::new(r.response));
                }
                StreamEvent::Failed(r) => {
                    let code = r
                        .response
                        .error
                        .as_ref()
                        .and_then(|e| e.code.clone())
                        .or(last_stream_error.take());
                    tracing::warn!(upstream_code = code.as_deref().unwrap_or("-"), upstream_request_id = %upstream_id, "upstream response failed");
                    let retryable = matches!(
                        code.as_deref(),
                        Some("server_error" | "rate_limit_exceeded") | None
                    );
                    break Outcome::Failed {
                        code: "upstream_error",
                        message: "The model API could not complete this turn.".into(),
                        retryable,
                    };
                }
                StreamEvent::Error(e) => {
                    tracing::warn!(
                        upstream_code = e.code.as_deref().unwrap_or("-"),
                        "upstream error event"
                    );
                    last_stream_error = e.code.or(e.error_type);
                }
                _ => {}
            }
        };
        let outcome = match opening.wait().await {
            Ok(()) => outcome,
            Err(e) => opening_failed(&e),
        };
        self.finish(conversation_id, outcome, text, images, model, sink)
            .await;
    }

    /// Writes the conversation of this turn (the existing one is already leased; a new one is created with
    /// `id` and leased) and the user message. Owned, so it can run beside the relay.
    fn opening(&self, id: uuid::Uuid) -> impl Future<Output = Result<(), TurnError>> + Send + 'static {
        let inner = &self.turns.0;
        let db = inner.db.clone();
        let tenant = self.principal.tenant_id.as_str().to_owned();
        let user_id = self.principal.user_id.clone();
        let agent = self.agent.key.clone();
        let is_new = self.conversation.is_none();
        let run_id = self.run_id.clone();
        let lease = chrono::Duration::seconds(inner.settings.total_timeout_seconds as i64 + 60);
        let title: String = self
            .message
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect();
        let user = NewMessage {
            role: Role::User,
            content: self.message.clone(),
            attachments: self.inputs.metas.clone(),
            response_id: None,
        };
        async move {
            let scoped = db.scoped(&tenant);
            if is_new {
                scoped
                    .create_conversation_with_id(id, &user_id, &agent, &title)
                    .await?;
                scoped.try_lock_run(id, &run_id, lease).await?;
            }
            scoped.append_message(id, user).await?;
            Ok(())
        }
    }

    /// Undoes the claims of a turn that never started.
    async fn abandon(&self) {
        let scoped = self.turns.0.db.scoped(self.principal.tenant_id.as_str());
        if let Some(c) = &self.conversation {
            let _ = scoped.unlock_run(c.id, &self.run_id).await;
        }
        if let Some(k) = &self.idempotency_key {
            let _ = scoped.release_idempotency(k).await;
        }
    }

    async fn finish(
        &self,
        conversation: uuid::Uuid,
        outcome: Outcome,
        text: String,
        images: Images,
        model: String,
        mut sink: Sink,
    ) {
        let scoped = self.turns.0.db.scoped(self.principal.tenant_id.as_str());
        let response = match &outcome {
            Outcome::Done(r) => Some(r.as_ref()),
            Outcome::Failed { .. } => None,
        };
        let image = self.image_usage(response, &images);
        let usage = Usage {
            input_tokens: response
                .and_then(|r| r.usage.as_ref())
                .map_or(0, |u| u.input_tokens),
            output_tokens: response
                .and_then(|r| r.usage.as_ref())
                .map_or(0, |u| u.output_tokens),
            image,
        };
        let record = NewUsage {
            conversation_id: Some(conversation),
            response_id: response.map(|r| r.id.clone()),
            input_tokens: usage.input_tokens as i64,
            output_tokens: usage.output_tokens as i64,
            images: usage.image.as_ref().map_or(0, |i| i.images as i64),
            image_output_tokens: usage.image.as_ref().map_or(0, |i| i.output_tokens as i64),
            image_cost_usd: usage.image.as_ref().map_or(0.0, |i| i.estimated_cost_usd),
        };
        if let Err(e) = scoped.record_usage(&record).await {
            tracing::error!(error = %e, "cannot record usage");
        }
        let object_ids: Vec<uuid::Uuid> = images.stored.iter().map(|a| a.object_id).collect();
        let result = match outcome {
            Outcome::Done(response) => {
                let full = response.output_text();
                let content = if full.is_empty() { text } else { full };
                let assistant = NewMessage {
                    role: Role::Assistant,
                    content,
                    attachments: images.stored,
                    response_id: Some(response.id.clone()),
                };
                let saved = scoped.append_message(conversation, assistant).await;
                let _ = scoped.set_last_response(conversation, Some(&response.id)).await;
                match saved {
                    Ok(Some(message)) => {
                        let _ = scoped.link_objects(&object_ids, message.id).await;
                        Ok(TurnResult {
                            conversation_id: conversation,
                            response_id: Some(response.id.clone()),
                            model: if response.model.is_empty() {
                                model
                            } else {
                                response.model.clone()
                            },
                            status: if response.status == "incomplete" {
                                "incomplete".into()
                            } else {
                                "completed".into()
                            },
                            message,
                            usage,
                        })
                    }
                    Ok(None) => Err((
                        "internal",
                        "The conversation was deleted while the turn ran.".to_owned(),
                        false,
                    )),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot save the assistant message");
                        Err((
                            "unavailable",
                            "The reply could not be saved; retry.".to_owned(),
                            true,
                        ))
                    }
                }
            }
            Outcome::Failed {
                code,
                message,
                retryable,
            } => {
                if !text.is_empty() || !images.stored.is_empty() {
                    // Keep what the user already saw, images included.
                    let partial = NewMessage {
                        role: Role::Assistant,
                        content: text,
                        attachments: images.stored,
                        response_id: None,
                    };
                    if let Ok(Some(m)) = scoped.append_message(conversation, partial).await {
                        let _ = scoped.link_objects(&object_ids, m.id).await;
                    }
                }
                Err((code, message, retryable))
            }
        };
        let _ = scoped.unlock_run(conversation, &self.run_id).await;
        match result {
            Ok(result) => {
                if let Some(k) = &self.idempotency_key
                    && let Ok(v) = serde_json::to_value(&result)
                {
                    let _ = scoped.finish_idempotency(k, &v).await;
                }
                tracing::info!(
                    response_id = result.response_id.as_deref().unwrap_or("-"),
                    "turn completed"
                );
                sink.emit(TurnEvent::Completed(Box::new(result))).await;
            }
            Err((code, message, retryable)) => {
                if let Some(k) = &self.idempotency_key {
                    let _ = scoped.release_idempotency(k).await;
                }
                tracing::warn!(code, "turn failed");
                sink.emit(TurnEvent::Failed {
                    code,
                    message,
                    retryable,
                })
                .await;
            }
        }
    }
}

/// Writing the conversation and the user message, beside the relay; awaited before anything depends on it.
struct Opening {
    task: Option<tokio::task::JoinHandle<Result<(), TurnError>>>,
    result: Option<Result<(), TurnError>>,
}

impl Opening {
    fn start(work: impl Future<Output = Result<(), TurnError>> + Send + 'static) -> Self {
        Self {
            task: Some(tokio::spawn(work)),
            result: None,
        }
    }

    async fn wait(&mut self) -> Result<(), TurnError> {
        if let Some(task) = self.task.take() {
            self.result = Some(task.await.unwrap_or_else(|e| Err(TurnError::internal(e))));
        }
        self.result.clone().unwrap_or(Ok(()))
    }
}

fn opening_failed(e: &TurnError) -> Outcome {
    tracing::error!(error = %e, cause = e.internal.as_deref().unwrap_or("-"), "cannot save the conversation");
    Outcome::Failed {
        code: "unavailable",
        message: "The conversation could not be saved; retry.".into(),
        retryable: true,
    }
}

fn progress(tool_call_id: String, status: &'static str) -> TurnEvent {
    TurnEvent::ImageProgress { tool_call_id, status }
}

/// The MIME type of a base64 image from its first bytes (decoding 24 characters, not the image).
pub(crate) fn sniff_b64(b64: &str) -> &'static str {
    use base64::Engine as _;
    let head = b64.get(..24).unwrap_or(b64);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(head)
        .unwrap_or_default();
    match bytes.as_slice() {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        _ => "application/octet-stream",
    }
}
