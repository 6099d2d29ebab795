//! The turn service: checks a request, claims its idempotency key and run lease, and starts the turn task.

use crate::limits::{Limits, Refusal};
use crate::{TurnError, TurnEvent, TurnResult, TurnSettings};
use agentd_agents::{Agent, AgentRegistry, ImageDefaults};
use agentd_auth::Principal;
use agentd_db::{Conversation, Db, IdempotencyState};
use agentd_responses::ResponsesClient;
use agentd_storage::BlobStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Whether the client reads a stream (partial images wanted) or waits for the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stream,
    Blocking,
}

/// A turn as the client asked for it.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub agent: Option<String>,
    pub message: String,
    pub conversation_id: Option<Uuid>,
    /// `Idempotency-Key` and a hash of the request it came with.
    pub idempotency: Option<(String, String)>,
    /// Uploaded images (`POST /v1/uploads`) sent to the model as input images.
    pub attachments: Vec<Uuid>,
}

/// What turns are made of.
pub struct TurnParts {
    pub db: Db,
    pub agents: AgentRegistry,
    pub store: Arc<dyn BlobStore>,
    pub images: ImageDefaults,
    pub settings: TurnSettings,
}

/// A started turn: live events, or the stored result of an earlier request with the same idempotency key.
pub enum Started {
    Live(mpsc::Receiver<TurnEvent>),
    Replay(Box<TurnResult>),
}

pub(crate) struct Inner {
    pub db: Db,
    pub agents: AgentRegistry,
    pub store: Arc<dyn BlobStore>,
    pub images: ImageDefaults,
    pub client: ResponsesClient,
    pub settings: TurnSettings,
    /// `Some(label)` when turns go to the built-in offline model.
    pub offline_label: Option<String>,
    pub limits: Limits,
    /// Images decoded and uploaded at once: bounds the decoded buffers and upload bodies alive together.
    pub ingest_slots: tokio::sync::Semaphore,
    pub tracker: TaskTracker,
    pub accepting: AtomicBool,
    /// Keeps the in-process offline model running.
    pub _offline: Option<agentd_fake_upstream::FakeUpstream>,
}

/// Runs turns. Cheap to clone.
#[derive(Clone)]
pub struct Turns(pub(crate) Arc<Inner>);

/// Images ingested concurrently per process.
const INGEST_SLOTS: usize = 4;

/// The model label of the built-in offline model.
pub const OFFLINE_LABEL: &str = "agentd-offline";

impl Turns {
    /// Turns against `client`.
    pub fn new(parts: TurnParts, client: ResponsesClient) -> Self {
        Self::build(parts, client, None)
    }

    /// Turns against the built-in offline model (the fake upstream, in process, real wire format).
    pub async fn offline(parts: TurnParts) -> std::io::Result<Self> {
        let config =
            agentd_fake_upstream::FakeConfig::offline(OFFLINE_LABEL, parts.images.output_max_bytes());
        let fake = agentd_fake_upstream::FakeUpstream::start(config).await?;
        let cfg = client_config(&parts.settings, fake.base_url(), Some("offline".into()));
        let client = ResponsesClient::new(cfg).map_err(std::io::Error::other)?;
        Ok(Self::build(parts, client, Some(fake)))
    }

    fn build(
        parts: TurnParts,
        client: ResponsesClient,
        offline: Option<agentd_fake_upstream::FakeUpstream>,
    ) -> Self {
        let TurnParts {
            db,
            agents,
            store,
            images,
            settings,
        } = parts;
        Self(Arc::new(Inner {
            db,
            agents,
            store,
            images,
            client,
            settings,
            offline_label: offline.as_ref().map(|_| OFFLINE_LABEL.to_owned()),
            limits: Limits::default(),
            ingest_slots: tokio::sync::Semaphore::new(INGEST_SLOTS),
            tracker: TaskTracker::new(),
            accepting: AtomicBool::new(true),
            _offline: offline,
        }))
    }

    /// `true` when turns go to the built-in offline model.
    pub fn is_offline(&self) -> bool {
        self.0.offline_label.is_some()
    }

    /// Starts a turn. Returns once the upstream accepted it (the stream has started), or with the error the
    /// client should see. From then on the turn runs to its end whether or not anyone reads the events.
    pub async fn start(&self, who: &Principal, req: TurnRequest, mode: Mode) -> Result<Started, TurnError> {
        let inner = &self.0;
        if !inner.accepting.load(Ordering::SeqCst) {
            return Err(TurnError::new(
                503,
                "unavailable",
                "The server is shutting down; retry on another instance.",
            )
            .retry_after(1));
        }
        let tenant = who.tenant_id.as_str();
        let scoped = inner.db.scoped(tenant);
        let message = req.message.trim();
        if message.is_empty() {
            return Err(TurnError::invalid("`message` is empty: send the user's text."));
        }
        if message.chars().count() > inner.settings.max_message_chars {
            return Err(TurnError::invalid(format!(
                "`message` is over {} characters (CHAT_MAX_MESSAGE_CHARS); send a shorter one.",
                inner.settings.max_message_chars
            )));
        }
        let conversation = match req.conversation_id {
            Some(id) => Some(scoped.conversation(id).await?.ok_or_else(|| {
                TurnError::new(
                    404,
                    "conversation_not_found",
                    format!("No conversation {id}; omit conversation_id to start one."),
                )
            })?),
            None => None,
        };
        let agent = self.resolve_agent(req.agent.as_deref(), conversation.as_ref())?;
        let inputs = crate::inputs::resolve(self, tenant, &agent, &req.attachments).await?;
        crate::inputs::check_budget(self, tenant).await?;
        let slot = inner
            .limits
            .acquire(
                tenant,
                inner.settings.rate_limit_per_minute,
                inner.settings.concurrent_limit,
            )
            .map_err(|r| match r {
                Refusal::PerMinute { retry_after } => TurnError::new(
                    429,
                    "rate_limited",
                    format!(
                        "This tenant started more than {} turns in the last minute; retry later.",
                        inner.settings.rate_limit_per_minute
                    ),
                )
                .retry_after(retry_after),
                Refusal::Concurrent => TurnError::new(
                    429,
                    "rate_limited",
                    format!(
                        "This tenant already runs {} turns at once; retry when one finishes.",
                        inner.settings.concurrent_limit
                    ),
                )
                .retry_after(2),
            })?;
        if let Some((key, hash)) = &req.idempotency {
            match scoped.claim_idempotency(key, hash).await? {
                IdempotencyState::Claimed => {}
                IdempotencyState::Done(v) => {
                    let result: TurnResult = serde_json::from_value(v).map_err(TurnError::internal)?;
                    return Ok(Started::Replay(Box::new(result)));
                }
                IdempotencyState::Running => {
                    return Err(TurnError::new(
                        409,
                        "request_in_progress",
                        "A request with this Idempotency-Key is still running; retry when it ends.",
                    )
                    .retry_after(2));
                }
                IdempotencyState::Mismatch => {
                    return Err(TurnError::new(
                        422,
                        "idempotency_key_reused",
                        "This Idempotency-Key was used with a different request; use a new key.",
                    ));
                }
            }
        }
        let run_id = format!("run_{}", Uuid::now_v7().simple());
        if let Some(c) = &conversation {
            let locked = scoped
                .try_lock_run(
                    c.id,
                    &run_id,
                    chrono::Duration::seconds(inner.settings.total_timeout_seconds as i64 + 60),
                )
                .await;
            if !matches!(locked, Ok(true)) {
                if let Some((key, _)) = &req.idempotency {
                    let _ = scoped.release_idempotency(key).await;
                }
                locked?;
                return Err(TurnError::new(
                    409,
                    "conversation_busy",
                    "A turn is already running on this conversation; wait for it to finish.",
                ));
            }
        }
        let (events_tx, events_rx) = mpsc::channel(256);
        let (accepted_tx, accepted_rx) = oneshot::channel();
        let turn = crate::run::Turn {
            turns: self.clone(),
            principal: who.clone(),
            agent,
            conversation,
            message: message.to_owned(),
            run_id,
            mode,
            idempotency_key: req.idempotency.map(|(k, _)| k),
            inputs,
            _slot: slot,
        };
        inner.tracker.spawn(turn.run(accepted_tx, events_tx));
        match accepted_rx.await {
            Ok(Ok(())) => Ok(Started::Live(events_rx)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(TurnError::internal("the turn task ended before it started")),
        }
    }

    fn resolve_agent(
        &self,
        asked: Option<&str>,
        conversation: Option<&Conversation>,
    ) -> Result<Arc<Agent>, TurnError> {
        let agents = &self.0.agents;
        let not_found = |k: &str| {
            TurnError::new(
                404,
                "agent_not_found",
                format!("No agent {k:?}; GET /v1/agents lists the agents."),
            )
        };
        match (asked, conversation) {
            (Some(k), Some(c)) if k != c.agent => Err(TurnError::invalid(format!(
                "This conversation belongs to agent {:?}; omit `agent` or send {:?}.",
                c.agent, c.agent
            ))),
            (_, Some(c)) => agents.get(&c.agent).cloned().ok_or_else(|| not_found(&c.agent)),
            (Some(k), None) => agents.get(k).cloned().ok_or_else(|| not_found(k)),
            (None, None) => agents.default_agent().cloned().ok_or_else(|| {
                TurnError::invalid(
                    "`agent` is required to start a conversation (no agent is marked default).",
                )
            }),
        }
    }

    /// Stops accepting turns and waits up to `SHUTDOWN_GRACE_SECONDS` for running ones. `true` when all ended.
    pub async fn shutdown(&self) -> bool {
        let inner = &self.0;
        inner.accepting.store(false, Ordering::SeqCst);
        inner.tracker.close();
        let running = inner.tracker.len();
        if running > 0 {
            tracing::info!(
                running,
                grace_seconds = inner.settings.shutdown_grace_seconds,
                "waiting for running turns"
            );
        }
        tokio::time::timeout(
            Duration::from_secs(inner.settings.shutdown_grace_seconds),
            inner.tracker.wait(),
        )
        .await
        .is_ok()
    }

    /// Turns running now.
    pub fn running(&self) -> usize {
        self.0.tracker.len()
    }
}

/// The client configuration for `base_url` under these settings.
pub fn client_config(
    s: &TurnSettings,
    base_url: String,
    api_key: Option<String>,
) -> agentd_responses::ClientConfig {
    let mut cfg = agentd_responses::ClientConfig::new(base_url, api_key);
    cfg.connect_timeout = Duration::from_secs(s.connect_timeout_seconds);
    cfg.idle_timeout = Duration::from_secs(s.idle_timeout_seconds);
    cfg.total_timeout = Duration::from_secs(s.total_timeout_seconds);
    cfg.max_retries = s.max_retries;
    cfg.max_event_bytes = s.max_event_mb as usize * 1024 * 1024;
    cfg.user_agent = format!("agentd/{}", env!("CARGO_PKG_VERSION"));
    cfg
}
