//! Application state shared by every handler: built once by the application builder (the binary and the test
//! kit use the same one) and cloned cheaply.

use crate::views::Urls;
use agentd_agents::AgentRegistry;
use agentd_auth::Authenticator;
use agentd_core::Turns;
use agentd_db::Db;
use agentd_storage::BlobStore;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// `BIND_ADDR` and the HTTP limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// `BIND_ADDR`.
    pub bind_addr: SocketAddr,
    /// `HTTP_MAX_BODY_BYTES`: requests with a larger body are answered 413.
    pub max_body_bytes: usize,
    /// `SSE_KEEPALIVE_SECONDS`: a `: keep-alive` comment after this much silence on a stream.
    pub sse_keepalive_seconds: u64,
    /// `TENANT_CACHE_SECONDS`: how long a tenant's status is trusted without asking the database (0 = always ask);
    /// a suspension takes effect within this time.
    pub tenant_cache_seconds: u64,
    /// `HTTP_HEADER_TIMEOUT_SECONDS`: longest wait for a request's headers (also the idle time of a kept-alive
    /// connection).
    pub header_timeout_seconds: u64,
    /// `HTTP_BODY_TIMEOUT_SECONDS`: longest time to receive a request body, however it trickles in.
    pub body_timeout_seconds: u64,
    /// `HTTP_WRITE_TIMEOUT_SECONDS`: longest time a response may wait for its client to take more of it (the
    /// connection's buffers full); then the connection closes.
    pub write_timeout_seconds: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            sse_keepalive_seconds: 15,
            tenant_cache_seconds: 5,
            header_timeout_seconds: 10,
            body_timeout_seconds: 60,
            write_timeout_seconds: 60,
        }
    }
}

/// Everything a handler may need.
pub struct App {
    pub db: Db,
    pub agents: AgentRegistry,
    pub auth: Authenticator,
    pub turns: Turns,
    pub store: Arc<dyn BlobStore>,
    /// Download URLs for attachments.
    pub urls: Urls,
    pub settings: HttpSettings,
    /// `RUN_LEASE_SECONDS`: a conversation's run is shown active while its lease is younger.
    pub lease: chrono::Duration,
    /// Tenant statuses recently read, so most requests make no database round trip before their work.
    pub tenants: crate::tenants::TenantCache,
    /// The playground page's state: the dev token it may prefill (only on the zero-config dev secret).
    pub playground: crate::Playground,
    /// What `/readyz` last found (asked at most once a second).
    pub readiness: crate::Readiness,
}

/// The axum state: one `Arc` clone per request.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}
