//! Files: `POST /v1/uploads` (an input image for a later turn), `GET /v1/attachments/{id}` (metadata with a
//! fresh URL), `GET /v1/usage` (the tenant's totals by day), and `GET /v1/files/{key}` — the signed,
//! expiring download URL for stores that cannot presign (memory, local disk); it needs no bearer token.

use crate::extract::{Caller, Multipart, Path, Query, multipart_error};
use crate::openapi::errors::{AUTH, route_errors};
use crate::views::{AttachmentView, UploadForm, UsageView};
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use agentd_storage::ObjectKey;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;
use uuid::Uuid;

/// Room for the multipart framing around the file (boundaries, part headers).
const MULTIPART_ALLOWANCE: usize = 64 * 1024;

pub(super) fn router(upload_max_bytes: u64) -> OpenApiRouter<AppState> {
    let body_limit = usize::try_from(upload_max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_ALLOWANCE);
    OpenApiRouter::default()
        .routes(routes!(upload).layer(axum::extract::DefaultBodyLimit::max(body_limit)))
        .routes(routes!(attachment))
        .routes(routes!(usage))
        .routes(routes!(file))
}

route_errors!(UploadErrors = AUTH + ["invalid_request", "payload_too_large", "rate_limited"]);

/// Upload an input image
///
/// A PNG, JPEG or WebP image (checked from its bytes, under UPLOAD_MAX_MB) for a later turn's `attachments`.
/// An upload no turn has used within 24 hours is deleted; one a conversation uses is kept with it. A tenant may
/// keep about 100 uploads no turn uses: beyond, `429 rate_limited` until a turn uses one.
#[utoipa::path(post, path = "/v1/uploads", tag = "files", operation_id = "upload",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    security(("bearer" = ["chat"])),
    responses((status = 201, description = "Stored.", body = AttachmentView), UploadErrors))]
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

route_errors!(AttachmentErrors = AUTH + ["attachment_not_found", "not_found", "rate_limited"]);

/// Show an attachment
///
/// An attachment's metadata with a fresh download URL.
#[utoipa::path(get, path = "/v1/attachments/{id}", tag = "files", operation_id = "getAttachment",
    params(("id" = String, Path, description = "The attachment's `object_id`.")),
    security(("bearer" = ["conversations:read"])),
    responses((status = 200, description = "The attachment.", body = AttachmentView), AttachmentErrors))]
async fn attachment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AttachmentView>, ApiError> {
    caller.require(Scope::ConversationsRead)?;
    let _reading = state.turns.reading(&caller.0.tenant_id).await?;
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
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// Days back from today, 1 to 366 (default 30).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 366)]
    days: Option<String>,
}

route_errors!(UsageErrors = AUTH + ["invalid_request", "rate_limited"]);

/// Show the tenant's usage
///
/// Tokens, images and estimated image cost by day.
#[utoipa::path(get, path = "/v1/usage", tag = "files", operation_id = "getUsage", params(UsageQuery),
    security(("bearer" = ["conversations:read"])),
    responses((status = 200, description = "Usage by day, with totals.", body = UsageView), UsageErrors))]
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
    let _reading = state.turns.reading(&caller.0.tenant_id).await?;
    let since = (chrono::Utc::now() - chrono::Duration::days(days - 1)).date_naive();
    let rows = state.db.scoped(&caller.0.tenant_id).usage_by_day(since).await?;
    Ok(Json(UsageView::of(&rows)))
}

/// The credential of a download link. Both are read as text so that a missing or garbled one is refused like
/// an altered link (403), not as a malformed request; other keys are ignored (they do not alter the link).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Signed {
    /// When the link expires, in seconds since the Unix epoch.
    #[param(value_type = i64)]
    expires: Option<String>,
    /// The link's signature.
    #[param(value_type = String)]
    sig: Option<String>,
}

route_errors!(
    FileErrors = [
        "forbidden",
        "not_found",
        "attachment_not_found",
        "unavailable",
        "internal"
    ]
);

/// Download a file by signed link
///
/// The bytes behind an attachment `url`, for stores that cannot presign (memory, local disk). The signature is
/// the credential: no bearer token. An expired or altered link is 403.
#[utoipa::path(get, path = "/v1/files/{*key}", tag = "files", operation_id = "downloadFile",
    params(("key" = String, Path, description = "The object key (slashes included), as in the attachment `url`."), Signed),
    responses((status = 200, description = "The image's bytes.",
        content(("image/png"), ("image/jpeg"), ("image/webp"))), FileErrors))]
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
    // In pieces: a download never makes the server hold the whole file per reader, however slowly it reads.
    let blob = state.store.get_stream(&parsed).await.map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found("attachment_not_found", "This file no longer exists.")
        } else {
            ApiError::unavailable("object store", e)
        }
    })?;
    let mut res = axum::body::Body::from_stream(blob.body).into_response();
    if let Some(len) = blob.len {
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
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
