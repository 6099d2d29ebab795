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
    let limit = std::time::Duration::from_secs(3);
    let (db, store) = tokio::join!(
        tokio::time::timeout(limit, state.db.ping()),
        tokio::time::timeout(limit, state.store.check())
    );
    let (db_ok, store_ok) = (matches!(db, Ok(Ok(()))), matches!(store, Ok(Ok(()))));
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let checks = json!({ "database": word(db_ok), "object_store": word(store_ok) });
    if db_ok && store_ok {
        return Ok(Json(json!({ "status": "ready", "checks": checks })));
    }
    let down: Vec<&str> = [("the database", db_ok), ("the object store", store_ok)]
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    tracing::warn!(?db, ?store, "not ready");
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("Not ready: {} down.", down.join(" and ")),
    )
    .with_details(json!({ "checks": checks })))
}
