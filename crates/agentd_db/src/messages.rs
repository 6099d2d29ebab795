//! Messages of one tenant's conversations, oldest first.

use crate::models::MessageRow;
use crate::tx::with_tx;
use crate::{DbError, Message, NewMessage, Scoped, TurnTx, with_pool};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

/// INSERT … SELECT makes the tenant check and the write one statement.
const INSERT: &str = "INSERT INTO messages (id, tenant_id, conversation_id, role, content, attachments, response_id, created_at) \
                      SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM conversations WHERE tenant_id = $2 AND id = $3 \
                      ON CONFLICT (id) DO NOTHING";

impl Scoped<'_> {
    /// Appends a message; `Ok(None)` when the conversation is not this tenant's.
    pub async fn append_message(
        &self,
        conversation: Uuid,
        m: NewMessage,
    ) -> Result<Option<Message>, DbError> {
        let mut tx = self.begin().await?;
        let saved = tx.append_message(conversation, &m).await?;
        tx.commit().await?;
        Ok(saved.then(|| m.saved_in(conversation)))
    }

    /// The conversation's messages oldest first, at most `limit` of them, after `after` (the `created_at` and
    /// `id` of the previous page's last message; `None`: from the first). A page at a time, so that no read holds a whole long
    /// conversation: the order is `(created_at, id)`, and a message written meanwhile sorts after the others.
    pub async fn messages_after(
        &self,
        conversation: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Message>, DbError> {
        const FIRST: &str = "SELECT id, conversation_id, role, content, attachments, response_id, created_at \
                             FROM messages WHERE tenant_id = $1 AND conversation_id = $2 \
                             ORDER BY created_at, id LIMIT $3";
        const NEXT: &str = "SELECT id, conversation_id, role, content, attachments, response_id, created_at \
                            FROM messages WHERE tenant_id = $1 AND conversation_id = $2 \
                            AND (created_at, id) > ($4, $5) ORDER BY created_at, id LIMIT $3";
        let rows: Vec<MessageRow> = with_pool!(self.db, |p| {
            let q = sqlx::query_as(if after.is_some() { NEXT } else { FIRST })
                .bind(self.t())
                .bind(conversation)
                .bind(i64::from(limit));
            match after {
                Some((at, id)) => q.bind(at).bind(id).fetch_all(p).await,
                None => q.fetch_all(p).await,
            }
        })?;
        Ok(rows.into_iter().map(Message::from).collect())
    }
}

impl TurnTx {
    /// Appends a message in this transaction; `false` when the conversation is not this tenant's (or gone).
    pub async fn append_message(&mut self, conversation: Uuid, m: &NewMessage) -> Result<bool, DbError> {
        let t = self.tenant.clone();
        let n = with_tx!(self, |c| sqlx::query(INSERT)
            .bind(m.id)
            .bind(t.as_str())
            .bind(conversation)
            .bind(m.role.as_str())
            .bind(&m.content)
            .bind(Json(&m.attachments))
            .bind(&m.response_id)
            .bind(m.created_at)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Conversation `conversation` of this tenant has message `id`.
    pub(crate) async fn has_message(&mut self, conversation: Uuid, id: Uuid) -> Result<bool, DbError> {
        let t = self.tenant.clone();
        let sql = "SELECT COUNT(*) FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND id = $3";
        let n: i64 = with_tx!(self, |c| sqlx::query_scalar(sql)
            .bind(t.as_str())
            .bind(conversation)
            .bind(id)
            .fetch_one(c)
            .await)?;
        Ok(n > 0)
    }
}
