//! A run's events as Server-Sent Events: `id:` as the turn numbered them, `event:` names of the contract,
//! one-line JSON `data:`, a `: keep-alive` comment after `SSE_KEEPALIVE_SECONDS` of silence, and exactly one
//! terminal event — an `error` if the feed ends without one. Open streams are counted in the
//! [`STREAMS_ACTIVE`] gauge.

use crate::AppState;
use crate::views::{AttachmentEventView, TurnResultView};
use agentd_core::{
    Code, EventFeed, Failure, ImageFailed, ImagePartial, ImageProgress, MessageDelta, RunStarted, Sequenced,
    TurnError, TurnEvent,
};
use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;
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

/// One event as a client receives it: the `event:` name and its `data:` — what the stream writes, and what the
/// OpenAPI document describes (serialized whole, it is `{"event": name, "data": payload}`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "event", content = "data")]
pub(crate) enum StreamEvent<'a> {
    /// Always first.
    #[serde(rename = "run.started")]
    RunStarted(&'a RunStarted),
    /// Assistant text as it arrives.
    #[serde(rename = "message.delta")]
    MessageDelta(&'a MessageDelta),
    /// An image call's progress.
    #[serde(rename = "image.progress")]
    ImageProgress(&'a ImageProgress),
    /// A complete low-quality preview, inline; live only (never replayed).
    #[serde(rename = "image.partial")]
    ImagePartial(&'a ImagePartial),
    /// The final image, as soon as it is stored, with a fresh download URL.
    #[serde(rename = "attachment")]
    Attachment(AttachmentEventView),
    /// An image was refused or could not be stored; the turn goes on.
    #[serde(rename = "image.failed")]
    ImageFailed(&'a ImageFailed),
    /// Terminal: the saved reply.
    #[serde(rename = "run.completed")]
    RunCompleted(TurnResultView),
    /// Terminal: the turn did not complete.
    #[serde(rename = "error")]
    Error(&'a TurnError),
}

impl<'a> StreamEvent<'a> {
    /// The client's view of `ev`, with fresh URLs for attachments.
    async fn of(state: &AppState, ev: &'a TurnEvent) -> Self {
        match ev {
            TurnEvent::Started(d) => Self::RunStarted(d),
            TurnEvent::Delta(d) => Self::MessageDelta(d),
            TurnEvent::ImageProgress(d) => Self::ImageProgress(d),
            TurnEvent::ImagePartial(d) => Self::ImagePartial(d),
            TurnEvent::Attachment(d) => Self::Attachment(AttachmentEventView {
                attachment: state.urls.attachment(&d.attachment).await,
            }),
            TurnEvent::ImageFailed(d) => Self::ImageFailed(d),
            TurnEvent::Completed(r) => Self::RunCompleted(state.urls.result(r).await),
            TurnEvent::Failed(d) => Self::Error(d),
        }
    }

    /// The one-line JSON `data`.
    async fn data(&self) -> Result<String, serde_json::Error> {
        match self {
            Self::RunStarted(d) => serde_json::to_string(d),
            Self::MessageDelta(d) => serde_json::to_string(d),
            Self::ImageProgress(d) => serde_json::to_string(d),
            // A preview is megabytes of base64: serialize it off the async workers.
            Self::ImagePartial(d) if d.b64.len() > 64 * 1024 => {
                let d = (*d).clone();
                tokio::task::spawn_blocking(move || serde_json::to_string(&d))
                    .await
                    .unwrap_or_else(|e| Err(serde::ser::Error::custom(e)))
            }
            Self::ImagePartial(d) => serde_json::to_string(d),
            Self::Attachment(d) => serde_json::to_string(d),
            Self::ImageFailed(d) => serde_json::to_string(d),
            Self::RunCompleted(d) => serde_json::to_string(d),
            Self::Error(d) => serde_json::to_string(d),
        }
    }
}

async fn render(state: &AppState, ev: &Sequenced) -> Event {
    let data = StreamEvent::of(state, &ev.event)
        .await
        .data()
        .await
        .unwrap_or_else(|e| {
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
    /// Id of the last event sent (0: none yet).
    last: u64,
    ended: bool,
    /// A resume (`GET /v1/runs/{id}/events`), not a turn's own stream.
    resumed: bool,
    request_id: String,
    _open: Open,
}

/// An SSE response with no event that ends at once (a resume from at or past a run's end).
pub(crate) fn ended_stream() -> Response {
    sse_headers(Sse::new(stream::empty::<Result<Event, Infallible>>()).into_response())
}

fn sse_headers(mut res: Response) -> Response {
    res.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// The SSE response of a run's events: a turn's own stream, or a resume (`resumed`).
pub(crate) fn run_stream(app: AppState, events: EventFeed, request_id: String, resumed: bool) -> Response {
    let keepalive = Duration::from_secs(app.settings.sse_keepalive_seconds.max(1));
    let init = Feed {
        app,
        events,
        last: 0,
        ended: false,
        resumed,
        request_id,
        _open: Open::new(),
    };
    let stream = stream::unfold(init, |mut f| async move {
        if f.ended {
            return None;
        }
        let ev = match f.events.next().await {
            Some(ev) => ev,
            // A resume from past the end of a run that was live when it began (its client claimed an id the
            // run never reached): no event of it follows that place. It ends as it would had the run been
            // finished then.
            None if f.resumed && f.last == 0 => return None,
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
    sse_headers(
        Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(keepalive).text("keep-alive"))
            .into_response(),
    )
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
        && let Ok(Some(feed)) = state.turns.follow(tenant, id, 0).await
    {
        return feed;
    }
    let started = TurnEvent::Started(RunStarted {
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
