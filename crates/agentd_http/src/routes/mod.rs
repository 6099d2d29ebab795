//! The route table. One module per resource, each exposing its own `router()`.

mod agents;
mod chat;
mod conversations;
mod files;
mod health;
pub(crate) mod playground;
mod runs;

use crate::{ApiError, AppState};
use axum::Router;
use axum::http::{Method, StatusCode, Uri};

pub(crate) fn router(upload_max_bytes: u64) -> Router<AppState> {
    Router::new()
        .merge(health::router())
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
