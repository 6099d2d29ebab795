//! Admission: everything a turn holds before it runs — the rate-limit slot, the budget check, the idempotency
//! claim, the conversation lease (which also enforces the concurrent-turn limit) and the user message — taken
//! in one database transaction, as one guard; a new conversation with no key, budget or attachments to check
//! is one statement (`agentd_db::OpenTurn`). Refusals roll back whole; cheap refusals come before anything
//! that reads storage (no object bytes are read here at all).
//!
//! Before the database, a tenant's admissions in this process are counted: beyond twice its concurrent-turn
//! limit the rest of a flood is refused without taking a pooled connection.
//!
//! The guard is [committed](Admission::commit) once the upstream accepted the turn: from then on the turn
//! releases the lease and settles the idempotency key in its final transaction. Dropped uncommitted (the
//! upstream refused, the task died), it gives everything back in one transaction of its own.

use crate::context::Context;
use crate::event::{RunStarted, Sequenced, TurnEvent, TurnResult};
use crate::failure::{Code, Failure};
use crate::journal::{RunRef, chunk};
use crate::retry::retrying;
use checks::{
    check_attachment_list, check_budget, check_image_input, check_message, check_opened, check_rate,
    input_images, resolve_existing, resolve_new, too_many, too_many_admitting,
};

mod checks;
use agentd_agents::Agent;
use agentd_auth::Principal;
use agentd_db::journal::EventChunk;
use agentd_db::turns::{Abandoned, Lease, NewConversation};
use agentd_db::{AttachmentMeta, Db, IdempotencyState, NewMessage, OpenTurn, Role, TenantId, TurnTx};
use chrono::Utc;
use std::sync::Arc;
use uuid::Uuid;

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

/// A turn admitted to run, or the stored result of an earlier request with the same idempotency key.
pub(crate) enum Admitted {
    Turn(Box<Admission>),
    Replay {
        run_id: Option<String>,
        result: Box<TurnResult>,
    },
}

/// What an admitted turn holds. Give it back by dropping it; keep it by [`Admission::commit`].
pub(crate) struct Admission {
    db: Db,
    pub tenant: TenantId,
    pub run_id: String,
    pub conversation_id: Uuid,
    /// This turn created the conversation.
    pub created: bool,
    pub agent: Arc<Agent>,
    /// The response this turn continues from, read when the lease was taken.
    pub previous_response_id: Option<String>,
    pub message: String,
    pub user_message_id: Uuid,
    pub inputs: Vec<AttachmentMeta>,
    pub idempotency_key: Option<String>,
    /// The tenant's estimated image spend this month before the turn (when a budget is set).
    pub spent_this_month: Option<f64>,
    /// The run's first event, already in the run log.
    pub started: RunStarted,
    committed: bool,
}

impl Admission {
    /// Checks the request and takes what the turn needs, or says why not.
    pub(crate) async fn take(
        inner: &Context,
        who: &Principal,
        req: TurnRequest,
    ) -> Result<Admitted, Failure> {
        let s = &inner.settings;
        let message = check_message(&req.message, s.max_message_chars)?;
        check_attachment_list(&req.attachments, s.max_attachments)?;
        // A new conversation's agent is known now; an existing one's when its lease is taken.
        let new_agent = match req.conversation_id {
            None => Some(resolve_new(inner, req.agent.as_deref())?),
            Some(_) => None,
        };
        if let Some(agent) = &new_agent {
            check_image_input(agent, &req.attachments)?;
        }

        // A tenant this process saw refused is refused again without a statement (an idempotent retry may
        // still replay its result, so that check waits for the key's claim).
        if req.idempotency.is_none() {
            inner.check_refusal(&who.tenant_id)?;
        }
        // At most twice as many of a tenant's admissions use the database at once (in this process) as it may
        // run turns: the rest of a flood is refused here, holding no connection, instead of queueing on the
        // tenant's rate cell with a pooled connection each until the pool is gone for everyone. (Twice: room for
        // admissions that find some of its turns ending; the database's count is the one that decides.)
        let cap = s.concurrent_limit.saturating_mul(2);
        let Some(_admitting) = inner.admitting.take(&who.tenant_id, cap) else {
            return Err(too_many_admitting(cap));
        };
        let scoped = inner.db.scoped(&who.tenant_id);
        let run_id = format!("run_{}", Uuid::now_v7().simple());
        let lease = s.lease();
        let now_us = Utc::now().timestamp_micros();
        let title: String = message
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect();
        // The user message, when it is known before the lease: a new conversation writes it with the lease.
        let plain = (req.attachments.is_empty() && req.conversation_id.is_none())
            .then(|| NewMessage::new(Role::User, message.to_owned(), Vec::new(), None));
        // A new conversation: its id, the run's first event, and what opening it writes.
        let new = match &new_agent {
            Some(agent) => {
                let id = Uuid::now_v7();
                let (started, first) = opening(inner, &who.tenant_id, &run_id, id, agent)?;
                Some((agent, started, first))
            }
            None => None,
        };
        let open = new.as_ref().map(|(agent, started, first)| OpenTurn {
            conv: NewConversation {
                id: started.conversation_id,
                user: &who.user_id,
                agent: &agent.key,
                title: &title,
            },
            run: &run_id,
            lease,
            concurrent: s.concurrent_limit,
            rate_per_minute: s.rate_limit_per_minute,
            now_us,
            first,
            message: plain.as_ref(),
        });
        let admission =
            |conversation_id, created, agent, previous_response_id, started, user_message_id| Admission {
                db: inner.db.clone(),
                tenant: who.tenant_id.clone(),
                run_id: run_id.clone(),
                conversation_id,
                created,
                agent,
                previous_response_id,
                message: message.to_owned(),
                user_message_id,
                inputs: Vec::new(),
                idempotency_key: req.idempotency.as_ref().map(|(k, _)| k.clone()),
                spent_this_month: None,
                started,
                committed: false,
            };

        // A new conversation with nothing else to check (no idempotency key, budget or attachments): one
        // statement, which commits by itself.
        if let (Some((agent, started, _)), Some(open), Some(user), None, None) =
            (&new, &open, &plain, &req.idempotency, s.monthly_budget_usd)
        {
            check_opened(inner, &who.tenant_id, scoped.open_turn(open).await?, now_us)?;
            let a = admission(
                open.conv.id,
                true,
                Arc::clone(agent),
                None,
                started.clone(),
                user.id,
            );
            return Ok(Admitted::Turn(Box::new(a)));
        }

        let mut tx = scoped.begin().await?;
        if let Some((key, hash)) = &req.idempotency
            && let Some(earlier) = claim(&mut tx, key, hash, &run_id, lease).await?
        {
            return earlier;
        }
        if req.idempotency.is_some() {
            inner.check_refusal(&who.tenant_id)?;
        }
        let spent_this_month = match s.monthly_budget_usd {
            Some(budget) => Some(check_budget(&mut tx, budget).await?),
            None => None,
        };
        let (conversation_id, agent, previous_response_id, created, started) =
            match (req.conversation_id, &new, &open) {
                (Some(id), _, _) => match tx
                    .lease_conversation(id, &run_id, lease, s.concurrent_limit)
                    .await?
                {
                    Lease::Taken {
                        agent,
                        last_response_id,
                    } => {
                        let agent = resolve_existing(inner, req.agent.as_deref(), &agent)?;
                        check_image_input(&agent, &req.attachments)?;
                        let (started, first) = opening(inner, &who.tenant_id, &run_id, id, &agent)?;
                        tx.append_chunk(&first).await?;
                        // The tenant's rate cell (charged, or only locked when there is no rate limit), then
                        // the authoritative count of its live runs. Taken after the lease, so the cell's row
                        // lock (which orders a tenant's admissions across replicas) is held from here to the
                        // commit; without it each admission counts in a snapshot blind to the others.
                        if s.rate_limit_per_minute > 0 {
                            let rate = tx.take_rate(s.rate_limit_per_minute, now_us).await?;
                            check_rate(inner, &who.tenant_id, rate, now_us)?;
                        } else if s.concurrent_limit > 0 {
                            tx.lock_tenant().await?;
                        }
                        if s.concurrent_limit > 0
                            && tx.live_runs(lease).await? > i64::from(s.concurrent_limit)
                        {
                            return Err(too_many(s.concurrent_limit));
                        }
                        (id, agent, last_response_id, false, started)
                    }
                    Lease::NotFound => {
                        return Err(Failure::new(
                            Code::ConversationNotFound,
                            format!("No conversation {id}; omit conversation_id to start one."),
                        ));
                    }
                    Lease::Busy => {
                        return Err(Failure::new(
                            Code::ConversationBusy,
                            "A turn is already running on this conversation; wait for it to finish.",
                        )
                        .retry_after(2));
                    }
                    Lease::TooMany => return Err(too_many(s.concurrent_limit)),
                },
                (None, Some((agent, started, _)), Some(open)) => {
                    // The conversation, its limits, the run's first event and (without attachments, whose
                    // metadata is read below) the user message, in one go.
                    check_opened(inner, &who.tenant_id, tx.open_turn(open).await?, now_us)?;
                    (open.conv.id, Arc::clone(agent), None, true, started.clone())
                }
                (None, _, _) => return Err(Failure::internal("no agent for a new conversation")),
            };
        let (user, inputs) = match &plain {
            Some(user) => (user.id, Vec::new()),
            None => {
                let inputs = input_images(&mut tx, &req.attachments, s.max_input_image_mb).await?;
                tx.reference_objects(conversation_id, &req.attachments).await?;
                let user = NewMessage::new(Role::User, message.to_owned(), inputs.clone(), None);
                if !tx.append_message(conversation_id, &user).await? {
                    return Err(Failure::internal("the leased conversation vanished"));
                }
                (user.id, inputs)
            }
        };
        tx.commit().await?;
        let mut a = admission(
            conversation_id,
            created,
            agent,
            previous_response_id,
            started,
            user,
        );
        a.inputs = inputs;
        a.spent_this_month = spent_this_month;
        Ok(Admitted::Turn(Box::new(a)))
    }

    /// The upstream accepted the turn: the turn now owns what was taken, and settles it when it ends.
    pub(crate) fn commit(&mut self) {
        self.committed = true;
    }
}

/// Claims the request's idempotency key for `run_id`, or answers as the request that holds it.
async fn claim(
    tx: &mut TurnTx,
    key: &str,
    hash: &str,
    run_id: &str,
    lease: chrono::Duration,
) -> Result<Option<Result<Admitted, Failure>>, Failure> {
    Ok(match tx.claim_idempotency(key, hash, run_id, lease).await? {
        IdempotencyState::Claimed => None,
        IdempotencyState::Done { result, run_id } => {
            let result: TurnResult = serde_json::from_value(result).map_err(Failure::internal)?;
            Some(Ok(Admitted::Replay {
                run_id,
                result: Box::new(result),
            }))
        }
        IdempotencyState::Running => Some(Err(Failure::new(
            Code::RequestInProgress,
            "A request with this Idempotency-Key is still running; retry when it ends.",
        )
        .retry_after(2))),
        IdempotencyState::Mismatch => Some(Err(Failure::new(
            Code::IdempotencyKeyReused,
            "This Idempotency-Key was used with a different request; use a new key.",
        ))),
    })
}

/// The run's first event, and the log chunk that holds it. It is in the log before anyone can see the run id:
/// every run a client knows of can be resumed, or ended by whoever finds its holder dead.
fn opening(
    inner: &Context,
    tenant: &TenantId,
    run_id: &str,
    conversation_id: Uuid,
    agent: &Agent,
) -> Result<(RunStarted, EventChunk), Failure> {
    let started = RunStarted {
        conversation_id,
        run_id: run_id.to_owned(),
        agent: agent.key.clone(),
        model: inner.model_of(agent).to_owned(),
    };
    let first = Sequenced {
        id: 1,
        event: TurnEvent::Started(started.clone()),
    };
    let json = serde_json::to_string(&first).map_err(Failure::internal)?;
    let run = RunRef {
        run_id: run_id.into(),
        tenant: tenant.clone(),
        conversation_id,
    };
    Ok((started, chunk(&run, 0, 1, 1, &[&json], false)))
}

impl Admission {
    /// Gives everything back now (the turn will not run), so a retry right after finds it free.
    pub(crate) async fn release(mut self) {
        if let Some(undo) = self.undo() {
            undo.await;
        }
    }

    /// The work of giving back, once.
    fn undo(&mut self) -> Option<impl Future<Output = ()> + Send + 'static> {
        if std::mem::replace(&mut self.committed, true) {
            return None;
        }
        let (db, tenant, run, conversation) = (
            self.db.clone(),
            self.tenant.clone(),
            self.run_id.clone(),
            self.conversation_id,
        );
        let (created, user_message, key) = (self.created, self.user_message_id, self.idempotency_key.clone());
        Some(async move {
            let a = Abandoned {
                conversation,
                run_id: &run,
                created,
                user_message,
                idempotency_key: key.as_deref(),
            };
            let scoped = db.scoped(&tenant);
            if retrying("give back an admission", || scoped.abandon_turn(&a))
                .await
                .is_none()
            {
                tracing::error!(tenant_id = %tenant, conversation_id = %conversation, run_id = %run,
                    "could not give back an admission: the lease expires by itself, the user message stays");
            }
        })
    }
}

/// A guard dropped uncommitted (its task died) gives back in the background.
impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(undo) = self.undo()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(undo);
        }
    }
}
