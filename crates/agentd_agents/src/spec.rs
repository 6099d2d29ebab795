//! The on-disk shape of one agent file, `config/agents/<key>.toml`. Unknown fields are rejected by serde.

use crate::image::ImageOverrides;
use serde::Deserialize;

/// One agent file exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentFile {
    pub key: String,
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    pub model_key: Option<String>,
    pub model: Option<String>,
    pub instructions: Option<String>,
    pub prompt_path: Option<String>,
    #[serde(default)]
    pub tool_keys: Vec<String>,
    #[serde(default)]
    pub tool_configs: ToolConfigs,
    #[serde(default)]
    pub default: bool,
}

/// `[tool_configs.*]`: one table per tool key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolConfigs {
    pub image_generation: Option<ImageOverrides>,
}
