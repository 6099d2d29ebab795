//! The public HTTP API of `api-v1.md`, and the only crate that knows axum: routes, extractors, the error
//! envelope, request ids and per-request logging. Handlers are thin: they extract, call the domain crates and
//! map the result.

mod context;
mod deadline;
mod error;
mod extract;
mod openapi;
mod readiness;
mod routes;
mod sse;
mod state;
mod tenants;
mod views;

pub use context::request_id;
pub use error::{ApiError, status_of};
pub use openapi::{document, document_json, openapi_path};
pub use readiness::Readiness;
pub use routes::playground::Playground;
pub use sse::{STREAMS_ACTIVE, describe_metrics};
pub use state::{App, AppState, HttpSettings};
pub use views::Urls;

/// The whole router, with request ids, logging and the body limit applied.
pub fn router(state: AppState) -> axum::Router {
    let limit = state.settings.max_body_bytes;
    let (routes, _) = routes::table(state.turns.upload_max_bytes()).split_for_parts();
    routes
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        .layer(axum::middleware::from_fn_with_state(
            std::time::Duration::from_secs(state.settings.body_timeout_seconds.max(1)),
            deadline::limit_body_time,
        ))
        .layer(axum::middleware::from_fn(context::request_context))
        .with_state(state)
}
