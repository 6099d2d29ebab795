//! The environment provider: the cookbook's variable names mapped to setting paths, values kept as strings
//! (so `AUTH_JWT_SECRET=123456…` stays a string; numbers are read with figment's lossy extraction), and
//! `AGENT_MODEL_<KEY>` collected into the model table.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Every environment variable read, and the setting it feeds.
pub const ENV_NAMES: &[(&str, &str)] = &[
    ("BIND_ADDR", "http.bind_addr"),
    ("METRICS_ADDR", "metrics_addr"),
    ("HTTP_MAX_BODY_BYTES", "http.max_body_bytes"),
    ("SSE_KEEPALIVE_SECONDS", "http.sse_keepalive_seconds"),
    ("TENANT_CACHE_SECONDS", "http.tenant_cache_seconds"),
    ("HTTP_HEADER_TIMEOUT_SECONDS", "http.header_timeout_seconds"),
    ("HTTP_BODY_TIMEOUT_SECONDS", "http.body_timeout_seconds"),
    ("HTTP_WRITE_TIMEOUT_SECONDS", "http.write_timeout_seconds"),
    ("DATABASE_URL", "database.url"),
    ("AUTO_MIGRATE", "database.auto_migrate"),
    ("DATABASE_MAX_CONNECTIONS", "database.max_connections"),
    ("AGENTS_DIR", "agents_dir"),
    ("AGENT_MODEL_DEFAULT", "agent_model_default"),
    ("IMAGE_DEFAULT_MODEL", "image.default_model"),
    ("IMAGE_DEFAULT_SIZE", "image.default_size"),
    ("IMAGE_DEFAULT_QUALITY", "image.default_quality"),
    ("IMAGE_DEFAULT_FORMAT", "image.default_format"),
    ("IMAGE_DEFAULT_BACKGROUND", "image.default_background"),
    ("IMAGE_DEFAULT_COMPRESSION", "image.default_compression"),
    ("IMAGE_OUTPUT_MAX_MB", "image.output_max_mb"),
    ("IMAGE_MAX_PARTIAL_IMAGES", "image.max_partial_images"),
    ("IMAGE_TENANT_MONTHLY_BUDGET_USD", "turns.monthly_budget_usd"),
    ("UPLOAD_MAX_MB", "turns.upload_max_mb"),
    ("OPENAI_API_KEY", "openai.api_key"),
    ("OPENAI_BASE_URL", "openai.base_url"),
    ("OPENAI_CONNECT_TIMEOUT_SECONDS", "turns.connect_timeout_seconds"),
    ("OPENAI_IDLE_TIMEOUT_SECONDS", "turns.idle_timeout_seconds"),
    ("OPENAI_TIMEOUT_SECONDS", "turns.total_timeout_seconds"),
    ("OPENAI_MAX_RETRIES", "turns.max_retries"),
    ("OPENAI_MAX_EVENT_MB", "turns.max_event_mb"),
    ("OPENAI_LARGE_EVENTS_AT_ONCE", "turns.large_events_at_once"),
    ("CHAT_RATE_LIMIT_PER_MINUTE", "turns.rate_limit_per_minute"),
    ("CHAT_STREAM_CONCURRENT_LIMIT", "turns.concurrent_limit"),
    ("CHAT_MAX_MESSAGE_CHARS", "turns.max_message_chars"),
    ("CHAT_MAX_ATTACHMENTS", "turns.max_attachments"),
    ("CHAT_MAX_INPUT_IMAGE_MB", "turns.max_input_image_mb"),
    ("CHAT_MAX_REPLY_MB", "turns.max_reply_mb"),
    ("IMAGE_MAX_PER_TURN", "turns.max_images_per_turn"),
    ("RUN_LEASE_SECONDS", "turns.lease_seconds"),
    ("RUN_EVENTS_RETENTION_HOURS", "turns.run_events_retention_hours"),
    ("RUN_READERS_PER_TENANT", "turns.run_readers_per_tenant"),
    ("READS_PER_TENANT", "turns.reads_per_tenant"),
    ("SHUTDOWN_GRACE_SECONDS", "turns.shutdown_grace_seconds"),
    ("STORAGE_PROVIDER", "storage.provider"),
    ("STORAGE_LOCAL_DIR", "storage.filesystem_root"),
    ("STORAGE_URL_SIGNING_SECRET", "storage.url_signing_secret"),
    ("STORAGE_SIGNED_URL_TTL_SECONDS", "storage.signed_url_ttl_seconds"),
    ("MINIO_ENDPOINT", "storage.minio_endpoint"),
    ("MINIO_PUBLIC_ENDPOINT", "storage.minio_public_endpoint"),
    ("MINIO_ACCESS_KEY", "storage.minio_access_key"),
    ("MINIO_SECRET_KEY", "storage.minio_secret_key"),
    ("MINIO_BUCKET", "storage.minio_bucket"),
    ("MINIO_REGION", "storage.minio_region"),
    ("GCS_BUCKET", "storage.gcs_bucket"),
    ("GCS_CREDENTIALS_PATH", "storage.gcs_credentials_path"),
    ("GCS_ENDPOINT", "storage.gcs_endpoint"),
    ("AUTH_JWT_SECRET", "auth.jwt_secret"),
    ("AUTH_JWT_PUBLIC_KEY_PATH", "auth.jwt_public_key_path"),
    ("AUTH_JWT_ISSUER", "auth.jwt_issuer"),
    ("AUTH_JWT_AUDIENCE", "auth.jwt_audience"),
    ("LOG_FORMAT", "log.format"),
    ("LOG_LEVEL", "log.level"),
    ("PUBLIC_BASE_URL", "storage.public_base_url"),
];

/// Variables whose empty value means "off" rather than "unset" (which would give the default).
const EMPTY_MEANS_OFF: &[&str] = &["METRICS_ADDR"];

const AGENT_MODEL_PREFIX: &str = "AGENT_MODEL_";

/// The variable behind a setting path, for error messages.
pub(crate) fn env_name_for(path: &str) -> Option<&'static str> {
    ENV_NAMES.iter().find(|(_, p)| *p == path).map(|(n, _)| *n)
}

/// Where variables come from.
pub(crate) trait EnvSource: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
    fn all(&self) -> Vec<(String, String)>;
}

pub(crate) struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn all(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

pub(crate) struct FixedEnv(pub Vec<(String, String)>);

impl EnvSource for FixedEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
    fn all(&self) -> Vec<(String, String)> {
        self.0.clone()
    }
}

pub(crate) struct EnvProvider<S>(S);

impl<S: EnvSource> EnvProvider<S> {
    pub(crate) fn new(source: S) -> Self {
        Self(source)
    }
}

fn insert(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

impl<S: EnvSource> Provider for EnvProvider<S> {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_, keys| {
            let path = keys.join(".");
            env_name_for(&path).map_or(path, str::to_owned)
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (name, path) in ENV_NAMES {
            // An empty variable counts as unset, as in the cookbook's .env files (except where empty means off).
            if let Some(v) = self
                .0
                .get(name)
                .filter(|v| !v.is_empty() || EMPTY_MEANS_OFF.contains(name))
            {
                insert(&mut dict, path, Value::from(v));
            }
        }
        for (name, value) in self.0.all() {
            if let Some(key) = name.strip_prefix(AGENT_MODEL_PREFIX)
                && key != "DEFAULT"
                && !key.is_empty()
                && !value.is_empty()
            {
                insert(
                    &mut dict,
                    &format!("agent_models.{}", key.to_ascii_lowercase()),
                    Value::from(value),
                );
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}
