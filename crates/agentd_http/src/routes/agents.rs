//! `GET /v1/agents` and `GET /v1/agents/{key}`: each agent with its effective image tool config.

use crate::extract::{Caller, Path};
use crate::openapi::errors::{AUTH, route_errors};
use crate::views::{AgentListView, AgentView};
use crate::{ApiError, AppState};
use agentd_auth::Scope;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list))
        .routes(routes!(show))
}

route_errors!(ListErrors = AUTH + []);

/// List the agents
///
/// Every agent with its effective image tool configuration.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", operation_id = "listAgents",
    security(("bearer" = ["agents:read"])),
    responses((status = 200, description = "The agents, by key.", body = AgentListView<'static>), ListErrors))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Scope::AgentsRead)?;
    let data = state
        .agents
        .iter()
        .map(|a| AgentView::of(a.as_ref(), state.turns.model_of(a)))
        .collect();
    Ok(Json(AgentListView { data }).into_response())
}

route_errors!(ShowErrors = AUTH + ["agent_not_found", "not_found"]);

/// Show an agent
#[utoipa::path(get, path = "/v1/agents/{key}", tag = "agents", operation_id = "getAgent",
    params(("key" = String, Path, description = "The agent's key, e.g. `designer`.")),
    security(("bearer" = ["agents:read"])),
    responses((status = 200, description = "The agent.", body = AgentView<'static>), ShowErrors))]
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
    Ok(Json(AgentView::of(agent.as_ref(), state.turns.model_of(agent))).into_response())
}
