//! The statements of one chat turn, grouped by the transaction they belong to:
//!
//! 1. **Admission** ([`TurnTx`], opened by the caller): the rate limit (`limits`), the idempotency claim, the
//!    conversation lease ([`TurnTx::lease_conversation`], refused in the same statement when the tenant already
//!    runs `concurrent` turns), uploads and the user message. A refused admission rolls back whole. A new
//!    conversation opens with its limits, first event and user message in one go (`opening`): on PostgreSQL,
//!    without anything else to check, that is the whole admission in one statement.
//! 2. One row per stored image (`objects`), written when it is stored.
//! 3. **The finished turn** ([`Scoped::finish_turn`]): the assistant message, its image links, usage, the
//!    conversation's `last_response_id` and the lease release, the idempotency result, the terminal run event
//!    (on PostgreSQL one statement: `finish_pg`).
//!
//! Besides: the lease heartbeat ([`Scoped::renew_lease`]) and undoing an admission whose turn never started
//! ([`Scoped::abandon_turn`]).

use crate::journal::EventChunk;
use crate::tx::with_tx;
use crate::{DbError, DeleteOutcome, NewMessage, NewUsage, Scoped, TurnTx, now, with_pool};
use chrono::Duration;
use serde_json::Value;
use uuid::Uuid;

/// What taking a conversation's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// Ours now; the conversation's agent and the response the turn continues from (read in the same
    /// statement that took the lease, so no earlier turn's result can be missed).
    Taken {
        agent: String,
        last_response_id: Option<String>,
    },
    NotFound,
    /// Another live run holds it.
    Busy,
    /// The tenant already runs its concurrent limit of turns.
    TooMany,
}

/// A conversation started by a turn.
#[derive(Debug, Clone)]
pub struct NewConversation<'a> {
    pub id: Uuid,
    pub user: &'a str,
    pub agent: &'a str,
    pub title: &'a str,
}

/// Live leases of the tenant, below `$6`: the concurrency guard shared by the statements that take a lease
/// (`lease_conversation`, `create_leased_conversation`; `agentd_open_turn` has its own copy).
const UNDER_LIMIT: &str = "(SELECT COUNT(*) FROM conversations WHERE tenant_id = $1 AND active_run_id IS NOT NULL \
                           AND active_run_at >= $5) < $6";

/// Gives back the lease of conversation `$2` if run `$3` holds it.
const RELEASE: &str = "UPDATE conversations SET active_run_id = NULL, active_run_at = NULL, \
                       active_run_started_at = NULL WHERE tenant_id = $1 AND id = $2 AND active_run_id = $3";

pub(crate) fn limit(concurrent: u32) -> i64 {
    if concurrent == 0 {
        i64::MAX
    } else {
        i64::from(concurrent)
    }
}

impl TurnTx {
    /// Records the user on first sight.
    pub async fn ensure_user(&mut self, user: &str) -> Result<(), DbError> {
        let (t, n) = (self.tenant.clone(), now());
        let sql = "INSERT INTO users (tenant_id, id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        with_tx!(self, |c| sqlx::query(sql)
            .bind(t.as_str())
            .bind(user)
            .bind(n)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Takes the lease of an existing conversation for `run` unless a live run holds it (one whose heartbeat is
    /// younger than `lease`) or the tenant already runs `concurrent` turns (0 = unlimited).
    pub async fn lease_conversation(
        &mut self,
        conversation: Uuid,
        run: &str,
        lease: Duration,
        concurrent: u32,
    ) -> Result<Lease, DbError> {
        let (t, n) = (self.tenant.clone(), now());
        let sql = format!(
            "UPDATE conversations SET active_run_id = $3, active_run_at = $4, active_run_started_at = $4 \
             WHERE tenant_id = $1 AND id = $2 AND (active_run_id IS NULL OR active_run_at < $5) AND {UNDER_LIMIT} \
             RETURNING agent, last_response_id"
        );
        // The holder may give the lease back between the UPDATE and the SELECT that explains its refusal; the
        // SELECT then finds the conversation free and the UPDATE is tried once more, rather than answering a
        // free conversation with `TooMany` (a 429 "too many turns at once" with no limit reached).
        for again in [true, false] {
            let taken: Option<(String, Option<String>)> =
                with_tx!(self, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(t.as_str())
                    .bind(conversation)
                    .bind(run)
                    .bind(n)
                    .bind(n - lease)
                    .bind(limit(concurrent))
                    .fetch_optional(c)
                    .await)?;
            if let Some((agent, last_response_id)) = taken {
                return Ok(Lease::Taken {
                    agent,
                    last_response_id,
                });
            }
            let sql = "SELECT active_run_id IS NOT NULL AND active_run_at >= $3 FROM conversations \
                       WHERE tenant_id = $1 AND id = $2";
            let busy: Option<bool> = with_tx!(self, |c| sqlx::query_scalar(sql)
                .bind(t.as_str())
                .bind(conversation)
                .bind(n - lease)
                .fetch_optional(c)
                .await)?;
            match busy {
                None => return Ok(Lease::NotFound),
                Some(true) => return Ok(Lease::Busy),
                Some(false) if again => {}
                Some(false) => return Ok(Lease::TooMany),
            }
        }
        Ok(Lease::TooMany)
    }

    /// Creates a conversation leased by `run`, unless the tenant already runs `concurrent` turns (`false`).
    pub async fn create_leased_conversation(
        &mut self,
        conv: &NewConversation<'_>,
        run: &str,
        lease: Duration,
        concurrent: u32,
    ) -> Result<bool, DbError> {
        let (t, n) = (self.tenant.clone(), now());
        let sql = format!(
            "INSERT INTO conversations (id, tenant_id, user_id, agent, title, created_at, updated_at, active_run_id, \
             active_run_at, active_run_started_at) SELECT $2, $1, $7, $8, $9, $4, $4, $3, $4, $4 WHERE {UNDER_LIMIT}"
        );
        let n_rows = with_tx!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(t.as_str())
            .bind(conv.id)
            .bind(run)
            .bind(n)
            .bind(n - lease)
            .bind(limit(concurrent))
            .bind(conv.user)
            .bind(conv.agent)
            .bind(conv.title)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n_rows == 1)
    }
}

/// Everything the finished turn writes, in one transaction.
#[derive(Debug)]
pub struct FinishedTurn<'a> {
    pub conversation: Uuid,
    pub run_id: &'a str,
    /// The reply (absent when the turn failed before saying anything).
    pub assistant: Option<&'a NewMessage>,
    /// Stored images shown by the reply.
    pub object_ids: &'a [Uuid],
    pub usage: &'a NewUsage,
    /// The usage row's id, drawn once per turn: a save retried after its commit went unanswered writes none.
    pub usage_id: Uuid,
    /// The response the next turn continues from.
    pub response_id: Option<&'a str>,
    /// `(key, Some(result))` stores the result; `(key, None)` frees the key for a retry.
    pub idempotency: Option<(&'a str, Option<&'a Value>)>,
    /// The run's terminal event (and any of its events still unwritten), for resuming streams.
    pub events: Option<&'a EventChunk>,
}

/// What [`Scoped::finish_turn`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// `false` when the conversation was gone.
    pub message_saved: bool,
    /// `false` when the run no longer held the lease (its heartbeat stopped for longer than the lease).
    pub lease_released: bool,
    /// The terminal chunk was written: `false` when the run had already been ended by a reader that found its
    /// lease expired (the log then ends with that reader's `error`).
    pub terminal_logged: bool,
}

/// Undoes an admission whose turn never started: the user message (or the new conversation), the lease and the
/// idempotency claim.
#[derive(Debug)]
pub struct Abandoned<'a> {
    pub conversation: Uuid,
    pub run_id: &'a str,
    /// The admission created the conversation: delete it whole.
    pub created: bool,
    pub user_message: Uuid,
    pub idempotency_key: Option<&'a str>,
}

impl Scoped<'_> {
    /// Writes the finished turn atomically: on PostgreSQL as one statement ([`crate::finish_pg`]), on SQLite as
    /// the same writes in one transaction.
    pub async fn finish_turn(&self, f: &FinishedTurn<'_>) -> Result<Finished, DbError> {
        if let crate::Db::Postgres(pool) = self.db {
            return self.finish_turn_pg(pool, f).await;
        }
        let mut tx = self.begin().await?;
        let mut message_saved = false;
        if let Some(m) = f.assistant {
            // Saved by this statement or by an earlier try whose commit went unanswered.
            message_saved =
                tx.append_message(f.conversation, m).await? || tx.has_message(f.conversation, m.id).await?;
            if message_saved {
                tx.link_objects(f.object_ids, m.id).await?;
            }
        }
        tx.record_usage(f.usage_id, f.usage).await?;
        let t = self.tenant.clone();
        let sql = "UPDATE conversations SET last_response_id = COALESCE($4, last_response_id), updated_at = $5, \
                   active_run_id = NULL, active_run_at = NULL, active_run_started_at = NULL \
                   WHERE tenant_id = $1 AND id = $2 AND active_run_id = $3";
        let released = with_tx!(tx, |c| sqlx::query(sql)
            .bind(t.as_str())
            .bind(f.conversation)
            .bind(f.run_id)
            .bind(f.response_id)
            .bind(now())
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        match f.idempotency {
            Some((key, Some(result))) => {
                tx.finish_idempotency(key, f.run_id, f.conversation, result)
                    .await?;
            }
            Some((key, None)) => tx.release_idempotency(key, f.run_id).await?,
            None => {}
        }
        let terminal_logged = match f.events {
            Some(chunk) => tx.append_chunk(chunk).await? || tx.holds_chunk(chunk).await?,
            None => false,
        };
        tx.commit().await?;
        Ok(Finished {
            message_saved,
            lease_released: released == 1,
            terminal_logged,
        })
    }

    /// Undoes an admission, in one transaction.
    pub async fn abandon_turn(&self, a: &Abandoned<'_>) -> Result<(), DbError> {
        let mut tx = self.begin().await?;
        let t = self.tenant.clone();
        if a.created {
            let sql = "DELETE FROM conversations WHERE tenant_id = $1 AND id = $2 AND active_run_id = $3";
            with_tx!(tx, |c| sqlx::query(sql)
                .bind(t.as_str())
                .bind(a.conversation)
                .bind(a.run_id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        } else {
            let sql = "DELETE FROM messages WHERE tenant_id = $1 AND id = $2";
            with_tx!(tx, |c| sqlx::query(sql)
                .bind(t.as_str())
                .bind(a.user_message)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
            with_tx!(tx, |c| sqlx::query(RELEASE)
                .bind(t.as_str())
                .bind(a.conversation)
                .bind(a.run_id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        if let Some(key) = a.idempotency_key {
            tx.release_idempotency(key, a.run_id).await?;
        }
        let sql = "DELETE FROM run_events WHERE tenant_id = $1 AND run_id = $2";
        with_tx!(tx, |c| sqlx::query(sql)
            .bind(t.as_str())
            .bind(a.run_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        tx.commit().await
    }

    /// The lease heartbeat; `false` when `run` no longer holds the lease.
    pub async fn renew_lease(&self, conversation: Uuid, run: &str) -> Result<bool, DbError> {
        let sql = "UPDATE conversations SET active_run_at = $4 WHERE tenant_id = $1 AND id = $2 AND active_run_id = $3";
        let n = with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.t())
            .bind(conversation)
            .bind(run)
            .bind(now())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Takes the lease of a conversation for `run` in a transaction of its own, without a concurrency limit.
    pub async fn try_lease(&self, conversation: Uuid, run: &str, lease: Duration) -> Result<Lease, DbError> {
        let mut tx = self.begin().await?;
        let outcome = tx.lease_conversation(conversation, run, lease, 0).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Takes the lease of a conversation for deleting it: `Deleted` means "ours now".
    pub async fn lease_for_delete(
        &self,
        conversation: Uuid,
        run: &str,
        lease: Duration,
    ) -> Result<DeleteOutcome, DbError> {
        Ok(match self.try_lease(conversation, run, lease).await? {
            Lease::Taken { .. } => DeleteOutcome::Deleted,
            Lease::NotFound => DeleteOutcome::NotFound,
            Lease::Busy | Lease::TooMany => DeleteOutcome::Busy,
        })
    }

    /// Gives back a lease `run` holds.
    pub async fn release_lease(&self, conversation: Uuid, run: &str) -> Result<(), DbError> {
        with_pool!(self.db, |p| sqlx::query(RELEASE)
            .bind(self.t())
            .bind(conversation)
            .bind(run)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
