//! Messages of one tenant's conversations, oldest first.

use crate::models::MessageRow;
use crate::{DbError, Message, NewMessage, Scoped, now, with_pool};
use sqlx::types::Json;
use uuid::Uuid;

impl Scoped<'_> {
    /// Appends a message; `NotFound`-like `Ok(None)` when the conversation is not this tenant's.
    pub async fn append_message(
        &self,
        conversation: Uuid,
        m: NewMessage,
    ) -> Result<Option<Message>, DbError> {
        // INSERT … SELECT makes the tenant check and the write one statement.
        let sql = "INSERT INTO messages (id, tenant_id, conversation_id, role, content, attachments, response_id, created_at) \
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM conversations WHERE tenant_id = $2 AND id = $3 \
                   RETURNING id, conversation_id, role, content, attachments, response_id, created_at";
        let (id, t) = (Uuid::now_v7(), now());
        let row: Option<MessageRow> = with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(id)
            .bind(self.tenant)
            .bind(conversation)
            .bind(m.role.as_str())
            .bind(&m.content)
            .bind(Json(&m.attachments))
            .bind(&m.response_id)
            .bind(t)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(Message::from))
    }

    /// The conversation's messages, oldest first.
    pub async fn messages(&self, conversation: Uuid) -> Result<Vec<Message>, DbError> {
        let sql = "SELECT id, conversation_id, role, content, attachments, response_id, created_at FROM messages \
                   WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY created_at, id";
        let rows: Vec<MessageRow> = with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(self.tenant)
            .bind(conversation)
            .fetch_all(p)
            .await)?;
        Ok(rows.into_iter().map(Message::from).collect())
    }
}
