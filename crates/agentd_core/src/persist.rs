//! Persistence of a finished (or cut-off) turn, in one transaction (one statement on PostgreSQL): the assistant
//! message with its images' links, usage, the conversation's `last_response_id` and the lease release, the
//! idempotency result, and the terminal event in the run log — written after every earlier event of the run, so
//! a resumed stream never sees the end before the middle. Then the terminal event goes to the live client.
//!
//! What is saved, by how the relay ended: a completed reply as it is; a reply cut by the size cap or by the
//! shutdown deadline as it stands (`incomplete`, text so far, images already stored); a failed turn keeps what
//! the user already saw (text and images) without a response id to continue from.

use crate::admission::Admission;
use crate::context::Context;
use crate::event::{TurnEvent, TurnResult, TurnStatus, Usage};
use crate::failure::{Code, Failure};
use crate::journal::chunk;
use crate::relay::{Draft, Ending};
use crate::retry::{SAVE_THROUGH_OUTAGE, retrying_through};
use crate::sink::Sink;
use agentd_db::journal::ChunkNote;
use agentd_db::turns::FinishedTurn;
use agentd_db::{NewMessage, NewUsage, Role};
use uuid::Uuid;

/// Writes the turn and ends its stream.
pub(crate) async fn finish(
    inner: &Context,
    adm: &Admission,
    draft: Draft,
    ending: Ending,
    model: String,
    sink: &mut Sink,
) {
    let Draft {
        text,
        stored,
        calls,
        response_id,
    } = draft;
    let (done, outcome) = match ending {
        Ending::Done(f) => {
            let status = if f.incomplete {
                TurnStatus::Incomplete
            } else {
                TurnStatus::Completed
            };
            let content = if f.text.is_empty() { text } else { f.text.clone() };
            (Some(f), Ok((content, status)))
        }
        Ending::TooLong => (None, Ok((text, TurnStatus::Incomplete))),
        Ending::Cut => {
            let f = Failure::new(
                Code::ShuttingDown,
                "The server is restarting; the reply so far is saved. Send the message again to continue.",
            );
            (None, Err((f, text)))
        }
        Ending::Failed(f) => (None, Err((f, text))),
    };
    let outcome = outcome
        .map(|(content, status)| (storable(content), status))
        .map_err(|(f, content)| (f, storable(content)));
    let image = calls.usage(&adm.agent, done.as_ref().and_then(|f| f.image_output_tokens));
    let usage = Usage {
        input_tokens: done.as_ref().map_or(0, |f| f.input_tokens),
        output_tokens: done.as_ref().map_or(0, |f| f.output_tokens),
        image,
    };
    if let Some(i) = &usage.image {
        sink.meter.image_cost(i.estimated_cost_usd);
    }
    let record = NewUsage {
        conversation_id: Some(adm.conversation_id),
        response_id: done.as_ref().map(|f| f.id.clone()),
        input_tokens: usage.input_tokens as i64,
        output_tokens: usage.output_tokens as i64,
        images: usage.image.as_ref().map_or(0, |i| i.images as i64),
        image_output_tokens: usage.image.as_ref().map_or(0, |i| i.output_tokens as i64),
        image_cost_usd: usage.image.as_ref().map_or(0.0, |i| i.estimated_cost_usd),
    };
    let object_ids: Vec<Uuid> = stored.iter().map(|a| a.object_id).collect();
    // The response the next turn continues from: the final one, or the one a size-capped reply belongs to.
    let continue_from = match (&done, &outcome) {
        (Some(f), _) => Some(f.id.clone()),
        (None, Ok(_)) => response_id,
        (None, Err(_)) => None,
    };
    let (assistant, terminal) = match outcome {
        Ok((content, status)) => {
            let m = NewMessage::new(Role::Assistant, content, stored, continue_from.clone());
            let result = TurnResult {
                conversation_id: adm.conversation_id,
                response_id: continue_from.clone(),
                model: done
                    .as_ref()
                    .filter(|f| !f.model.is_empty())
                    .map_or(model, |f| f.model.clone()),
                status,
                message: m.saved_in(adm.conversation_id),
                usage,
            };
            (Some(m), TurnEvent::Completed(Box::new(result)))
        }
        Err((f, text)) => {
            // Keep what the user already saw, images included.
            let keep = (!text.is_empty() || !stored.is_empty())
                .then(|| NewMessage::new(Role::Assistant, text, stored, None));
            (keep, TurnEvent::failed(&f))
        }
    };
    let result_json = match &terminal {
        TurnEvent::Completed(r) => serde_json::to_value(r.as_ref()).ok(),
        _ => None,
    };
    let terminal = sink.sequence(terminal);
    let terminal_json = serde_json::to_string(&terminal).unwrap_or_default();
    sink.journal().flush().await;
    let events = chunk(
        &sink.run,
        sink.logged() as i64,
        terminal.id as i64,
        terminal.id as i64,
        &[&terminal_json],
        true,
    );
    let f = FinishedTurn {
        conversation: adm.conversation_id,
        run_id: &adm.run_id,
        assistant: assistant.as_ref(),
        object_ids: &object_ids,
        usage: &record,
        usage_id: Uuid::now_v7(),
        response_id: continue_from.as_deref(),
        idempotency: adm.idempotency_key.as_deref().map(|k| (k, result_json.as_ref())),
        events: Some(&events),
    };
    let scoped = inner.db.scoped(&adm.tenant);
    let save = retrying_through("save the turn", SAVE_THROUGH_OUTAGE, || scoped.finish_turn(&f));
    let terminal = match save.await {
        Some(w) => {
            if !w.lease_released {
                tracing::warn!(conversation_id = %adm.conversation_id, run_id = %adm.run_id,
                    "the turn had lost its lease (its heartbeat stopped); saved anyway");
            }
            if assistant.is_some() && !w.message_saved {
                tracing::warn!(conversation_id = %adm.conversation_id, "the conversation was deleted while the turn ran");
            }
            if w.terminal_logged {
                inner.bus.published(ChunkNote::of(&events));
                sink.journal().announce(events).await;
            } else {
                tracing::warn!(run_id = %adm.run_id, "the run had already been ended as dead; its log keeps that end");
            }
            terminal
        }
        None => {
            tracing::error!(tenant_id = %adm.tenant, conversation_id = %adm.conversation_id, run_id = %adm.run_id,
                "the turn could not be saved: its reply, usage and idempotency result are lost; the lease expires by itself");
            let f = Failure::new(
                Code::Unavailable,
                "The reply could not be saved; send the message again.",
            );
            crate::event::Sequenced {
                id: terminal.id,
                event: TurnEvent::failed(&f),
            }
        }
    };
    sink.meter.finished(&terminal.event);
    match &terminal.event {
        TurnEvent::Completed(r) => tracing::info!(
            response_id = r.response_id.as_deref().unwrap_or("-"),
            "turn completed"
        ),
        TurnEvent::Failed(e) => tracing::warn!(code = %e.code, "turn failed"),
        _ => {}
    }
    sink.deliver(terminal);
}

/// The reply as it can be stored: a model can write U+0000, which PostgreSQL's text (and a JSON string in
/// jsonb, the idempotent replay) cannot hold — the save would fail and the reply be lost. It is kept as U+FFFD;
/// the client's stream had it as sent.
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}
