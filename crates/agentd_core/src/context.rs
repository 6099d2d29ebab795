//! What every room of a turn shares: the database, the agents, the object store, the upstream client, the
//! settings, the image work pool, the run event log and its readers' bus, and the shutdown signals.

use crate::TurnSettings;
use crate::bus::RunBus;
use crate::ingest::IngestPool;
use crate::journal::Journal;
use agentd_agents::{AgentRegistry, ImageDefaults};
use agentd_db::Db;
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
    pub uploads: std::sync::Mutex<std::collections::HashMap<agentd_db::TenantId, u32>>,
}
