//! `GET /v1/agents` and `GET /v1/agents/{key}`: each agent with its effective image tool config.

use crate::extract::{Caller, Path};
use crate::views::{AgentListView, AgentView};
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/agents", get(list))
        .route("/v1/agents/{key}", get(show))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Scope::AgentsRead)?;
    let data = state.agents.iter().map(|a| AgentView::from(a.as_ref())).collect();
    Ok(Json(AgentListView { data }).into_response())
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::AgentsRead)?;
    let agent = state.agents.get(&key).ok_or_else(|| {
        ApiError::not_found(
            "agent_not_found",
            format!("No agent {key:?}; GET /v1/agents lists the agents."),
        )
    })?;
    Ok(Json(AgentView::from(agent.as_ref())).into_response())
}
