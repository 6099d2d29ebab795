//! A run's events as Server-Sent Events: `id:` as the turn numbered them, `event:` names of the contract,
//! one-line JSON `data:`, a `: keep-alive` comment after `SSE_KEEPALIVE_SECONDS` of silence, and exactly one
//! terminal event — an `error` if the feed ends without one. Open streams are counted in the
//! [`STREAMS_ACTIVE`] gauge.

use crate::AppState;
use crate::views::AttachmentEventView;
use agentd_core::{Code, EventFeed, Failure, Sequenced, TurnEvent};
use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt as _};
use std::convert::Infallible;
use std::time::Duration;

/// Prometheus gauge: SSE responses open now (`POST /v1/chat/stream` and `GET /v1/runs/{id}/events`).
pub const STREAMS_ACTIVE: &str = "agentd_streams_active";

/// Registers this crate's metric help texts (call once, after installing the recorder).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        STREAMS_ACTIVE,
        "SSE responses open now (chat streams and resumed runs), until the last event is sent or the client goes."
    );
}

/// One open SSE response, counted in [`STREAMS_ACTIVE`] while it lives.
struct Open;

impl Open {
    fn new() -> Self {
        metrics::gauge!(STREAMS_ACTIVE).increment(1.0);
        Self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(STREAMS_ACTIVE).decrement(1.0);
    }
}

/// The one-line JSON `data` of an event, with fresh URLs for attachments.
async fn data(state: &AppState, ev: &TurnEvent) -> Result<String, serde_json::Error> {
    match ev {
        TurnEvent::Started(d) => serde_json::to_string(d),
        TurnEvent::Delta(d) => serde_json::to_string(d),
        TurnEvent::ImageProgress(d) => serde_json::to_string(d),
        // A preview is megabytes of base64: serialize it off the async workers.
        TurnEvent::ImagePartial(d) if d.b64.len() > 64 * 1024 => {
            let d = d.clone();
            tokio::task::spawn_blocking(move || serde_json::to_string(&d))
                .await
                .unwrap_or_else(|e| Err(serde::ser::Error::custom(e)))
        }
        TurnEvent::ImagePartial(d) => serde_json::to_string(d),
        TurnEvent::Attachment(d) => serde_json::to_string(&AttachmentEventView {
            attachment: state.urls.attachment(&d.attachment).await,
        }),
        TurnEvent::ImageFailed(d) => serde_json::to_string(d),
        TurnEvent::Completed(r) => serde_json::to_string(&state.urls.result(r).await),
        TurnEvent::Failed(d) => serde_json::to_string(d),
    }
}

async fn render(state: &AppState, ev: &Sequenced) -> Event {
    let data = data(state, &ev.event).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, id = ev.id, "cannot render an event");
        String::from("{}")
    });
    Event::default()
        .id(ev.id.to_string())
        .event(ev.event.name())
        .data(data)
}

struct Feed {
    app: AppState,
    events: EventFeed,
    /// Id of the last event sent.
    last: u64,
    ended: bool,
    request_id: String,
    _open: Open,
}

/// The SSE response of a run's events.
pub(crate) fn run_stream(app: AppState, events: EventFeed, request_id: String) -> Response {
    let keepalive = Duration::from_secs(app.settings.sse_keepalive_seconds.max(1));
    let init = Feed {
        app,
        events,
        last: 0,
        ended: false,
        request_id,
        _open: Open::new(),
    };
    let stream = stream::unfold(init, |mut f| async move {
        if f.ended {
            return None;
        }
        let ev = match f.events.next().await {
            Some(ev) => ev,
            None => {
                tracing::error!(request_id = %f.request_id, "the run's events ended without a terminal event");
                let failure = Failure::new(Code::Internal, "The turn ended unexpectedly; retry.");
                Sequenced {
                    id: f.last + 1,
                    event: TurnEvent::Failed((&failure).into()),
                }
            }
        };
        f.ended = ev.event.is_terminal();
        f.last = ev.id;
        let event = render(&f.app, &ev).await;
        Some((Ok::<_, Infallible>(event), f))
    });
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keepalive).text("keep-alive"))
        .into_response();
    res.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// A replayed result (idempotency) as a stream: the first request's run as it streamed, while its events are
/// kept (`RUN_EVENTS_RETENTION_HOURS`); after that, `run.started` then `run.completed` with the stored result.
pub(crate) async fn replay_feed(
    state: &AppState,
    tenant: &agentd_auth::TenantId,
    run_id: Option<String>,
    r: Box<agentd_core::TurnResult>,
) -> EventFeed {
    if let Some(id) = &run_id
        && let Ok(feed) = state.turns.follow(tenant, id, 0).await
    {
        return feed;
    }
    let started = TurnEvent::Started(agentd_core::RunStarted {
        conversation_id: r.conversation_id,
        run_id: run_id.unwrap_or_else(|| "replay".into()),
        agent: String::new(),
        model: r.model.clone(),
    });
    let events = vec![
        Sequenced {
            id: 1,
            event: started,
        },
        Sequenced {
            id: 2,
            event: TurnEvent::Completed(r),
        },
    ];
    Box::pin(stream::iter(events))
}
