//! What every room of a turn shares: the database, the agents, the object store, the upstream client, the
//! settings, the image work pool, the run event log and its readers' bus, the rate limit's remembered refusals,
//! what each tenant holds at once, and the shutdown signals.

use crate::TurnSettings;
use crate::bus::RunBus;
use crate::failure::{Code, Failure};
use crate::ingest::IngestPool;
use crate::journal::Journal;
use crate::per_tenant::PerTenant;
use crate::rate::RefusalMemo;
use agentd_agents::{Agent, AgentRegistry, ImageDefaults};
use agentd_db::{Db, TenantId};
use agentd_responses::ResponsesClient;
use agentd_storage::BlobStore;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Context {
    pub db: Db,
    pub agents: AgentRegistry,
    pub store: Arc<dyn BlobStore>,
    pub images: ImageDefaults,
    pub client: ResponsesClient,
    pub settings: TurnSettings,
    pub model_label: Option<String>,
    pub ingest: Arc<IngestPool>,
    pub journal: Journal,
    pub bus: RunBus,
    pub tracker: TaskTracker,
    pub accepting: AtomicBool,
    /// Fired when the shutdown grace ends: running turns save what they have and stop.
    pub cut: CancellationToken,
    /// Uploads being received, per tenant (in this process).
    pub uploads: PerTenant,
    /// Run readers open (`GET /v1/runs/{id}/events`), per tenant (in this process).
    pub readers: PerTenant,
    /// Conversation details being sent (`GET /v1/conversations/{id}`), per tenant (in this process): each holds a
    /// page of messages until its client takes it.
    pub sending: PerTenant,
    /// Requests reading a tenant's data, per tenant (in this process): `READS_PER_TENANT` at once, the rest wait.
    pub reads: crate::tenant_gate::TenantGates,
    /// Admissions using the database, per tenant (in this process): at most twice `CHAT_STREAM_CONCURRENT_LIMIT`.
    pub admitting: PerTenant,
    /// Tenants the rate limit refused, until when.
    pub refusals: RefusalMemo,
}

impl Context {
    /// The model `agent`'s turns report: the label of the model that answers them all (the offline one), if
    /// any, else the agent's own.
    pub fn model_of<'a>(&'a self, agent: &'a Agent) -> &'a str {
        self.model_label.as_deref().unwrap_or(&agent.model)
    }

    /// `429 rate_limited` when this process already knows the tenant is over `CHAT_RATE_LIMIT_PER_MINUTE`.
    pub fn check_refusal(&self, tenant: &TenantId) -> Result<(), Failure> {
        let per_minute = self.settings.rate_limit_per_minute;
        if per_minute == 0 {
            return Ok(());
        }
        match self
            .refusals
            .refused(tenant, chrono::Utc::now().timestamp_micros())
        {
            Some(wait) => Err(rate_limited(per_minute, wait)),
            None => Ok(()),
        }
    }
}

/// The tenant started `per_minute` turns or uploads in the last minute.
pub(crate) fn rate_limited(per_minute: u32, retry_after: u64) -> Failure {
    Failure::new(
        Code::RateLimited,
        format!(
            "This tenant started {per_minute} turns or uploads in the last minute (CHAT_RATE_LIMIT_PER_MINUTE); retry later."
        ),
    )
    .retry_after(retry_after)
}
