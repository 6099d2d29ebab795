//! `GET /v1/agents` and `GET /v1/agents/{key}`: each agent with its effective image tool config.

use crate::extract::{Caller, Path};
use crate::{ApiError, AppState};
use agentd_agents::Agent;
use agentd_auth::Scope;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/agents", get(list))
        .route("/v1/agents/{key}", get(show))
}

/// The public view of an agent (`api-v1.md`, "Agents").
pub(crate) fn agent_json(a: &Agent) -> Value {
    let mut tools = serde_json::Map::new();
    if let Some(img) = &a.image {
        tools.insert("image_generation".into(), json!(img));
    }
    json!({
        "key": a.key,
        "display_name": a.display_name,
        "description": a.description,
        "model": a.model,
        "tool_keys": a.tool_keys,
        "tools": tools,
        "default": a.default,
    })
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::AgentsRead)?;
    let data: Vec<Value> = state.agents.iter().map(|a| agent_json(a)).collect();
    Ok(Json(json!({ "data": data })))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::AgentsRead)?;
    let agent = state.agents.get(&key).ok_or_else(|| {
        ApiError::not_found(
            "agent_not_found",
            format!("No agent {key:?}; GET /v1/agents lists the agents."),
        )
    })?;
    Ok(Json(agent_json(agent)))
}
