//! Agent specs: one `config/agents/<key>.toml` per agent (plus an optional prompt file), loaded and validated
//! once at startup into an immutable [`AgentRegistry`]. Every error names the file, the field, the value and
//! what is allowed; unknown fields are errors.
//!
//! The image tool's effective configuration is the `IMAGE_*` defaults ([`ImageDefaults`]) overridden per agent
//! by `tool_configs.image_generation`, validated with the rules in [`image`].

pub mod image;
mod registry;
mod size;
mod spec;

pub use image::{Background, ImageDefaults, ImageToolConfig, OutputFormat, Quality};
pub use registry::{Agent, AgentRegistry, LoadErrors, ModelSettings};

/// The tool keys an agent may list in `tool_keys`.
pub const KNOWN_TOOL_KEYS: &[&str] = &["image_generation"];
