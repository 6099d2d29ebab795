//! `GET /healthz` (the process runs) and `GET /readyz` (its dependencies answer, and it is not shutting down).
//! Neither needs a token.

use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `GET /healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
}

/// What `/readyz` checked.
#[derive(Debug, Serialize)]
pub struct Checks {
    pub database: &'static str,
    pub object_store: &'static str,
    pub accepting_turns: bool,
}

/// `GET /readyz` when ready.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub status: &'static str,
    pub checks: Checks,
}

/// `details` of a 503 from `/readyz`.
#[derive(Debug, Serialize)]
struct NotReady {
    checks: Checks,
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let limit = std::time::Duration::from_secs(3);
    let (db, store) = tokio::join!(
        tokio::time::timeout(limit, state.db.ping()),
        tokio::time::timeout(limit, state.store.check())
    );
    let (db_ok, store_ok) = (matches!(db, Ok(Ok(()))), matches!(store, Ok(Ok(()))));
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
    tracing::warn!(?db, ?store, accepting, "not ready");
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("Not ready: {} down.", down.join(" and ")),
    )
    .with_details(NotReady { checks }))
}
