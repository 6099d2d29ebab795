//! `GET /v1/runs/{run_id}/events`: a run's events as Server-Sent Events, resumable from any replica — the
//! kept events after `Last-Event-ID` (or `?after=N`; neither: from the start), then the run live until its
//! terminal event. Previews are not kept; attachment URLs are minted fresh. Another tenant's run is a 404.

use crate::extract::{Caller, Path, Query};
use crate::openapi::errors::{AUTH, route_errors};
use crate::sse::{ended_stream, run_stream};
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use agentd_core::Turns;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(events))
}

/// Query parameters of the resume route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct After {
    /// Replay events with an id greater than this (the `Last-Event-ID` header wins); neither: from the start.
    pub after: Option<u64>,
}

route_errors!(EventsErrors = AUTH + ["invalid_request", "run_not_found", "not_found", "rate_limited"]);

/// Resume a run's events
///
/// Replays the run's kept events after `Last-Event-ID` (or `after`), then follows the run live until its
/// terminal event. The ids are those of the original stream, so a browser `EventSource` resumes by itself.
/// Any replica serves any run; runs are kept for RUN_EVENTS_RETENTION_HOURS (default 24). A tenant may have
/// RUN_READERS_PER_TENANT (default 100) of these streams open on one replica; beyond, `429 rate_limited`.
#[utoipa::path(get, path = "/v1/runs/{run_id}/events", tag = "chat", operation_id = "runEvents",
    params(
        ("run_id" = String, Path, description = "The `run_id` of the stream's `run.started` event."),
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event received: replay after it."),
        After,
    ),
    security(("bearer" = ["chat"]), ("bearer" = ["conversations:read"])),
    responses((status = 200, response = crate::openapi::EventStream), EventsErrors))]
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
    // The first read of the log (made before `follow` returns) in one of the tenant's places for reads
    // (`READS_PER_TENANT`): a flood of resumes waits for places instead of queueing on the pool every tenant's
    // turns use. What the follower reads later is not counted (a turn's own stream reads the log too), nor is an
    // idempotent replay's read.
    Turns::check_run_id(&run_id)?; // before a place is taken for it
    let reading = state.turns.reading(&caller.0.tenant_id).await?;
    let feed = state.turns.follow(&caller.0.tenant_id, &run_id, after).await?;
    drop(reading);
    match feed {
        Some(events) => Ok(run_stream(
            state.clone(),
            events,
            crate::request_id().unwrap_or_default(),
            true,
        )),
        // The run ended at or before `after`: nothing more, a stream that ends at once.
        None => Ok(ended_stream()),
    }
}
