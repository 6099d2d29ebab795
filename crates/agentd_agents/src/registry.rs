//! Loads every agent file of a directory once, validates it, resolves its model and its effective image tool
//! config, and keeps the result immutable for the life of the process.

use crate::KNOWN_TOOL_KEYS;
use crate::image::{ImageDefaults, ImageToolConfig};
use crate::spec::AgentFile;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Model resolution inputs: `AGENT_MODEL_DEFAULT` and every `AGENT_MODEL_<KEY>`.
#[derive(Debug, Clone, Default)]
pub struct ModelSettings {
    /// `AGENT_MODEL_DEFAULT`.
    pub default_model: String,
    /// `AGENT_MODEL_<KEY>`, keyed by the lower-cased `<KEY>`.
    pub by_key: BTreeMap<String, String>,
}

/// A validated agent, as served by `GET /v1/agents/{key}` and used for every turn.
#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub key: String,
    pub display_name: String,
    pub description: String,
    /// The resolved mainline model.
    pub model: String,
    pub tool_keys: Vec<String>,
    /// `true` for the agent used when a new conversation names none.
    pub default: bool,
    #[serde(skip)]
    pub instructions: String,
    /// Where the model came from: `model`, `AGENT_MODEL_<KEY>` or `AGENT_MODEL_DEFAULT`.
    #[serde(skip)]
    pub model_source: String,
    /// The effective image tool config, when the agent has the image tool.
    #[serde(skip)]
    pub image: Option<ImageToolConfig>,
    #[serde(skip)]
    pub file: PathBuf,
}

/// Every problem found in the agents folder, each naming its file.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<String>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the agents folder:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// The immutable set of agents, cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentRegistry {
    agents: Arc<BTreeMap<String, Arc<Agent>>>,
}

impl AgentRegistry {
    /// Reads and validates every `*.toml` file in `dir`. All problems are reported together.
    pub fn load(dir: &Path, images: &ImageDefaults, models: &ModelSettings) -> Result<Self, LoadErrors> {
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                return Err(LoadErrors(vec![format!(
                    "{}: cannot read the agents folder ({e}); set AGENTS_DIR to a folder of <key>.toml files",
                    dir.display()
                )]));
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut agents = BTreeMap::new();
        for file in files {
            match load_one(&file, dir, images, models) {
                Ok(agent) => {
                    agents.insert(agent.key.clone(), Arc::new(agent));
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        let defaults: Vec<_> = agents
            .values()
            .filter(|a| a.default)
            .map(|a| a.key.as_str())
            .collect();
        if defaults.len() > 1 {
            errors.push(format!(
                "{}: `default = true` is set on {} agents ({}); at most one agent may be the default",
                dir.display(),
                defaults.len(),
                defaults.join(", ")
            ));
        }
        if agents.is_empty() && errors.is_empty() {
            errors.push(format!("{}: no agent files (*.toml) found", dir.display()));
        }
        if errors.is_empty() {
            Ok(Self {
                agents: Arc::new(agents),
            })
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Builds a registry from agents already validated (tests).
    pub fn from_agents(list: impl IntoIterator<Item = Agent>) -> Self {
        let agents = list.into_iter().map(|a| (a.key.clone(), Arc::new(a))).collect();
        Self {
            agents: Arc::new(agents),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Arc<Agent>> {
        self.agents.get(key)
    }

    /// All agents, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Agent>> {
        self.agents.values()
    }

    /// The agent marked `default = true`, if any.
    pub fn default_agent(&self) -> Option<&Arc<Agent>> {
        self.agents.values().find(|a| a.default)
    }
}

fn load_one(
    file: &Path,
    dir: &Path,
    images: &ImageDefaults,
    models: &ModelSettings,
) -> Result<Agent, Vec<String>> {
    let name = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("{name}: cannot read ({e})")])?;
    let spec: AgentFile =
        toml::from_str(&text).map_err(|e| vec![format!("{name}: {}", e.to_string().trim())])?;
    let mut errors = Vec::new();
    let mut bad = |field: &str, value: &str, allowed: &str| {
        errors.push(format!("{name}: {field} = {value:?} is not allowed: {allowed}"));
    };
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if spec.key != stem {
        bad(
            "key",
            &spec.key,
            &format!("it must equal the file name, {stem:?}"),
        );
    }
    let key_ok = !spec.key.is_empty()
        && spec.key.len() <= 64
        && spec
            .key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !key_ok {
        bad("key", &spec.key, "1 to 64 characters of a-z, 0-9, `_` and `-`");
    }
    if spec.display_name.trim().is_empty() {
        bad(
            "display_name",
            &spec.display_name,
            "a non-empty name shown to users",
        );
    }
    let (model, model_source) = match (&spec.model, &spec.model_key) {
        (Some(_), Some(_)) => {
            bad(
                "model",
                spec.model.as_deref().unwrap_or_default(),
                "give `model` or `model_key`, not both",
            );
            (String::new(), String::new())
        }
        (Some(m), None) if m.trim().is_empty() => {
            bad("model", m, "a model name such as gpt-5.5");
            (String::new(), String::new())
        }
        (Some(m), None) => (m.clone(), "model".to_owned()),
        (None, Some(k)) => match models.by_key.get(&k.to_ascii_lowercase()) {
            Some(m) => (m.clone(), format!("AGENT_MODEL_{}", k.to_ascii_uppercase())),
            None => (models.default_model.clone(), "AGENT_MODEL_DEFAULT".to_owned()),
        },
        (None, None) => (models.default_model.clone(), "AGENT_MODEL_DEFAULT".to_owned()),
    };
    let instructions = match (&spec.instructions, &spec.prompt_path) {
        (Some(_), Some(p)) => {
            bad("prompt_path", p, "give `instructions` or `prompt_path`, not both");
            String::new()
        }
        (None, None) => {
            bad(
                "instructions",
                "",
                "give `instructions` (inline) or `prompt_path` (a file beside the agent)",
            );
            String::new()
        }
        (Some(i), None) => i.trim().to_owned(),
        (None, Some(p)) => {
            let path = dir.join(p);
            match std::fs::read_to_string(&path) {
                Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
                Ok(_) => {
                    bad("prompt_path", p, &format!("{} is empty", path.display()));
                    String::new()
                }
                Err(e) => {
                    bad("prompt_path", p, &format!("cannot read {} ({e})", path.display()));
                    String::new()
                }
            }
        }
    };
    for (i, tool) in spec.tool_keys.iter().enumerate() {
        if !KNOWN_TOOL_KEYS.contains(&tool.as_str()) {
            bad(
                &format!("tool_keys[{i}]"),
                tool,
                &format!("one of {}", KNOWN_TOOL_KEYS.join(", ")),
            );
        } else if spec.tool_keys[..i].contains(tool) {
            bad(&format!("tool_keys[{i}]"), tool, "each tool key once");
        }
    }
    let has_image = spec.tool_keys.iter().any(|t| t == "image_generation");
    let image = match (&spec.tool_configs.image_generation, has_image) {
        (Some(_), false) => {
            bad(
                "tool_configs.image_generation",
                "{…}",
                "add \"image_generation\" to tool_keys, or remove this table",
            );
            None
        }
        (overrides, true) => {
            let base = images.base_config();
            match base.merged(&overrides.clone().unwrap_or_default()) {
                Err(v) => {
                    bad(
                        &format!("tool_configs.image_generation.{}", v.field),
                        &v.value,
                        &v.allowed,
                    );
                    None
                }
                Ok(cfg) => {
                    for v in cfg.violations(images.max_partial_images) {
                        bad(
                            &format!("tool_configs.image_generation.{}", v.field),
                            &v.value,
                            &v.allowed,
                        );
                    }
                    Some(cfg)
                }
            }
        }
        (None, false) => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Agent {
        key: spec.key,
        display_name: spec.display_name,
        description: spec.description,
        model,
        tool_keys: spec.tool_keys,
        default: spec.default,
        instructions,
        model_source,
        image,
        file: file.to_path_buf(),
    })
}
