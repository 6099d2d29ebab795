//! The turn task: opens the upstream stream, persists the conversation and the user message once the upstream
//! accepted the turn, relays events, and on the terminal event persists the assistant message and the response
//! id the next turn continues from. It runs to its end whether or not the client still reads.

use crate::limits::Slot;
use crate::turns::Mode;
use crate::upstream::{build_request, is_previous_response_missing, mid_stream_error, pre_stream_error};
use crate::{TurnError, TurnEvent, TurnResult, Turns, Usage};
use agentd_agents::Agent;
use agentd_auth::Principal;
use agentd_db::{Conversation, NewMessage, Role};
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
    pub _slot: Slot,
}

/// Delivers events while the client reads; a client that is gone (or stalls for 30 s) stops receiving,
/// and the turn goes on.
struct Sink {
    tx: mpsc::Sender<TurnEvent>,
    gone: bool,
}

impl Sink {
    async fn emit(&mut self, ev: TurnEvent) {
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
        let mut request = build_request(
            &self.agent,
            &self.message,
            previous.as_deref(),
            self.mode == Mode::Stream,
        );
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

        let conversation = match self.open_conversation().await {
            Ok(c) => c,
            Err(e) => {
                self.abandon().await;
                let _ = accepted.send(Err(e));
                return;
            }
        };
        tracing::Span::current().record("conversation_id", tracing::field::display(conversation.id));
        let _ = accepted.send(Ok(()));
        let model = inner
            .offline_label
            .clone()
            .unwrap_or_else(|| self.agent.model.clone());
        let mut sink = Sink { tx, gone: false };
        sink.emit(TurnEvent::Started {
            conversation_id: conversation.id,
            run_id: self.run_id.clone(),
            agent: self.agent.key.clone(),
            model: model.clone(),
        })
        .await;

        let mut text = String::new();
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
                    if let OutputItem::ImageGenerationCall(call) = &d.item
                        && call.is_failed()
                    {
                        let code = call.error_code().unwrap_or("image_failed").to_owned();
                        tracing::warn!(tool_call_id = %call.id, %code, "image generation failed upstream");
                        sink.emit(TurnEvent::ImageFailed {
                            tool_call_id: call.id.clone(),
                            message: image_failure_message(&code),
                            code,
                        })
                        .await;
                    }
                }
                StreamEvent::Completed(r) | StreamEvent::Incomplete(r) => {
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
        self.finish(&conversation, outcome, text, model, sink).await;
    }

    /// The conversation of this turn: the existing one (already leased), or a new one leased now.
    async fn open_conversation(&self) -> Result<Conversation, TurnError> {
        let inner = &self.turns.0;
        let scoped = inner.db.scoped(self.principal.tenant_id.as_str());
        let conversation = match &self.conversation {
            Some(c) => c.clone(),
            None => {
                let title: String = self
                    .message
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(80)
                    .collect();
                let c = scoped
                    .create_conversation(&self.principal.user_id, &self.agent.key, &title)
                    .await?;
                scoped
                    .try_lock_run(
                        c.id,
                        &self.run_id,
                        chrono::Duration::seconds(inner.settings.total_timeout_seconds as i64 + 60),
                    )
                    .await?;
                c
            }
        };
        let user = NewMessage {
            role: Role::User,
            content: self.message.clone(),
            attachments: vec![],
            response_id: None,
        };
        scoped.append_message(conversation.id, user).await?;
        Ok(conversation)
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
        conversation: &Conversation,
        outcome: Outcome,
        text: String,
        model: String,
        mut sink: Sink,
    ) {
        let scoped = self.turns.0.db.scoped(self.principal.tenant_id.as_str());
        let result = match outcome {
            Outcome::Done(response) => {
                let full = response.output_text();
                let content = if full.is_empty() { text } else { full };
                let assistant = NewMessage {
                    role: Role::Assistant,
                    content,
                    attachments: vec![],
                    response_id: Some(response.id.clone()),
                };
                let saved = scoped.append_message(conversation.id, assistant).await;
                let _ = scoped
                    .set_last_response(conversation.id, Some(&response.id))
                    .await;
                match saved {
                    Ok(Some(message)) => Ok(TurnResult {
                        conversation_id: conversation.id,
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
                        usage: Usage {
                            input_tokens: response.usage.as_ref().map_or(0, |u| u.input_tokens),
                            output_tokens: response.usage.as_ref().map_or(0, |u| u.output_tokens),
                            image: None,
                        },
                    }),
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
                if !text.is_empty() {
                    // Keep what the user already saw.
                    let partial = NewMessage {
                        role: Role::Assistant,
                        content: text,
                        attachments: vec![],
                        response_id: None,
                    };
                    let _ = scoped.append_message(conversation.id, partial).await;
                }
                Err((code, message, retryable))
            }
        };
        let _ = scoped.unlock_run(conversation.id, &self.run_id).await;
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

fn progress(tool_call_id: String, status: &'static str) -> TurnEvent {
    TurnEvent::ImageProgress { tool_call_id, status }
}

fn image_failure_message(code: &str) -> String {
    match code {
        "moderation_blocked" => "The image was refused by the model's safety system.".into(),
        _ => "The model could not generate this image.".into(),
    }
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
