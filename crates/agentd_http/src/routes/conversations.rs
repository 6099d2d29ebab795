//! `GET /v1/conversations` (newest first, cursor pagination), `GET /v1/conversations/{id}` (with messages)
//! and `DELETE /v1/conversations/{id}`. Another tenant's conversation answers exactly like a missing one.

use super::conversation_body::{self, BYTES_PER_READ, Head, MESSAGES_PER_READ};
use crate::extract::{Caller, Path, Query};
use crate::openapi::errors::{AUTH, route_errors};
use crate::views::{ActiveRunView, ConversationDetailView, ConversationPageView, ConversationView};
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use agentd_db::{ConversationCursor, DeleteOutcome};
use agentd_storage::KeyPrefix;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list))
        .routes(routes!(show, remove))
}

fn encode_cursor(c: &ConversationCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", c.updated_at.timestamp_micros(), c.id))
}

/// A cursor this server could have made: its time within the years both databases store (PostgreSQL's
/// timestamps end before 4713 BC; a crafted cursor beyond was a 500, not a 400).
fn decode_cursor(s: &str) -> Option<ConversationCursor> {
    use chrono::Datelike as _;
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let (micros, id) = raw.split_once('|')?;
    let updated_at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    if !(1..=9999).contains(&updated_at.year()) {
        return None;
    }
    Some(ConversationCursor {
        updated_at,
        id: id.parse().ok()?,
    })
}

route_errors!(ListErrors = AUTH + ["invalid_request", "rate_limited"]);

/// List conversations
///
/// The tenant's conversations, most recently updated first.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", operation_id = "listConversations",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    security(("bearer" = ["conversations:read"])),
    responses((status = 200, description = "One page of conversations.", body = ConversationPageView), ListErrors))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ConversationPageView>, ApiError> {
    caller.require(Scope::ConversationsRead)?;
    let _reading = state.turns.reading(&caller.0.tenant_id).await?;
    if let Some(k) = q.keys().find(|k| !matches!(k.as_str(), "limit" | "cursor")) {
        return Err(ApiError::invalid_request(format!(
            "Unknown query parameter `{k}`; use `limit` and `cursor`."
        )));
    }
    let limit = match q.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "limit={l} is not allowed: use a whole number from 1 to 100."
                ))
            })?,
    };
    let cursor = match q.get("cursor") {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            ApiError::invalid_request(
                "This cursor is not one we issued; pass `next_cursor` from the previous page.",
            )
        })?),
    };
    let page = state
        .db
        .scoped(&caller.0.tenant_id)
        .list_conversations(limit, cursor)
        .await?;
    Ok(Json(ConversationPageView {
        data: page.items.iter().map(ConversationView::from).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found("conversation_not_found", format!("No conversation {id:?}.")))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found("conversation_not_found", format!("No conversation {id}."))
}

route_errors!(ShowErrors = AUTH + ["conversation_not_found", "not_found", "rate_limited"]);

/// Show a conversation
///
/// The conversation with its messages; attachment URLs are minted fresh on every read.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", operation_id = "getConversation",
    params(("id" = String, Path, description = "The conversation's id.")),
    security(("bearer" = ["conversations:read"])),
    responses((status = 200, description = "The conversation.", body = ConversationDetailView), ShowErrors))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::ConversationsRead)?;
    let id = parse_id(&id)?;
    let tenant = caller.0.tenant_id.clone();
    // Held until the body is written or dropped: it holds a page at a time.
    let sending = state.turns.sending_conversation(&tenant)?;
    // For the first page's read; the body takes a place again for each page after it.
    let reading = state.turns.reading(&tenant).await?;
    let scoped = state.db.scoped(&tenant);
    // The page before the row: a conversation and its messages are deleted together, so a row still there
    // proves the page whole (the other way round, a delete in between answered an empty conversation).
    let first = scoped
        .messages_after(id, None, MESSAGES_PER_READ, BYTES_PER_READ)
        .await?;
    let conv = scoped.conversation(id).await?.ok_or_else(|| not_found(id))?;
    let head = Head {
        conversation: ConversationView::from(&conv),
        active_run: conv.active_run(state.lease).map(ActiveRunView::from),
    };
    drop(reading);
    Ok(conversation_body::respond(
        state, tenant, id, &head, first, sending,
    ))
}

route_errors!(
    DeleteErrors = AUTH
        + [
            "conversation_not_found",
            "not_found",
            "conversation_busy",
            "rate_limited"
        ]
);

/// Delete a conversation
///
/// Deletes the conversation with its stored images, the uploads only it used, its idempotency results and
/// its run log. A running turn holds it: 409 `conversation_busy`. If the object store is down, the
/// conversation stays (503) and a retry finishes the job.
// The bytes go first, under a lease, so no turn can start meanwhile.
#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "conversations", operation_id = "deleteConversation",
    params(("id" = String, Path, description = "The conversation's id.")),
    security(("bearer" = ["conversations:write"])),
    responses((status = 204, description = "Deleted."), DeleteErrors))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::ConversationsWrite)?;
    let id = parse_id(&id)?;
    let tenant = &caller.0.tenant_id;
    let scoped = state.db.scoped(tenant);
    let lease = format!("delete_{}", Uuid::now_v7().simple());
    // Its first database steps take one of the tenant's places for reads (`READS_PER_TENANT`), as reads do: a
    // flood of deletes must not take the pool from other tenants either. Not while the object store deletes,
    // nor for the last step, which must not be refused once the bytes are gone.
    let database = state.turns.reading(tenant).await?;
    match scoped.lease_for_delete(id, &lease, state.lease).await? {
        DeleteOutcome::Deleted => {}
        DeleteOutcome::NotFound => return Err(not_found(id)),
        DeleteOutcome::Busy => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conversation_busy",
                "A turn is running on this conversation; delete it when the turn has finished.",
            )
            .with_retry_after(2));
        }
    }
    let uploads = match scoped.exclusive_uploads(id).await {
        Ok(u) => u,
        Err(e) => {
            let _ = scoped.release_lease(id, &lease).await;
            return Err(e.into());
        }
    };
    drop(database);
    if let Err(e) = delete_bytes(&state, tenant, id, &uploads).await {
        let _ = scoped.release_lease(id, &lease).await;
        return Err(e);
    }
    match scoped.delete_conversation_leased(id, &lease).await {
        Ok(DeleteOutcome::Deleted) => Ok(StatusCode::NO_CONTENT),
        Ok(_) => Err(not_found(id)),
        // Given back, so that a retry finishes the job at once instead of meeting its own lease.
        Err(e) => {
            let _ = scoped.release_lease(id, &lease).await;
            Err(e.into())
        }
    }
}

async fn delete_bytes(
    state: &AppState,
    tenant: &agentd_db::TenantId,
    id: Uuid,
    uploads: &[agentd_db::StoredObject],
) -> Result<(), ApiError> {
    let unavailable = |e: agentd_storage::StorageError| ApiError::unavailable("object store", e);
    let prefix = KeyPrefix::conversation(tenant, &id.simple().to_string()).map_err(ApiError::internal)?;
    state.store.delete_prefix(&prefix).await.map_err(unavailable)?;
    for upload in uploads {
        state
            .store
            .delete(&upload.object_key)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}
