//! `GET /healthz` (the process runs) and `GET /readyz` (its dependencies answer). Neither needs a token.

use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let db = tokio::time::timeout(std::time::Duration::from_secs(3), state.db.ping()).await;
    let db_ok = matches!(db, Ok(Ok(())));
    if !db_ok {
        tracing::warn!(error = ?db, "readiness: database is down");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Not ready: the database is down.",
        )
        .with_details(json!({ "checks": { "database": "down" } })));
    }
    Ok(Json(json!({ "status": "ready", "checks": { "database": "ok" } })))
}
