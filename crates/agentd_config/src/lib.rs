//! Configuration, layered with figment exactly as `design.md` says: built-in defaults → `config/default.toml`
//! → `config/<APP_ENV>.toml` → the environment, under the cookbook's names verbatim (`IMAGE_*`, `OPENAI_*`,
//! `DATABASE_URL`, `STORAGE_PROVIDER`, `MINIO_*`, `GCS_*`, `AGENT_MODEL_*`, `AUTH_JWT_*`, …).
//!
//! A bad value stops startup with a message naming the variable (or file key), the value and what is allowed.
//! [`Settings::redacted`] is the only form that may be printed or logged.

mod env;
mod metrics;
mod settings;

pub use agentd_storage::{Provider as StorageProvider, StorageConfig};
pub use env::ENV_NAMES;
pub use metrics::{DEFAULT_METRICS_ADDR, MetricsAddr};
pub use settings::{LogFormat, LogSettings, OpenAiSettings, Settings, redact_userinfo};

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use std::path::Path;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Loads the settings from `root` (the directory holding `config/`) and the process environment.
pub fn load(root: &Path) -> Result<Settings, ConfigError> {
    load_from(root, env::ProcessEnv)
}

/// Loads the settings with an explicit environment (tests).
pub fn load_with_env(root: &Path, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let owned: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    load_from(root, env::FixedEnv(owned))
}

fn load_from(root: &Path, source: impl env::EnvSource + 'static) -> Result<Settings, ConfigError> {
    let app_env = source.get("APP_ENV").unwrap_or_else(|| "local".to_owned());
    let figment = Figment::from(Serialized::defaults(Settings::default()))
        .merge(Toml::file(root.join("config/default.toml")))
        .merge(Toml::file(root.join(format!("config/{app_env}.toml"))))
        .merge(env::EnvProvider::new(source));
    let mut settings: Settings = figment
        .extract_lossy()
        .map_err(|e| ConfigError(e.into_iter().map(describe).collect()))?;
    settings.app_env = app_env;
    let problems = settings.validate();
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError(problems))
    }
}

/// One figment error as a sentence: `IMAGE_DEFAULT_QUALITY=ultra is not allowed: expected one of …`.
fn describe(e: figment::Error) -> String {
    use figment::error::Kind;
    let path = e.path.join(".");
    let name = env::env_name_for(&path).map_or_else(|| format!("`{path}`"), str::to_owned);
    let source = e
        .metadata
        .as_ref()
        .map(|m| m.name.to_string())
        .unwrap_or_default();
    let from = if source.contains("environment") || source.is_empty() {
        String::new()
    } else {
        format!(" (in {source})")
    };
    match &e.kind {
        Kind::InvalidType(actual, expected) => {
            format!("{name}{from} is not allowed: expected {expected}, found {actual}")
        }
        Kind::InvalidValue(actual, expected) => {
            format!("{name}{from} = {actual} is not allowed: expected {expected}")
        }
        Kind::UnknownVariant(v, allowed) => {
            format!(
                "{name}={v}{from} is not allowed: use one of {}",
                allowed.join(", ")
            )
        }
        Kind::UnknownField(f, _) => format!("`{path}.{f}`{from} is not a known setting"),
        Kind::MissingField(f) => format!("{name}.{f}{from} is required"),
        _ => format!("{name}{from}: {}", e.kind),
    }
}
