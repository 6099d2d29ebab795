//! Chat turns, from a request to a saved reply — the heart of agentd, in one straight line:
//!
//! | room | owns |
//! |---|---|
//! | [`turns`](Turns) | the service: admit a request, spawn the turn task, hand back its events |
//! | `admission` | everything a turn holds before it runs (rate limit, budget, idempotency claim, conversation lease, user message) as one guard: committed, or all given back |
//! | `relay` | upstream events → [`TurnEvent`]s + a draft of the reply (text, images, usage); no SQL |
//! | `ingest` | one image result → decoded off the async workers, checked, stored, recorded |
//! | `persist` | the finished (or cut-off) turn written in one transaction, then the terminal event |
//! | `failure` | one [`Failure`] type: the contract's code, message, `retryable` (HTTP statuses live in `agentd_http`) |
//! | `sink`, `journal`, `bus`, `follow` | where events go: the live client, the run event log, and readers resuming a run from any replica |
//! | `per_tenant`, `tenant_gate` | what one tenant may hold at once in this process (uploads, readers, admissions refused beyond it; reads waiting their turn) |
//! | [`metrics`] | the Prometheus metrics of turns and images, one helper per measurement |
//!
//! Knows nothing of HTTP. A turn runs in a task of its own, tracked for graceful shutdown: a client that goes
//! away does not cancel it. One turn runs per conversation (a lease on the conversation row with a heartbeat,
//! so it holds across replicas and frees up soon after a crash); per-tenant limits are counted in the database.

mod admission;
mod bus;
mod context;
mod event;
mod failure;
mod follow;
mod heartbeat;
mod housekeeping;
mod image_check;
mod ingest;
mod inputs;
mod journal;
pub mod metrics;
mod per_tenant;
mod persist;
mod rate;
mod relay;
mod retry;
mod settings;
mod sink;
mod tenant_gate;
mod turns;

/// A migrated in-memory SQLite database with tenant `t`, for unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
async fn test_db() -> (agentd_db::Db, agentd_db::TenantId) {
    let settings = agentd_db::DbSettings {
        url: "sqlite::memory:".into(),
        max_connections: 1,
        ..agentd_db::DbSettings::default()
    };
    let db = agentd_db::Db::connect(&settings).await.unwrap();
    db.migrate().await.unwrap();
    let tenant = agentd_db::TenantId::parse("t").unwrap();
    db.provision_tenant(&tenant).await.unwrap();
    (db, tenant)
}
mod upstream;
mod usage;

pub use admission::TurnRequest;
pub use event::{
    AttachmentStored, ImageFailed, ImagePartial, ImageProgress, ImageUsage, MessageDelta, RunStarted,
    Sequenced, TurnError, TurnEvent, TurnResult, TurnStatus, Usage,
};
pub use failure::{Code, Failure};
pub use image_check::ImageFormat;
pub use inputs::{UNUSED_UPLOADS_PER_TENANT, UPLOADS_AT_ONCE, UploadPermit};
pub use per_tenant::SendingPermit;
pub use settings::TurnSettings;
pub use tenant_gate::Pass;
pub use turns::{EventFeed, Mode, Started, TurnParts, Turns};
pub use upstream::client_config;
