//! The turn service: [`Turns::start`] admits a request, spawns its turn task and hands back the turn's events.
//! The task is the whole pipeline, in order — admission → upstream → relay (with ingestion) → persistence:
//!
//! ```text
//! Admission::take ─▶ open the upstream ─▶ commit ─▶ Relay::run (Sink, Ingest) ─▶ persist::finish
//!   (refused: nothing held)   (refused: the admission is given back)
//! ```
//!
//! The task runs to its end whether or not anyone reads its events, tracked for graceful shutdown.

use crate::admission::{Admission, Admitted, TurnRequest};
use crate::bus::RunBus;
use crate::context::Context;
use crate::event::{Sequenced, TurnEvent, TurnResult};
use crate::failure::{Code, Failure};
use crate::ingest::{Ingest, IngestPool};
use crate::inputs::UploadPermit;
use crate::journal::{Journal, RunRef};
use crate::per_tenant::SendingPermit;
use crate::relay::{Budget, Caps, Draft, Relay};
use crate::sink::{LIVE_QUEUE, Sink};
use crate::tenant_gate::Pass;
use crate::upstream::{build_request, is_previous_response_missing, pre_stream_error};
use crate::{TurnSettings, follow, inputs, metrics, persist};
use agentd_agents::{Agent, AgentRegistry, ImageDefaults};
use agentd_auth::Principal;
use agentd_db::{AttachmentMeta, Db, TenantId};
use agentd_responses::{EventStream, ResponsesClient};
use agentd_storage::BlobStore;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// Whether the client reads a stream (partial images wanted) or waits for the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stream,
    Blocking,
}

/// A run's events, each with its stream id, ending with the terminal one.
pub type EventFeed = Pin<Box<dyn Stream<Item = Sequenced> + Send>>;

/// A started turn: its events, or the stored result of an earlier request with the same idempotency key
/// (and that request's run, whose events a stream replays while they are kept).
pub enum Started {
    Live {
        run_id: String,
        events: EventFeed,
    },
    Replay {
        run_id: Option<String>,
        result: Box<TurnResult>,
    },
}

/// What turns are made of.
pub struct TurnParts {
    pub db: Db,
    pub agents: AgentRegistry,
    pub store: Arc<dyn BlobStore>,
    pub images: ImageDefaults,
    pub settings: TurnSettings,
    pub client: ResponsesClient,
    /// The `model` reported instead of the agent's (the built-in offline model announces itself so).
    pub model_label: Option<String>,
}

/// Runs turns. Cheap to clone.
#[derive(Clone)]
pub struct Turns(Arc<Context>);

impl Turns {
    /// The service, with its run event log writer, its listener for other replicas' run events and its
    /// housekeeping (expired idempotency keys and run events). Needs a Tokio runtime.
    pub fn new(parts: TurnParts) -> Self {
        let bus = RunBus::default();
        bus.listen(&parts.db);
        let journal = Journal::start(parts.db.clone(), bus.clone());
        let inner = Arc::new(Context {
            journal,
            bus,
            db: parts.db,
            agents: parts.agents,
            store: parts.store,
            images: parts.images,
            client: parts.client,
            settings: parts.settings,
            model_label: parts.model_label,
            ingest: Arc::new(IngestPool::new()),
            tracker: TaskTracker::new(),
            accepting: AtomicBool::new(true),
            cut: CancellationToken::new(),
            uploads: Default::default(),
            readers: Default::default(),
            sending: Default::default(),
            admitting: Default::default(),
            reads: Default::default(),
            refusals: Default::default(),
        });
        tokio::spawn(crate::housekeeping::run(
            inner.db.clone(),
            inner.store.clone(),
            inner.settings.clone(),
            inner.cut.clone(),
        ));
        Self(inner)
    }

    /// The model `agent`'s turns report (the offline model's label, when it answers them all).
    pub fn model_of<'a>(&'a self, agent: &'a Agent) -> &'a str {
        self.0.model_of(agent)
    }

    /// Starts a turn. Returns once the upstream accepted it (the stream has started), or with the failure the
    /// client should see. From then on the turn runs to its end whether or not anyone reads the events.
    pub async fn start(&self, who: &Principal, req: TurnRequest, mode: Mode) -> Result<Started, Failure> {
        let inner = &self.0;
        let since = Instant::now();
        if !inner.accepting.load(Ordering::SeqCst) {
            let f = Failure::new(
                Code::Unavailable,
                "The server is shutting down; retry on another instance.",
            )
            .retry_after(1);
            metrics::refused(&f);
            return Err(f);
        }
        // Admission runs in the turn's tracked task too: a shutdown waits for an admission in flight as for a
        // running turn, and a client that leaves mid-admission cancels nothing half-way (what was taken becomes
        // a turn that runs without it, as any turn whose client left).
        let tenant = who.tenant_id.clone();
        let (events_tx, events_rx) = mpsc::channel(LIVE_QUEUE);
        let (accepted_tx, accepted_rx) = oneshot::channel();
        let task = admit_and_run(
            self.clone(),
            who.clone(),
            req,
            mode,
            since,
            accepted_tx,
            events_tx,
        );
        inner.tracker.spawn(task.instrument(tracing::Span::current()));
        match accepted_rx.await {
            Ok(Ok(Begun::Live { run_id })) => Ok(Started::Live {
                events: Box::pin(follow::live(&self.0, &tenant, &run_id, events_rx)),
                run_id,
            }),
            Ok(Ok(Begun::Replay { run_id, result })) => Ok(Started::Replay { run_id, result }),
            Ok(Err(f)) => {
                metrics::refused(&f);
                Err(f)
            }
            Err(_) => Err(Failure::internal("the turn task ended before it started")),
        }
    }

    /// `false` once a shutdown began.
    pub fn is_accepting(&self) -> bool {
        self.0.accepting.load(Ordering::SeqCst)
    }

    /// Stops taking turns and gives running ones `SHUTDOWN_GRACE_SECONDS` to finish; those still running then
    /// are saved as they stand and end with `error` `shutting_down`. `true` when every turn ended in the grace.
    pub async fn shutdown(&self) -> bool {
        let inner = &self.0;
        inner.accepting.store(false, Ordering::SeqCst);
        inner.tracker.close();
        let grace = Duration::from_secs(inner.settings.shutdown_grace_seconds);
        if !inner.tracker.is_empty() {
            tracing::info!(
                running = inner.tracker.len(),
                grace_seconds = grace.as_secs(),
                "waiting for running turns"
            );
        }
        if tokio::time::timeout(grace, inner.tracker.wait()).await.is_ok() {
            inner.cut.cancel();
            return true;
        }
        tracing::warn!(
            running = inner.tracker.len(),
            "shutdown grace over: saving running turns as they stand"
        );
        inner.cut.cancel();
        if tokio::time::timeout(Duration::from_secs(15), inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                running = inner.tracker.len(),
                "turns did not save within 15 s of the cut"
            );
        }
        inner.journal.flush().await;
        false
    }

    /// Turns running now.
    pub fn running(&self) -> usize {
        self.0.tracker.len()
    }

    /// `run_not_found` for an id no run can have (checked by [`Turns::follow`] too), before anything is asked.
    pub fn check_run_id(run_id: &str) -> Result<(), Failure> {
        follow::check_run_id(run_id)
    }

    /// The events of a run after id `after` (0: all): replay, then live until the terminal event, whichever
    /// replica runs it; `None` when the run has ended and has no event after `after`. `run_not_found` when
    /// this tenant has no such run.
    pub async fn follow(
        &self,
        tenant: &TenantId,
        run_id: &str,
        after: u64,
    ) -> Result<Option<EventFeed>, Failure> {
        let feed = follow::follow(&self.0, tenant, run_id, after).await?;
        Ok(feed.map(|f| Box::pin(f) as EventFeed))
    }

    /// A place among the tenant's `READS_PER_TENANT` requests reading its data at once on this replica (the
    /// rest wait, then are `rate_limited`); hold it until the response is written. `None`: no limit.
    pub async fn reading(&self, tenant: &TenantId) -> Result<Option<Pass>, Failure> {
        crate::tenant_gate::reading(&self.0.reads, tenant, self.0.settings.reads_per_tenant).await
    }

    /// A place among the tenant's conversation details being sent at once on this replica — twice
    /// `READS_PER_TENANT` (0: no limit) — or `rate_limited` at once. Each holds a page of messages until its client
    /// takes it: without a limit, a tenant's clients that read nothing could hold pages until memory ran out.
    pub fn sending_conversation(&self, tenant: &TenantId) -> Result<SendingPermit, Failure> {
        let max = self.0.settings.reads_per_tenant.saturating_mul(2);
        let held = self.0.sending.take(tenant, max).ok_or_else(|| {
            Failure::new(
                Code::RateLimited,
                format!(
                    "This tenant already has {max} conversations being sent on this server (twice \
                     READS_PER_TENANT); read one to its end first."
                ),
            )
            .retry_after(2)
        })?;
        Ok(SendingPermit(held))
    }

    /// `UPLOAD_MAX_MB` in bytes.
    pub fn upload_max_bytes(&self) -> u64 {
        u64::from(self.0.settings.upload_max_mb) * 1024 * 1024
    }

    /// Admits an upload before its body is read: the tenant's rate limit (uploads count like turns) and at most
    /// a few uploads of one tenant received at once. Hold the permit while reading the body.
    pub async fn admit_upload(&self, tenant: &TenantId) -> Result<UploadPermit, Failure> {
        if !self.is_accepting() {
            return Err(Failure::new(
                Code::Unavailable,
                "The server is shutting down; retry on another instance.",
            )
            .retry_after(1));
        }
        inputs::admit_upload(&self.0, tenant).await
    }

    /// Stores an uploaded input image after checking its bytes (real PNG/JPEG/WebP, under `UPLOAD_MAX_MB`).
    pub async fn upload(&self, tenant: &TenantId, bytes: bytes::Bytes) -> Result<AttachmentMeta, Failure> {
        inputs::upload(&self.0, tenant, bytes).await
    }
}

/// What the turn task tells [`Turns::start`] once its turn has begun.
enum Begun {
    Live {
        run_id: String,
    },
    Replay {
        run_id: Option<String>,
        result: Box<TurnResult>,
    },
}

/// The turn task: admission, then the turn.
async fn admit_and_run(
    turns: Turns,
    who: Principal,
    req: TurnRequest,
    mode: Mode,
    since: Instant,
    accepted: oneshot::Sender<Result<Begun, Failure>>,
    live: mpsc::Sender<Sequenced>,
) {
    let admission = match Admission::take(&turns.0, &who, req).await {
        Ok(Admitted::Turn(a)) => *a,
        Ok(Admitted::Replay { run_id, result }) => {
            let _ = accepted.send(Ok(Begun::Replay { run_id, result }));
            return;
        }
        Err(f) => {
            let _ = accepted.send(Err(f));
            return;
        }
    };
    let span = tracing::info_span!("turn", tenant_id = %admission.tenant, run_id = %admission.run_id,
        agent = %admission.agent.key, conversation_id = %admission.conversation_id);
    run(turns, admission, mode, since, accepted, live)
        .instrument(span)
        .await;
}

/// The turn, once admitted.
async fn run(
    turns: Turns,
    mut admission: Admission,
    mode: Mode,
    since: Instant,
    accepted: oneshot::Sender<Result<Begun, Failure>>,
    live: mpsc::Sender<Sequenced>,
) {
    let inner = &turns.0;
    let upstream = match open_upstream(inner, &admission, mode).await {
        Ok(u) => u,
        Err(f) => {
            admission.release().await;
            let _ = accepted.send(Err(f));
            return;
        }
    };
    admission.commit();
    let run_id = admission.run_id.clone();
    let _ = accepted.send(Ok(Begun::Live { run_id }));
    let _heartbeat = crate::heartbeat::keep(inner, &admission);
    let run = RunRef {
        run_id: admission.run_id.as_str().into(),
        tenant: admission.tenant.clone(),
        conversation_id: admission.conversation_id,
    };
    let meter = metrics::TurnMeter::started(&admission.agent.key, since);
    let mut sink = Sink::new(run, live, inner.journal.clone(), meter);
    let model = inner.model_of(&admission.agent).to_owned();
    sink.emit_logged(TurnEvent::Started(admission.started.clone()));
    let ingest = Ingest {
        store: inner.store.clone(),
        db: inner.db.clone(),
        tenant: admission.tenant.clone(),
        conversation: admission.conversation_id,
        max_bytes: inner.images.output_max_bytes(),
        pool: inner.ingest.clone(),
    };
    let caps = Caps {
        max_reply_bytes: inner.settings.max_reply_mb as usize * 1024 * 1024,
        max_images: inner.settings.max_images_per_turn,
        budget: inner.settings.monthly_budget_usd.map(|limit_usd| Budget {
            limit_usd,
            spent_before_usd: admission.spent_this_month.unwrap_or(0.0),
        }),
    };
    let mut relay = Relay {
        agent: &admission.agent,
        sink: &mut sink,
        ingest: &ingest,
        caps,
        cut: &inner.cut,
        draft: Draft::default(),
    };
    let ending = relay.run(upstream).await;
    let draft = std::mem::take(&mut relay.draft);
    persist::finish(inner, &admission, draft, ending, model, &mut sink).await;
}

/// The upstream request of the turn, opened. A conversation whose previous response the upstream lost goes
/// on from a fresh context instead of failing forever.
async fn open_upstream(inner: &Context, a: &Admission, mode: Mode) -> Result<EventStream, Failure> {
    let images = inputs::data_urls(&inner.store, &a.inputs).await?;
    let previous = a.previous_response_id.as_deref();
    let mut request = build_request(&a.agent, &a.message, images, previous, mode == Mode::Stream);
    let mut opened = inner.client.stream(&request).await;
    if let Err(e) = &opened
        && previous.is_some()
        && is_previous_response_missing(e)
    {
        tracing::warn!("the upstream lost this conversation's previous response; continuing without it");
        request.previous_response_id = None;
        opened = inner.client.stream(&request).await;
    }
    let upstream = opened.map_err(|e| pre_stream_error(&e))?;
    tracing::info!(
        upstream_request_id = upstream.request_id().unwrap_or("-"),
        "upstream accepted the turn"
    );
    Ok(upstream)
}
