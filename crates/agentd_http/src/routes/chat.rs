//! `POST /v1/chat` (one JSON answer) and `POST /v1/chat/stream` (Server-Sent Events). Both start the same turn;
//! the turn runs in a task of its own, so a client that disconnects does not cancel it.

use crate::error::{RetryDetails, status_of};
use crate::extract::{Caller, Json};
use crate::openapi::errors::{AUTH, JSON_BODY, route_errors};
use crate::sse::{replay_feed, run_stream};
use crate::views::TurnResultView;
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use agentd_core::{Mode, Started, TurnEvent, TurnRequest};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(chat))
        .routes(routes!(chat_stream))
}

/// The body of both chat endpoints.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatBody {
    /// The agent's key. Required to start a conversation (unless an agent is marked default); for an existing
    /// one it may be omitted and must match when given.
    #[serde(default)]
    agent: Option<String>,
    /// The user's message (at most CHAT_MAX_MESSAGE_CHARS characters).
    #[schema(min_length = 1)]
    message: String,
    /// Null or absent starts a new conversation; otherwise the turn continues this one.
    #[serde(default)]
    conversation_id: Option<Uuid>,
    /// Images uploaded with `POST /v1/uploads`, sent to the model as input images (at most CHAT_MAX_ATTACHMENTS).
    #[serde(default)]
    attachments: Vec<AttachmentRef>,
}

/// An uploaded image, by the `object_id` `POST /v1/uploads` answered.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AttachmentRef {
    object_id: Uuid,
}

/// What a turn can answer before it runs (checks, admission, the model API refusing to start) — the same for
/// both chat routes. Once a stream has started, failures arrive as its `error` event instead.
const TURN_REFUSALS: &[&str] = &[
    "agent_not_found",
    "conversation_not_found",
    "attachment_not_found",
    "conversation_busy",
    "request_in_progress",
    "unsupported_for_agent",
    "idempotency_key_reused",
    "rate_limited",
    "budget_exhausted",
    "upstream_error",
    "upstream_unavailable",
    "upstream_timeout",
];

/// The `Idempotency-Key` header of both chat routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(
    dead_code,
    reason = "read from the headers by hand; declared for the OpenAPI document"
)]
struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters. The same key with the same body within 24 h answers the first turn's
    /// result instead of running (and paying for) it again; with another body, 422 `idempotency_key_reused`.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
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

route_errors!(ChatErrors = AUTH + JSON_BODY + TURN_REFUSALS + ["shutting_down"]);

/// Run a turn, answer once
///
/// Runs one turn and answers with the saved reply. The turn runs on the server even if the client goes away.
#[utoipa::path(post, path = "/v1/chat", tag = "chat", operation_id = "chat",
    params(IdempotencyKey), request_body = ChatBody, security(("bearer" = ["chat"])),
    responses((status = 200, description = "The saved reply.", body = TurnResultView,
        headers(("idempotent-replayed" = String, description = "`true` when this is the first result of an earlier request with the same Idempotency-Key."))),
        ChatErrors))]
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

route_errors!(StreamErrors = AUTH + JSON_BODY + TURN_REFUSALS + []);

/// Run a turn, stream its events
///
/// Starts one turn and streams its events as Server-Sent Events. A client that disconnects does not cancel
/// the turn: `GET /v1/runs/{run_id}/events` picks the stream up again.
#[utoipa::path(post, path = "/v1/chat/stream", tag = "chat", operation_id = "chatStream",
    params(IdempotencyKey), request_body = ChatBody, security(("bearer" = ["chat"])),
    responses((status = 200, response = crate::openapi::EventStream), StreamErrors))]
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
    let mut res = run_stream(
        state.clone(),
        events,
        crate::request_id().unwrap_or_default(),
        false,
    );
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}
