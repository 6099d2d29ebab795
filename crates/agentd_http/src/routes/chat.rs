//! `POST /v1/chat` (one JSON answer) and `POST /v1/chat/stream` (Server-Sent Events). Both start the same turn;
//! the turn runs in a task of its own, so a client that disconnects does not cancel it.

use crate::error::{RetryDetails, status_of};
use crate::extract::{Caller, Json};
use crate::sse::{replay_feed, run_stream};
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use agentd_core::{Mode, Started, TurnEvent, TurnRequest};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/chat", post(chat))
        .route("/v1/chat/stream", post(chat_stream))
}

/// The body of both chat endpoints.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatBody {
    #[serde(default)]
    agent: Option<String>,
    message: String,
    #[serde(default)]
    conversation_id: Option<Uuid>,
    #[serde(default)]
    attachments: Vec<AttachmentRef>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AttachmentRef {
    object_id: Uuid,
}

fn turn_request(headers: &HeaderMap, path: &str, body: ChatBody) -> Result<TurnRequest, ApiError> {
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::invalid_request("Idempotency-Key must be 1 to 255 visible ASCII characters.")
                })?;
            let canonical = serde_json::to_vec(&(path, &body)).map_err(ApiError::internal)?;
            Some((key.to_owned(), hex::encode(sha2::Sha256::digest(&canonical))))
        }
    };
    let attachments = body.attachments.iter().map(|a| a.object_id).collect();
    Ok(TurnRequest {
        agent: body.agent,
        message: body.message,
        conversation_id: body.conversation_id,
        idempotency,
        attachments,
    })
}

async fn chat(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<ChatBody>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Chat)?;
    let req = turn_request(&headers, "/v1/chat", body)?;
    let mut events = match state.turns.start(&caller.0, req, Mode::Blocking).await? {
        Started::Replay { result, .. } => {
            let view = state.urls.result(&result).await;
            return Ok(([("idempotent-replayed", "true")], axum::Json(view)).into_response());
        }
        Started::Live { events, .. } => events,
    };
    while let Some(ev) = events.next().await {
        match ev.event {
            TurnEvent::Completed(result) => {
                return Ok(axum::Json(state.urls.result(&result).await).into_response());
            }
            TurnEvent::Failed(e) => {
                let mut err =
                    ApiError::new(status_of(e.code), e.code.as_str(), e.message).with_details(RetryDetails {
                        retryable: e.retryable,
                    });
                if e.retryable {
                    err = err.with_retry_after(2);
                }
                return Err(err);
            }
            _ => {}
        }
    }
    Err(ApiError::internal("the turn ended without a result"))
}

async fn chat_stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<ChatBody>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Chat)?;
    let req = turn_request(&headers, "/v1/chat/stream", body)?;
    let (events, replayed) = match state.turns.start(&caller.0, req, Mode::Stream).await? {
        Started::Live { events, .. } => (events, false),
        Started::Replay { run_id, result } => (
            replay_feed(&state, &caller.0.tenant_id, run_id, result).await,
            true,
        ),
    };
    let mut res = run_stream(state.clone(), events, crate::request_id().unwrap_or_default());
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}
