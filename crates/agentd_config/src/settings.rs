//! The settings tree. Each concern's settings type lives in the crate that owns the concern; this crate only
//! composes them, adds the few that have no crate of their own yet, and validates across them.

use crate::MetricsAddr;
use agentd_agents::{ImageDefaults, ModelSettings};
use agentd_auth::AuthSettings;
use agentd_core::TurnSettings;
use agentd_db::DbSettings;
use agentd_http::HttpSettings;
use agentd_storage::{Provider as StorageProvider, StorageConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `LOG_FORMAT` and `LOG_LEVEL` (an `EnvFilter` directive; `RUST_LOG` wins when set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// `OPENAI_API_KEY` and `OPENAI_BASE_URL`. Without a key, the built-in offline model answers.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    pub api_key: Option<String>,
    pub base_url: String,
}

impl fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("base_url", &redact_userinfo(&self.base_url))
            .finish()
    }
}

/// Everything the server reads at startup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `APP_ENV`: selects `config/<APP_ENV>.toml`.
    #[serde(default)]
    pub app_env: String,
    /// Where zero-config state lives: the dev signing secret, local objects.
    pub var_dir: PathBuf,
    pub http: HttpSettings,
    /// `METRICS_ADDR`: the Prometheus endpoint's own listener (empty: off).
    pub metrics_addr: MetricsAddr,
    pub database: DbSettings,
    /// `AGENTS_DIR`.
    pub agents_dir: PathBuf,
    /// `AGENT_MODEL_DEFAULT`.
    pub agent_model_default: String,
    /// `AGENT_MODEL_<KEY>`, keyed by the lower-cased key.
    #[serde(default)]
    pub agent_models: BTreeMap<String, String>,
    pub image: ImageDefaults,
    pub openai: OpenAiSettings,
    pub turns: TurnSettings,
    pub storage: StorageConfig,
    pub auth: AuthSettings,
    pub log: LogSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_env: "local".into(),
            var_dir: "var".into(),
            http: HttpSettings::default(),
            metrics_addr: MetricsAddr::default(),
            database: DbSettings::default(),
            agents_dir: "config/agents".into(),
            agent_model_default: "gpt-5.5".into(),
            agent_models: BTreeMap::new(),
            image: ImageDefaults::default(),
            openai: OpenAiSettings {
                api_key: None,
                base_url: "https://api.openai.com/v1".into(),
            },
            turns: TurnSettings::default(),
            storage: StorageConfig::default(),
            auth: AuthSettings::default(),
            log: LogSettings {
                format: LogFormat::Text,
                level: "info".into(),
            },
        }
    }
}

impl Settings {
    /// Model resolution inputs for the agent registry.
    pub fn models(&self) -> ModelSettings {
        ModelSettings {
            default_model: self.agent_model_default.clone(),
            by_key: self.agent_models.clone(),
        }
    }

    /// `true` when no OpenAI key is configured: turns go to the built-in offline model.
    pub fn offline(&self) -> bool {
        self.openai.api_key.as_deref().is_none_or(str::is_empty)
    }

    /// Rules that span fields; each problem names the variable at fault.
    pub fn validate(&self) -> Vec<String> {
        let mut p = self.image.validate();
        let s = &self.storage;
        let provider = serde_json::to_value(s.provider)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        let provider = provider.unwrap_or_default();
        let need = |p: &mut Vec<String>, ok: bool, var: &str, what: &str| {
            if !ok {
                p.push(format!("STORAGE_PROVIDER={provider} needs {var}: {what}"));
            }
        };
        let bucket = s.minio_bucket.as_deref().is_some_and(|b| !b.is_empty());
        match s.provider {
            StorageProvider::Minio => {
                need(
                    &mut p,
                    bucket,
                    "MINIO_BUCKET",
                    "the bucket (created at startup when missing)",
                );
                need(
                    &mut p,
                    s.minio_endpoint.is_some(),
                    "MINIO_ENDPOINT",
                    "the S3 API URL, e.g. http://127.0.0.1:9000",
                );
                need(
                    &mut p,
                    s.minio_access_key.is_some(),
                    "MINIO_ACCESS_KEY",
                    "the access key",
                );
                need(
                    &mut p,
                    s.minio_secret_key.is_some(),
                    "MINIO_SECRET_KEY",
                    "the secret key",
                );
            }
            StorageProvider::Gcs => need(&mut p, s.gcs_bucket.is_some(), "GCS_BUCKET", "an existing bucket"),
            StorageProvider::S3 => need(&mut p, bucket, "MINIO_BUCKET", "an existing bucket"),
            StorageProvider::Memory | StorageProvider::Filesystem => {}
        }
        if !(60..=604_800).contains(&s.signed_url_ttl_seconds) {
            p.push(format!(
                "STORAGE_SIGNED_URL_TTL_SECONDS={} is not allowed: use 60 to 604800 (7 days)",
                s.signed_url_ttl_seconds
            ));
        }
        for (var, url) in [
            ("OPENAI_BASE_URL", Some(&self.openai.base_url)),
            ("PUBLIC_BASE_URL", self.storage.public_base_url.as_ref()),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                p.push(format!(
                    "{var}={} is not allowed: use an http:// or https:// URL",
                    redact_userinfo(u)
                ));
            }
        }
        if self.agent_model_default.trim().is_empty() {
            p.push("AGENT_MODEL_DEFAULT is empty: name a model such as gpt-5.5".into());
        }
        let t = &self.turns;
        for (var, v, min, max) in [
            ("OPENAI_IDLE_TIMEOUT_SECONDS", t.idle_timeout_seconds, 1, 3600),
            ("OPENAI_TIMEOUT_SECONDS", t.total_timeout_seconds, 1, 7200),
            (
                "OPENAI_CONNECT_TIMEOUT_SECONDS",
                t.connect_timeout_seconds,
                1,
                300,
            ),
            ("OPENAI_MAX_EVENT_MB", u64::from(t.max_event_mb), 1, 512),
            (
                "OPENAI_LARGE_EVENTS_AT_ONCE",
                u64::from(t.large_events_at_once),
                0,
                256,
            ),
            ("OPENAI_MAX_RETRIES", u64::from(t.max_retries), 0, 10),
            ("CHAT_MAX_ATTACHMENTS", t.max_attachments as u64, 0, 100),
            (
                "CHAT_MAX_INPUT_IMAGE_MB",
                u64::from(t.max_input_image_mb),
                1,
                1024,
            ),
            ("CHAT_MAX_REPLY_MB", u64::from(t.max_reply_mb), 1, 256),
            ("IMAGE_MAX_PER_TURN", t.max_images_per_turn as u64, 0, 64),
            ("RUN_LEASE_SECONDS", t.lease_seconds, 3, 3600),
            (
                "RUN_EVENTS_RETENTION_HOURS",
                t.run_events_retention_hours,
                1,
                24 * 90,
            ),
            (
                "RUN_READERS_PER_TENANT",
                u64::from(t.run_readers_per_tenant),
                0,
                100_000,
            ),
            ("SHUTDOWN_GRACE_SECONDS", t.shutdown_grace_seconds, 0, 3600),
            (
                "HTTP_HEADER_TIMEOUT_SECONDS",
                self.http.header_timeout_seconds,
                1,
                600,
            ),
            (
                "HTTP_BODY_TIMEOUT_SECONDS",
                self.http.body_timeout_seconds,
                1,
                3600,
            ),
            (
                "HTTP_WRITE_TIMEOUT_SECONDS",
                self.http.write_timeout_seconds,
                1,
                3600,
            ),
        ] {
            if !(min..=max).contains(&v) {
                p.push(format!("{var}={v} is not allowed: use {min} to {max}"));
            }
        }
        if let Some(m) = self.metrics_addr.addr()
            && m.port() != 0
            && m.port() == self.http.bind_addr.port()
            && (m.ip() == self.http.bind_addr.ip()
                || m.ip().is_unspecified()
                || self.http.bind_addr.ip().is_unspecified())
        {
            p.push(format!(
                "METRICS_ADDR={m} is not allowed: metrics never share the public port (BIND_ADDR={}); use another \
                 port such as {}",
                self.http.bind_addr,
                crate::DEFAULT_METRICS_ADDR
            ));
        }
        if self.http.max_body_bytes < 1024 {
            p.push(format!(
                "HTTP_MAX_BODY_BYTES={} is not allowed: use at least 1024",
                self.http.max_body_bytes
            ));
        }
        p
    }

    /// The merged configuration with every secret replaced, for `agentd config` and the startup log.
    pub fn redacted(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        let hide = |v: &mut Value, path: &[&str]| {
            let mut cur = v;
            for k in &path[..path.len() - 1] {
                match cur.get_mut(*k) {
                    Some(next) => cur = next,
                    None => return,
                }
            }
            if let Some(slot) = cur.get_mut(path[path.len() - 1])
                && !slot.is_null()
            {
                *slot = Value::String("[redacted]".into());
            }
        };
        for path in [
            &["openai", "api_key"][..],
            &["auth", "jwt_secret"],
            &["storage", "minio_secret_key"],
            &["storage", "minio_access_key"],
            &["storage", "url_signing_secret"],
        ] {
            hide(&mut v, path);
        }
        if let Some(url) = v.pointer_mut("/database/url") {
            *url = Value::String(self.database.redacted_url());
        }
        for pointer in [
            "/openai/base_url",
            "/storage/public_base_url",
            "/storage/minio_endpoint",
            "/storage/minio_public_endpoint",
            "/storage/gcs_endpoint",
        ] {
            if let Some(slot) = v.pointer_mut(pointer)
                && let Some(url) = slot.as_str()
            {
                *slot = Value::String(redact_userinfo(url));
            }
        }
        v
    }
}

/// A URL without the credentials of its userinfo (`https://user:key@gateway/v1` → `https://***@gateway/v1`),
/// for logs and `agentd config`.
pub fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // A password may hold '/', '?' or '#' unencoded: then the last '@' anywhere ends the userinfo.
    let at = rest[..authority_end].rfind('@').or_else(|| rest.rfind('@'));
    match at {
        Some(i) => format!("{scheme}://***@{}", &rest[i + 1..]),
        None => url.to_owned(),
    }
}
