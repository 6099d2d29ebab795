//! The hosted `image_generation` tool: the `IMAGE_*` defaults, the per-agent overrides, and the rules that
//! decide whether a configuration can be sent upstream (sizes per image model, format/background/compression
//! combinations, `input_fidelity`, the partial-image cap).

use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::size::check_size;
use crate::size::image_model_major;

/// `quality` of the image tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Low,
    Medium,
    High,
    Auto,
}

/// `output_format` of the image tool (`format` is accepted as an alias in agent files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Png,
    Jpeg,
    Webp,
}

/// `background` of the image tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    Transparent,
    Opaque,
    Auto,
}

/// `moderation` of the image tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Moderation {
    Auto,
    Low,
}

/// `input_fidelity` of the image tool (older image models only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputFidelity {
    High,
    Low,
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let v = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(v.as_str().unwrap_or_default())
            }
        }
    )*};
}
display_as_serde!(Quality, OutputFormat, Background, Moderation, InputFidelity);

/// The `IMAGE_*` environment defaults (see `design.md`, "Image generation rules").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDefaults {
    /// `IMAGE_DEFAULT_MODEL`: always sent explicitly (the API's own default model is retired).
    pub default_model: String,
    /// `IMAGE_DEFAULT_SIZE`.
    pub default_size: String,
    /// `IMAGE_DEFAULT_QUALITY`.
    pub default_quality: Quality,
    /// `IMAGE_DEFAULT_FORMAT`.
    pub default_format: OutputFormat,
    /// `IMAGE_DEFAULT_BACKGROUND`.
    pub default_background: Background,
    /// `IMAGE_DEFAULT_COMPRESSION`: 0–100, only for jpeg/webp.
    pub default_compression: Option<u8>,
    /// `IMAGE_OUTPUT_MAX_MB`: cap on the decoded bytes of one image.
    pub output_max_mb: u32,
    /// `IMAGE_MAX_PARTIAL_IMAGES`: cap on `partial_images` (0–3), and the streaming default.
    pub max_partial_images: u8,
}

impl Default for ImageDefaults {
    fn default() -> Self {
        Self {
            default_model: "gpt-image-2".into(),
            default_size: "1024x1024".into(),
            default_quality: Quality::High,
            default_format: OutputFormat::Png,
            default_background: Background::Auto,
            default_compression: None,
            output_max_mb: 6,
            max_partial_images: 2,
        }
    }
}

impl ImageDefaults {
    /// The effective tool config of an agent that overrides nothing.
    pub fn base_config(&self) -> ImageToolConfig {
        ImageToolConfig {
            model: self.default_model.clone(),
            size: self.default_size.clone(),
            quality: self.default_quality,
            output_format: self.default_format,
            background: self.default_background,
            output_compression: self.default_compression,
            partial_images: self.max_partial_images,
            input_fidelity: None,
            moderation: None,
        }
    }

    /// Checks the defaults on their own. Each violation names the environment variable at fault.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.output_max_mb == 0 || self.output_max_mb > 64 {
            errors.push(format!(
                "IMAGE_OUTPUT_MAX_MB={} is not allowed: use a whole number of MiB from 1 to 64",
                self.output_max_mb
            ));
        }
        if self.max_partial_images > 3 {
            errors.push(format!(
                "IMAGE_MAX_PARTIAL_IMAGES={} is not allowed: use 0, 1, 2 or 3",
                self.max_partial_images
            ));
        }
        for v in self.base_config().violations(self.max_partial_images.min(3)) {
            errors.push(format!(
                "{}={} is not allowed: {}",
                default_env_name(v.field),
                v.value,
                v.allowed
            ));
        }
        errors
    }

    /// Decoded-byte cap of one image.
    pub fn output_max_bytes(&self) -> u64 {
        u64::from(self.output_max_mb) * 1024 * 1024
    }
}

fn default_env_name(field: &str) -> &'static str {
    match field {
        "model" => "IMAGE_DEFAULT_MODEL",
        "size" => "IMAGE_DEFAULT_SIZE",
        "quality" => "IMAGE_DEFAULT_QUALITY",
        "output_format" => "IMAGE_DEFAULT_FORMAT",
        "background" => "IMAGE_DEFAULT_BACKGROUND",
        "output_compression" => "IMAGE_DEFAULT_COMPRESSION",
        _ => "IMAGE_MAX_PARTIAL_IMAGES",
    }
}

/// An agent's `[tool_configs.image_generation]` table, both spellings accepted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOverrides {
    pub model: Option<String>,
    pub size: Option<String>,
    pub quality: Option<Quality>,
    pub format: Option<OutputFormat>,
    pub output_format: Option<OutputFormat>,
    pub background: Option<Background>,
    pub compression: Option<u8>,
    pub output_compression: Option<u8>,
    pub partial_images: Option<u8>,
    pub input_fidelity: Option<InputFidelity>,
    pub moderation: Option<Moderation>,
}

/// One broken rule: the canonical field, the offending value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: &'static str,
    pub value: String,
    pub allowed: String,
}

/// The effective image tool configuration: exactly what is sent upstream (before per-request adjustments such
/// as `partial_images: 0` on non-streaming turns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImageToolConfig {
    /// The image model, e.g. `gpt-image-2`.
    pub model: String,
    /// `auto` or `WxH`, e.g. `1024x1024`.
    pub size: String,
    pub quality: Quality,
    pub output_format: OutputFormat,
    pub background: Background,
    /// 0–100, only for jpeg and webp.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 100)]
    pub output_compression: Option<u8>,
    /// Previews streamed per image (0–3); non-streaming turns send 0.
    #[schema(maximum = 3)]
    pub partial_images: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_fidelity: Option<InputFidelity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moderation: Option<Moderation>,
}

impl ImageToolConfig {
    /// Merges overrides over `self`. Giving both spellings of one field is a violation.
    pub fn merged(&self, o: &ImageOverrides) -> Result<Self, Violation> {
        let both = |field: &'static str, alias: &str| Violation {
            field,
            value: format!("both `{alias}` and `{field}`"),
            allowed: format!("give only one of `{alias}` and `{field}` (they mean the same)"),
        };
        if o.format.is_some() && o.output_format.is_some() {
            return Err(both("output_format", "format"));
        }
        if o.compression.is_some() && o.output_compression.is_some() {
            return Err(both("output_compression", "compression"));
        }
        let mut c = self.clone();
        if let Some(m) = &o.model {
            c.model.clone_from(m);
        }
        if let Some(s) = &o.size {
            c.size.clone_from(s);
        }
        c.quality = o.quality.unwrap_or(c.quality);
        c.output_format = o.output_format.or(o.format).unwrap_or(c.output_format);
        c.background = o.background.unwrap_or(c.background);
        if let Some(v) = o.output_compression.or(o.compression) {
            c.output_compression = Some(v);
        } else if o.output_format.or(o.format) == Some(OutputFormat::Png) {
            // A global jpeg/webp compression default must not make a png agent invalid.
            c.output_compression = None;
        }
        c.partial_images = o.partial_images.unwrap_or(c.partial_images);
        c.input_fidelity = o.input_fidelity.or(c.input_fidelity);
        c.moderation = o.moderation.or(c.moderation);
        Ok(c)
    }

    /// Every rule of `design.md` this configuration breaks; empty when it may be sent upstream.
    pub fn violations(&self, partial_cap: u8) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut bad = |field: &'static str, value: String, allowed: String| {
            out.push(Violation {
                field,
                value,
                allowed,
            });
        };
        if !self.model.starts_with("gpt-image-") && !self.model.starts_with("chatgpt-image-") {
            bad(
                "model",
                self.model.clone(),
                "an image model such as gpt-image-2".into(),
            );
        }
        if let Err(why) = check_size(&self.model, &self.size) {
            bad("size", self.size.clone(), why);
        }
        if self.background == Background::Transparent && self.output_format == OutputFormat::Jpeg {
            bad(
                "background",
                "transparent".into(),
                "transparent needs output_format png or webp (jpeg has no alpha)".into(),
            );
        }
        if let Some(c) = self.output_compression {
            if self.output_format == OutputFormat::Png {
                bad(
                    "output_compression",
                    c.to_string(),
                    "compression applies only to jpeg or webp; remove it for png".into(),
                );
            } else if c > 100 {
                bad(
                    "output_compression",
                    c.to_string(),
                    "a whole number from 0 to 100".into(),
                );
            }
        }
        if self.input_fidelity.is_some()
            && (self.model.contains("mini") || image_model_major(&self.model) >= 2)
        {
            bad(
                "input_fidelity",
                self.input_fidelity.map(|f| f.to_string()).unwrap_or_default(),
                format!("omit input_fidelity: {} does not accept it", self.model),
            );
        }
        if self.partial_images > partial_cap {
            bad(
                "partial_images",
                self.partial_images.to_string(),
                format!("0 to {partial_cap} (IMAGE_MAX_PARTIAL_IMAGES)"),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_is_an_error_and_alias_takes_effect() {
        let base = ImageDefaults::default().base_config();
        let o = ImageOverrides {
            format: Some(OutputFormat::Webp),
            ..Default::default()
        };
        assert_eq!(base.merged(&o).unwrap().output_format, OutputFormat::Webp);
        let o = ImageOverrides {
            format: Some(OutputFormat::Webp),
            output_format: Some(OutputFormat::Png),
            ..Default::default()
        };
        assert_eq!(base.merged(&o).unwrap_err().field, "output_format");
        let o = ImageOverrides {
            compression: Some(1),
            output_compression: Some(2),
            ..Default::default()
        };
        assert_eq!(base.merged(&o).unwrap_err().field, "output_compression");
    }

    #[test]
    fn cross_field_rules() {
        let mut c = ImageDefaults::default().base_config();
        c.output_format = OutputFormat::Jpeg;
        c.background = Background::Transparent;
        c.output_compression = Some(80);
        let fields: Vec<_> = c.violations(2).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["background"]);
        c.output_format = OutputFormat::Png;
        let fields: Vec<_> = c.violations(2).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["output_compression"]);
        c.output_compression = None;
        c.input_fidelity = Some(InputFidelity::High);
        c.partial_images = 3;
        let fields: Vec<_> = c.violations(2).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["input_fidelity", "partial_images"]);
        c.model = "gpt-image-1.5".into();
        c.partial_images = 2;
        assert!(
            c.violations(2).is_empty(),
            "input_fidelity is fine on gpt-image-1.5"
        );
        c.model = "gpt-image-1-mini".into();
        assert_eq!(c.violations(2)[0].field, "input_fidelity");
    }

    #[test]
    fn defaults_name_the_variable() {
        let d = ImageDefaults {
            default_size: "999x999".into(),
            max_partial_images: 5,
            ..Default::default()
        };
        let errors = d.validate().join("\n");
        assert!(
            errors.contains("IMAGE_DEFAULT_SIZE=999x999 is not allowed"),
            "{errors}"
        );
        assert!(errors.contains("IMAGE_MAX_PARTIAL_IMAGES=5"), "{errors}");
        let d = ImageDefaults {
            default_format: OutputFormat::Png,
            default_compression: Some(50),
            ..Default::default()
        };
        assert!(d.validate()[0].starts_with("IMAGE_DEFAULT_COMPRESSION=50"));
    }

    #[test]
    fn png_agent_drops_a_global_compression_default() {
        let d = ImageDefaults {
            default_format: OutputFormat::Webp,
            default_compression: Some(70),
            ..Default::default()
        };
        let o = ImageOverrides {
            format: Some(OutputFormat::Png),
            ..Default::default()
        };
        let c = d.base_config().merged(&o).unwrap();
        assert_eq!(c.output_compression, None);
        assert!(c.violations(2).is_empty());
    }
}
