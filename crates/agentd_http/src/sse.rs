//! A turn as Server-Sent Events: `id:` from 1, `event:` names of the contract, one-line JSON `data:`, a
//! `: keep-alive` comment after 15 s of silence, and exactly one terminal event even if the turn task dies.

use crate::AppState;
use crate::views::{attachment_json, result_json};
use agentd_core::{Started, TurnEvent};
use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt as _};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::time::Duration;

async fn render_value(state: &AppState, ev: &TurnEvent) -> (&'static str, Value) {
    match ev {
        TurnEvent::Started {
            conversation_id,
            run_id,
            agent,
            model,
        } => (
            "run.started",
            json!({ "conversation_id": conversation_id, "run_id": run_id, "agent": agent, "model": model }),
        ),
        TurnEvent::Delta { delta } => ("message.delta", json!({ "delta": delta })),
        TurnEvent::ImageProgress { tool_call_id, status } => (
            "image.progress",
            json!({ "tool_call_id": tool_call_id, "status": status }),
        ),
        TurnEvent::ImagePartial {
            tool_call_id,
            partial_image_index,
            mime_type,
            b64,
        } => (
            "image.partial",
            json!({ "tool_call_id": tool_call_id, "partial_image_index": partial_image_index, "mime_type": mime_type, "b64": b64 }),
        ),
        TurnEvent::Attachment(a) => (
            "attachment",
            json!({ "attachment": attachment_json(state, a).await }),
        ),
        TurnEvent::ImageFailed {
            tool_call_id,
            code,
            message,
        } => (
            "image.failed",
            json!({ "tool_call_id": tool_call_id, "code": code, "message": message }),
        ),
        TurnEvent::Completed(r) => ("run.completed", result_json(state, r).await),
        TurnEvent::Failed {
            code,
            message,
            retryable,
        } => (
            "error",
            json!({ "code": code, "message": message, "retryable": retryable }),
        ),
    }
}

/// An event's name and its one-line JSON data. Partial images carry megabytes of base64: their JSON is written
/// directly (base64 needs no escaping) instead of through a `serde_json::Value`, which would copy it twice more.
async fn render(state: &AppState, ev: &TurnEvent) -> (&'static str, String) {
    if let TurnEvent::ImagePartial {
        tool_call_id,
        partial_image_index,
        mime_type,
        b64,
    } = ev
        && b64
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
    {
        let id = Value::String(tool_call_id.clone());
        let mut data = String::with_capacity(b64.len() + 128);
        data.push_str(&format!(
            "{{\"tool_call_id\":{id},\"partial_image_index\":{partial_image_index},\"mime_type\":\"{mime_type}\",\"b64\":\""
        ));
        data.push_str(b64);
        data.push_str("\"}");
        return ("image.partial", data);
    }
    let (name, value) = render_value(state, ev).await;
    (name, value.to_string())
}

struct State {
    app: AppState,
    rx: Option<tokio::sync::mpsc::Receiver<TurnEvent>>,
    queued: Vec<TurnEvent>,
    next_id: u64,
    terminal_sent: bool,
    request_id: String,
}

fn events(
    app: AppState,
    started: Started,
    request_id: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let (rx, queued) = match started {
        Started::Live(rx) => (Some(rx), Vec::new()),
        Started::Replay(r) => {
            let started = TurnEvent::Started {
                conversation_id: r.conversation_id,
                run_id: "replay".into(),
                agent: String::new(),
                model: r.model.clone(),
            };
            (None, vec![TurnEvent::Completed(r), started])
        }
    };
    let init = State {
        app,
        rx,
        queued,
        next_id: 1,
        terminal_sent: false,
        request_id,
    };
    stream::unfold(init, |mut s| async move {
        if s.terminal_sent {
            return None;
        }
        let ev = match s.queued.pop() {
            Some(ev) => Some(ev),
            None => match s.rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => None,
            },
        };
        let ev = ev.unwrap_or_else(|| {
            tracing::error!(request_id = %s.request_id, "the turn ended without a terminal event");
            TurnEvent::Failed {
                code: "internal",
                message: "The turn ended unexpectedly; retry.".into(),
                retryable: true,
            }
        });
        s.terminal_sent = ev.is_terminal();
        let (name, data) = render(&s.app, &ev).await;
        let event = Event::default().id(s.next_id.to_string()).event(name).data(data);
        s.next_id += 1;
        Some((Ok(event), s))
    })
}

/// The SSE response of a started turn.
pub(crate) fn turn_stream(
    app: AppState,
    started: Started,
    request_id: String,
    keepalive: Duration,
) -> Response {
    let keep_alive = KeepAlive::new().interval(keepalive).text("keep-alive");
    let mut res = Sse::new(events(app, started, request_id).boxed())
        .keep_alive(keep_alive)
        .into_response();
    res.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}
