//! `GET /v1/runs/{run_id}/events`: a run's events as Server-Sent Events, resumable from any replica — the
//! kept events after `Last-Event-ID` (or `?after=N`; neither: from the start), then the run live until its
//! terminal event. Previews are not kept; attachment URLs are minted fresh. Another tenant's run is a 404.

use crate::extract::{Caller, Path, Query};
use crate::sse::run_stream;
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/runs/{run_id}/events", get(events))
}

/// Query parameters of the resume route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct After {
    /// Replay events with an id greater than this (the `Last-Event-ID` header wins).
    pub after: Option<u64>,
}

async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if caller.require(Scope::Chat).is_err() {
        caller.require(Scope::ConversationsRead)?;
    }
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid_request("Last-Event-ID must be the integer id of an event of this run.")
                })?,
        ),
    };
    let after = last_event_id.or(q.after).unwrap_or(0);
    let events = state.turns.follow(&caller.0.tenant_id, &run_id, after).await?;
    Ok(run_stream(
        state.clone(),
        Box::pin(events),
        crate::request_id().unwrap_or_default(),
    ))
}
