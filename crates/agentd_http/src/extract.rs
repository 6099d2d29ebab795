//! Extractors whose rejections speak the contract (never axum's plain text): our `Json` (400 `invalid_json` /
//! `invalid_request`, 413 `payload_too_large`), `Query` (400 `invalid_request`), `Path` (404 `not_found`: a
//! path that cannot name anything), `Multipart` (400 `invalid_request`) and `Caller`, the verified principal
//! of a provisioned, active tenant.

use crate::{ApiError, AppState};
use agentd_auth::{Principal, Scope};
use agentd_db::TenantStatus;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

/// A JSON body; unknown fields are refused by the target types (`deny_unknown_fields`).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body is over the configured limit (HTTP_MAX_BODY_BYTES); send a smaller body.",
        );
    }
    match r {
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("The body is not valid JSON: {}", inner(&e.body_text())),
        ),
        JsonRejection::JsonDataError(e) => {
            ApiError::invalid_request(format!("The body does not fit: {}", inner(&e.body_text())))
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid_request("Send the body as JSON with `Content-Type: application/json`.")
        }
        other => ApiError::invalid_request(other.body_text()),
    }
}

/// A query string; typed targets refuse unknown keys with `#[serde(deny_unknown_fields)]`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(r) => Err(query_rejection(&r)),
        }
    }
}

fn query_rejection(r: &QueryRejection) -> ApiError {
    ApiError::invalid_request(format!(
        "The query string does not fit: {}; see the API reference for this route's parameters.",
        inner(&r.body_text())
    ))
}

/// Path parameters. One that cannot be decoded (e.g. not UTF-8) names nothing: 404.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(r) => Err(path_rejection(&r, parts.uri.path())),
        }
    }
}

fn path_rejection(r: &PathRejection, path: &str) -> ApiError {
    if r.status().is_server_error() {
        return ApiError::internal(r.body_text());
    }
    ApiError::not_found(
        "not_found",
        format!(
            "Nothing is at {path}: {}; use the ids the API returned.",
            inner(&r.body_text())
        ),
    )
}

/// A `multipart/form-data` body.
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(Multipart)
            .map_err(|r: MultipartRejection| {
                ApiError::invalid_request(format!(
                    "Send the body as multipart/form-data with a boundary \
                     (`Content-Type: multipart/form-data; boundary=…`): {}.",
                    r.body_text()
                ))
            })
    }
}

/// A multipart body that broke off or is malformed (400), or grew over a body limit (413).
pub fn multipart_error(e: &MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The multipart body is over the configured limit; send a smaller file.",
        );
    }
    ApiError::invalid_request(format!(
        "Malformed multipart body: {}; send multipart/form-data with the file in a field named `file`.",
        e.body_text()
    ))
}

/// axum prefixes serde's message with its own sentence; keep serde's, which names the field.
fn inner(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, rest)| rest)
}

/// The caller: a verified token of an active tenant (provisioned on its first valid request).
pub struct Caller(pub Principal);

impl Caller {
    /// 403 `forbidden` unless the token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "This token lacks the `{}` scope; mint one that includes it.",
                scope.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = state
            .auth
            .verify_header(header)
            .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
        match state
            .tenants
            .status(
                &state.db,
                &principal.tenant_id,
                state.settings.tenant_cache_seconds,
            )
            .await?
        {
            TenantStatus::Active => {}
            TenantStatus::Suspended => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "tenant_suspended",
                    "This tenant is suspended; contact the operator of this service.",
                ));
            }
        }
        tracing::Span::current().record("tenant_id", principal.tenant_id.as_str());
        Ok(Caller(principal))
    }
}
