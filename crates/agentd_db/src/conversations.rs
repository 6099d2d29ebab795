//! Conversations of one tenant: create, read, list newest first with a keyset cursor, delete.

use crate::tx::with_tx;
use crate::{Conversation, DbError, Scoped, now, with_pool};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Position after the last conversation of a page: `(updated_at, id)` of that conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationCursor {
    pub updated_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page of conversations, newest first.
#[derive(Debug)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    pub next: Option<ConversationCursor>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, user_id, agent, title, last_response_id, created_at, updated_at, active_run_id, active_run_at, active_run_started_at"
    };
}

impl Scoped<'_> {
    /// Starts a conversation owned by `user` (recorded on first sight).
    pub async fn create_conversation(
        &self,
        user: &str,
        agent: &str,
        title: &str,
    ) -> Result<Conversation, DbError> {
        self.create_conversation_with_id(Uuid::now_v7(), user, agent, title)
            .await
    }

    /// Starts a conversation whose id the caller chose (announced to the client before it is written).
    pub async fn create_conversation_with_id(
        &self,
        id: Uuid,
        user: &str,
        agent: &str,
        title: &str,
    ) -> Result<Conversation, DbError> {
        self.ensure_user(user).await?;
        let sql = concat!(
            "INSERT INTO conversations (id, tenant_id, user_id, agent, title, created_at, updated_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ",
            columns!()
        );
        let t = now();
        Ok(with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(id)
            .bind(self.t())
            .bind(user)
            .bind(agent)
            .bind(title)
            .bind(t)
            .fetch_one(p)
            .await)?)
    }

    pub async fn conversation(&self, id: Uuid) -> Result<Option<Conversation>, DbError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM conversations WHERE tenant_id = $1 AND id = $2"
        );
        Ok(with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(self.t())
            .bind(id)
            .fetch_optional(p)
            .await)?)
    }

    /// Newest first; `limit` is clamped to 1..=100.
    pub async fn list_conversations(
        &self,
        limit: u32,
        after: Option<ConversationCursor>,
    ) -> Result<ConversationPage, DbError> {
        let limit = limit.clamp(1, 100);
        let fetch = i64::from(limit) + 1;
        let mut items: Vec<Conversation> = match after {
            None => {
                let sql = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM conversations WHERE tenant_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2"
                );
                with_pool!(self.db, |p| sqlx::query_as(sql)
                    .bind(self.t())
                    .bind(fetch)
                    .fetch_all(p)
                    .await)?
            }
            Some(c) => {
                let sql = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM conversations WHERE tenant_id = $1 AND (updated_at, id) < ($2, $3) ",
                    "ORDER BY updated_at DESC, id DESC LIMIT $4"
                );
                with_pool!(self.db, |p| sqlx::query_as(sql)
                    .bind(self.t())
                    .bind(c.updated_at)
                    .bind(c.id)
                    .bind(fetch)
                    .fetch_all(p)
                    .await)?
            }
        };
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|c| ConversationCursor {
                updated_at: c.updated_at,
                id: c.id,
            })
        } else {
            None
        };
        Ok(ConversationPage { items, next })
    }

    /// Records the upstream response id the next turn continues from, and bumps `updated_at`.
    pub async fn set_last_response(&self, id: Uuid, response_id: Option<&str>) -> Result<(), DbError> {
        let sql = "UPDATE conversations SET last_response_id = COALESCE($3, last_response_id), updated_at = $4 \
                   WHERE tenant_id = $1 AND id = $2";
        let t = now();
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.t())
            .bind(id)
            .bind(response_id)
            .bind(t)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Deletes an idle conversation (or one whose run died) with everything that belongs to it; `false` when
    /// there is none in this tenant or a live run holds it.
    pub async fn delete_conversation(&self, id: Uuid) -> Result<bool, DbError> {
        let run = format!("delete_{}", Uuid::now_v7().simple());
        if self
            .lease_for_delete(id, &run, chrono::Duration::seconds(30))
            .await?
            != DeleteOutcome::Deleted
        {
            return Ok(false);
        }
        Ok(self.delete_conversation_leased(id, &run).await? == DeleteOutcome::Deleted)
    }

    /// Deletes the conversation that `run` holds the lease of ([`Scoped::lease_for_delete`]), in one
    /// transaction: the uploads only it referenced, its generated-image rows, idempotency results and run
    /// event log, then the conversation (messages and references cascade). The caller deletes the bytes first.
    pub async fn delete_conversation_leased(&self, id: Uuid, run: &str) -> Result<DeleteOutcome, DbError> {
        let mut tx = self.begin().await?;
        let t = self.tenant.clone();
        for sql in [
            "DELETE FROM stored_objects WHERE tenant_id = $1 AND kind = 'upload' AND id IN \
             (SELECT object_id FROM object_refs WHERE tenant_id = $1 AND conversation_id = $2) AND NOT EXISTS \
             (SELECT 1 FROM object_refs r WHERE r.object_id = stored_objects.id AND r.conversation_id <> $2)",
            "DELETE FROM stored_objects WHERE tenant_id = $1 AND conversation_id = $2",
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND conversation_id = $2",
            "DELETE FROM run_events WHERE tenant_id = $1 AND conversation_id = $2",
        ] {
            with_tx!(tx, |c| sqlx::query(sql)
                .bind(t.as_str())
                .bind(id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        let gone = with_tx!(tx, |c| sqlx::query(
            "DELETE FROM conversations WHERE tenant_id = $1 AND id = $2 AND active_run_id = $3"
        )
        .bind(t.as_str())
        .bind(id)
        .bind(run)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        if gone == 0 {
            return Ok(DeleteOutcome::NotFound); // rolled back: the lease was lost or the row is gone
        }
        tx.commit().await?;
        Ok(DeleteOutcome::Deleted)
    }
}

/// What a deletion found (also the answer of [`Scoped::lease_for_delete`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// A run holds the conversation.
    Busy,
}
