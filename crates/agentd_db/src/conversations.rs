//! Conversations of one tenant: create, read, list newest first with a keyset cursor, delete.

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
        "id, tenant_id, user_id, agent, title, last_response_id, created_at, updated_at"
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
            .bind(self.tenant)
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
            .bind(self.tenant)
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
                    .bind(self.tenant)
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
                    .bind(self.tenant)
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
            .bind(self.tenant)
            .bind(id)
            .bind(response_id)
            .bind(t)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Deletes the conversation and its messages; `false` when it does not exist in this tenant.
    pub async fn delete_conversation(&self, id: Uuid) -> Result<bool, DbError> {
        let sql = "DELETE FROM conversations WHERE tenant_id = $1 AND id = $2";
        let done = with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.tenant)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }
}
