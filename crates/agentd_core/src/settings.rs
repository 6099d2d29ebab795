//! Turn settings: upstream timeouts and retries, per-tenant limits, per-request caps, the run lease, the run
//! event log's retention and the shutdown deadline.

use serde::{Deserialize, Serialize};

/// `OPENAI_*` timeouts, `CHAT_*` limits and `SHUTDOWN_GRACE_SECONDS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSettings {
    /// `OPENAI_CONNECT_TIMEOUT_SECONDS`.
    pub connect_timeout_seconds: u64,
    /// `OPENAI_IDLE_TIMEOUT_SECONDS`: longest silence between two upstream events.
    pub idle_timeout_seconds: u64,
    /// `OPENAI_TIMEOUT_SECONDS`: longest whole turn.
    pub total_timeout_seconds: u64,
    /// `OPENAI_MAX_RETRIES`: retries before the stream has started.
    pub max_retries: u32,
    /// `OPENAI_MAX_EVENT_MB`: a larger upstream event fails the turn instead of growing memory.
    pub max_event_mb: u32,
    /// `OPENAI_LARGE_EVENTS_AT_ONCE`: upstream streams that may buffer an event over 1 MiB (an image) at once;
    /// the others wait until one has handled its image. Bounds the memory of concurrent image turns. 0 (the
    /// default): one per CPU core, at least 2.
    pub large_events_at_once: u32,
    /// `CHAT_RATE_LIMIT_PER_MINUTE`: turns a tenant may start per minute (0 = unlimited).
    pub rate_limit_per_minute: u32,
    /// `CHAT_STREAM_CONCURRENT_LIMIT`: turns a tenant may run at once (0 = unlimited).
    pub concurrent_limit: u32,
    /// `CHAT_MAX_MESSAGE_CHARS`.
    pub max_message_chars: usize,
    /// `SHUTDOWN_GRACE_SECONDS`: how long running turns may finish after a shutdown signal.
    pub shutdown_grace_seconds: u64,
    /// `IMAGE_TENANT_MONTHLY_BUDGET_USD`: estimated image spend per tenant and calendar month (UTC).
    pub monthly_budget_usd: Option<f64>,
    /// `UPLOAD_MAX_MB`: largest input image accepted by `POST /v1/uploads`.
    pub upload_max_mb: u32,
    /// `CHAT_MAX_ATTACHMENTS`: input images one turn may reference.
    pub max_attachments: usize,
    /// `CHAT_MAX_INPUT_IMAGE_MB`: their total size.
    pub max_input_image_mb: u32,
    /// `CHAT_MAX_REPLY_MB`: reply text kept from the upstream; beyond it the turn ends `incomplete`.
    pub max_reply_mb: u32,
    /// `IMAGE_MAX_PER_TURN`: images stored per turn; further ones are reported `image.failed`.
    pub max_images_per_turn: usize,
    /// `RUN_LEASE_SECONDS`: a turn's lease on its conversation expires this long after its last heartbeat
    /// (renewed every third of it), so a crashed replica's conversations free up quickly.
    pub lease_seconds: u64,
    /// `RUN_EVENTS_RETENTION_HOURS`: how long a run's events stay resumable.
    pub run_events_retention_hours: u64,
    /// `RUN_READERS_PER_TENANT`: resumed streams (`GET /v1/runs/{id}/events`) a tenant may have open at once
    /// on one replica (0 = unlimited). Each holds its connection, up to its run's replay in memory, and a look
    /// at the database every few seconds.
    pub run_readers_per_tenant: u32,
    /// `READS_PER_TENANT`: reads of a tenant's data (conversations, attachments, usage) at work at once on one
    /// replica (0 = unlimited); the rest wait their turn, up to 5 s. Each uses a pooled connection, so one
    /// tenant's flood of them cannot take the pool from the others' turns.
    pub reads_per_tenant: u32,
}

impl TurnSettings {
    pub fn lease(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.lease_seconds.max(3) as i64)
    }

    pub(crate) fn heartbeat(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_seconds.max(3)) / 3
    }
}

impl Default for TurnSettings {
    fn default() -> Self {
        Self {
            connect_timeout_seconds: 10,
            idle_timeout_seconds: 300,
            total_timeout_seconds: 600,
            max_retries: 2,
            max_event_mb: 64,
            large_events_at_once: 0,
            rate_limit_per_minute: 60,
            concurrent_limit: 5,
            max_message_chars: 32_000,
            shutdown_grace_seconds: 120,
            monthly_budget_usd: None,
            upload_max_mb: 20,
            max_attachments: 10,
            max_input_image_mb: 50,
            max_reply_mb: 4,
            max_images_per_turn: 4,
            lease_seconds: 30,
            run_events_retention_hours: 24,
            run_readers_per_tenant: 100,
            reads_per_tenant: 8,
        }
    }
}
