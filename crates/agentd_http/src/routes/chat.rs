//! `POST /v1/chat` (one JSON answer) and `POST /v1/chat/stream` (Server-Sent Events). Both start the same turn;
//! the turn runs in a task of its own, so a client that disconnects does not cancel it.

use crate::extract::{Caller, Json};
use crate::sse::turn_stream;
use crate::views::result_json;
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use agentd_core::{Mode, Started, TurnError, TurnEvent, TurnRequest};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
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

impl From<TurnError> for ApiError {
    fn from(e: TurnError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut api = match e.internal {
            Some(cause) if status.is_server_error() => {
                ApiError::internal_with(status, e.code, e.message, cause)
            }
            _ => ApiError::new(status, e.code, e.message),
        };
        if let Some(s) = e.retry_after {
            api = api.with_retry_after(s);
        }
        api
    }
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
    let mut rx = match state.turns.start(&caller.0, req, Mode::Blocking).await? {
        Started::Replay(result) => {
            return Ok((
                [("idempotent-replayed", "true")],
                axum::Json(result_json(&state, &result).await),
            )
                .into_response());
        }
        Started::Live(rx) => rx,
    };
    while let Some(ev) = rx.recv().await {
        match ev {
            TurnEvent::Completed(result) => {
                return Ok(axum::Json(result_json(&state, &result).await).into_response());
            }
            TurnEvent::Failed {
                code,
                message,
                retryable,
            } => {
                let status = match code {
                    "upstream_timeout" => StatusCode::GATEWAY_TIMEOUT,
                    "upstream_unavailable" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
                    "internal" => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let mut e = ApiError::new(status, code, message)
                    .with_details(serde_json::json!({ "retryable": retryable }));
                if retryable {
                    e = e.with_retry_after(2);
                }
                return Err(e);
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
    let started = state.turns.start(&caller.0, req, Mode::Stream).await?;
    let keepalive = std::time::Duration::from_secs(state.settings.sse_keepalive_seconds.max(1));
    Ok(turn_stream(
        state.clone(),
        started,
        crate::request_id().unwrap_or_default(),
        keepalive,
    ))
}
