//! The route table. One module per resource, each exposing its own `router()` of handlers that carry their
//! OpenAPI description (`#[utoipa::path]`): the server's routes and the document's paths come from this one
//! table, so neither can list a route the other lacks.

mod agents;
mod chat;
mod conversation_body;
mod conversations;
mod files;
mod health;
pub(crate) mod playground;
mod runs;

use crate::{ApiError, AppState};
use axum::http::{Method, StatusCode, Uri};
use utoipa_axum::router::OpenApiRouter;

/// Every route with its OpenAPI operation. `upload_max_bytes` sizes the upload route's body limit; it plays no
/// part in the document.
pub(crate) fn table(upload_max_bytes: u64) -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .merge(health::router())
        .merge(crate::openapi::router())
        .merge(agents::router())
        .merge(chat::router())
        .merge(conversations::router())
        .merge(files::router(upload_max_bytes))
        .merge(runs::router())
        .merge(playground::router())
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(
        "not_found",
        format!("No route for {}; see the API reference (api-v1).", uri.path()),
    )
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}.", uri.path()),
    )
}
