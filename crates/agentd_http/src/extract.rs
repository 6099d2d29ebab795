//! Extractors whose rejections speak the contract: our `Json` (400 `invalid_json` / `invalid_request`, 413
//! `payload_too_large`) and `Caller`, the verified principal of a provisioned, active tenant.

use crate::{ApiError, AppState};
use agentd_auth::{Principal, Scope};
use agentd_db::TenantStatus;
use axum::extract::rejection::JsonRejection;
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
