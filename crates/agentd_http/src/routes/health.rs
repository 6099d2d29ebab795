//! `GET /healthz` (the process runs) and `GET /readyz` (its dependencies answer, and it is not shutting down).
//! Neither needs a token.

use crate::openapi::errors::route_errors;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// What `/readyz` checked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Checks {
    /// `ok` or `down`.
    pub database: &'static str,
    /// `ok` or `down`.
    pub object_store: &'static str,
    /// `false` from the moment a shutdown starts.
    pub accepting_turns: bool,
}

/// `GET /readyz` when ready.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: &'static str,
    pub checks: Checks,
}

/// `details` of a 503 from `/readyz`.
#[derive(Debug, Serialize)]
struct NotReady {
    checks: Checks,
}

/// Liveness
///
/// 200 while the process runs. No token.
#[utoipa::path(get, path = "/healthz", tag = "service", operation_id = "healthz",
    responses((status = 200, description = "The process runs.", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

route_errors!(ReadyErrors = ["unavailable"]);

/// Readiness
///
/// 200 when the database and the object store answer and the server takes turns; else 503 naming what is
/// down (`details.checks`). No token. The dependencies are asked at most once a second; every request in
/// between gets that answer.
#[utoipa::path(get, path = "/readyz", tag = "service", operation_id = "readyz",
    responses((status = 200, description = "Ready.", body = Ready), ReadyErrors))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let (checked, fresh) = state.readiness.check(&state.db, &state.store).await;
    let (db_ok, store_ok) = (checked.database.is_ok(), checked.object_store.is_ok());
    let accepting = state.turns.is_accepting();
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let checks = Checks {
        database: word(db_ok),
        object_store: word(store_ok),
        accepting_turns: accepting,
    };
    if db_ok && store_ok && accepting {
        return Ok(Json(Ready {
            status: "ready",
            checks,
        }));
    }
    let mut down: Vec<&str> = [("the database", db_ok), ("the object store", store_ok)]
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if !accepting {
        down.push("this instance (shutting down)");
    }
    if fresh {
        tracing::warn!(database = ?checked.database, object_store = ?checked.object_store, accepting, "not ready");
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("Not ready: {} down.", down.join(" and ")),
    )
    // The answer is checked again at most once a second.
    .with_retry_after(1)
    .with_details(NotReady { checks }))
}
