//! Files: `POST /v1/uploads` (an input image for a later turn), `GET /v1/attachments/{id}` (metadata with a
//! fresh URL), `GET /v1/usage` (the tenant's totals by day), and `GET /v1/files/{key}` — the signed,
//! expiring download URL for stores that cannot presign (memory, local disk); it needs no bearer token.

use crate::extract::{Caller, Multipart, Path, Query, multipart_error};
use crate::views::{AttachmentView, UsageView};
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use agentd_storage::ObjectKey;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

/// Room for the multipart framing around the file (boundaries, part headers).
const MULTIPART_ALLOWANCE: usize = 64 * 1024;

pub(super) fn router(upload_max_bytes: u64) -> Router<AppState> {
    let body_limit = usize::try_from(upload_max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_ALLOWANCE);
    Router::new()
        .route(
            "/v1/uploads",
            post(upload).layer(axum::extract::DefaultBodyLimit::max(body_limit)),
        )
        .route("/v1/attachments/{id}", get(attachment))
        .route("/v1/usage", get(usage))
        .route("/v1/files/{*key}", get(file))
}

async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Multipart(mut form): Multipart,
) -> Result<Response, ApiError> {
    caller.require(Scope::Chat)?;
    let limit = state.turns.upload_max_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit + MULTIPART_ALLOWANCE as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The upload is over UPLOAD_MAX_MB; send a smaller image, alone, in the field `file`.",
        ));
    }
    // The cheap refusals (rate limit, uploads at once) before a byte of the body is read.
    let _permit = state.turns.admit_upload(&caller.0.tenant_id).await?;
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The upload is over UPLOAD_MAX_MB; send a smaller image.",
        )
    };
    if let Some(mut field) = form.next_field().await.map_err(|e| multipart_error(&e))? {
        if field.name() != Some("file") {
            return Err(unknown_field(field.name()));
        }
        // Read in chunks so an oversize upload is refused without buffering it whole.
        let mut buf = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(too_big());
            }
            buf.extend_from_slice(&chunk);
        }
        // Nothing may follow the file: reading on also bounds the whole body by the limit.
        drop(field);
        if let Some(extra) = form.next_field().await.map_err(|e| multipart_error(&e))? {
            return Err(unknown_field(extra.name()));
        }
        let meta = state.turns.upload(&caller.0.tenant_id, buf.into()).await?;
        return Ok((StatusCode::CREATED, Json(state.urls.attachment(&meta).await)).into_response());
    }
    Err(ApiError::invalid_request(
        "Send the image as multipart/form-data in a field named `file`.",
    ))
}

async fn attachment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AttachmentView>, ApiError> {
    caller.require(Scope::ConversationsRead)?;
    let missing = || ApiError::not_found("attachment_not_found", format!("No attachment {id:?}."));
    let uuid: Uuid = id.parse().map_err(|_| missing())?;
    let obj = state
        .db
        .scoped(&caller.0.tenant_id)
        .object(uuid)
        .await?
        .ok_or_else(missing)?;
    Ok(Json(state.urls.attachment(&obj.meta()).await))
}

/// `GET /v1/usage?days=N`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    days: Option<String>,
}

async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UsageQuery>,
) -> Result<Json<UsageView>, ApiError> {
    caller.require(Scope::ConversationsRead)?;
    let days = match q.days {
        None => 30,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=366).contains(n))
            .ok_or_else(|| ApiError::invalid_request(format!("days={d} is not allowed: use 1 to 366.")))?,
    };
    let since = (chrono::Utc::now() - chrono::Duration::days(days - 1)).date_naive();
    let rows = state.db.scoped(&caller.0.tenant_id).usage_by_day(since).await?;
    Ok(Json(UsageView::of(&rows)))
}

/// The credential of a download link. Both are read as text so that a missing or garbled one is refused like
/// an altered link (403), not as a malformed request; other keys are ignored (they do not alter the link).
#[derive(Deserialize)]
struct Signed {
    expires: Option<String>,
    sig: Option<String>,
}

async fn file(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
) -> Result<Response, ApiError> {
    let denied = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This download link is invalid or has expired; fetch the attachment again for a fresh one.",
        )
    };
    let signer = state
        .store
        .url_signer()
        .ok_or_else(|| ApiError::not_found("not_found", "This store serves its own download URLs."))?;
    let (Some(expires), Some(sig)) = (q.expires.and_then(|e| e.parse::<i64>().ok()), q.sig) else {
        return Err(denied());
    };
    if !signer.verify_signed(&key, expires, &sig, chrono::Utc::now()) {
        return Err(denied());
    }
    let parsed = ObjectKey::parse(&key).map_err(|_| denied())?;
    let blob = state.store.get(&parsed).await.map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found("attachment_not_found", "This file no longer exists.")
        } else {
            ApiError::unavailable("object store", e)
        }
    })?;
    let mut res = blob.bytes.into_response();
    let ct = HeaderValue::from_str(&blob.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    res.headers_mut().insert(header::CONTENT_TYPE, ct);
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    res.headers_mut()
        .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok(res)
}

/// A multipart field other than `file` (its name shown, cut to 64 characters).
fn unknown_field(name: Option<&str>) -> ApiError {
    let name: String = name.unwrap_or("(unnamed)").chars().take(64).collect();
    ApiError::invalid_request(format!(
        "Unknown multipart field {name:?}; send only the image, in a field named `file`."
    ))
}
