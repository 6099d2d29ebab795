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

/// A page's query (`$1` tenant, `$2` conversation, `$3` rows, `$4` bytes), with `$after` narrowing it: the first
/// `$3` rows, then those whose content before them sums to under `$4` bytes, and how many the count allowed.
macro_rules! page_sql {
    ($after:literal) => {
        concat!(
            "SELECT id, conversation_id, role, content, attachments, response_id, created_at, got FROM (",
            "SELECT id, conversation_id, role, content, attachments, response_id, created_at, ",
            "COALESCE(SUM(octet_length(content)) OVER (ORDER BY created_at, id ",
            "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS bytes_before, COUNT(*) OVER () AS got FROM (",
            "SELECT id, conversation_id, role, content, attachments, response_id, created_at FROM messages ",
            "WHERE tenant_id = $1 AND conversation_id = $2 ",
            $after,
            "ORDER BY created_at, id LIMIT $3) AS m) AS t WHERE bytes_before < $4 ORDER BY created_at, id"
        )
    };
}

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

    /// The conversation's messages oldest first after `after` (the `created_at` and `id` of the previous page's
    /// last message; `None`: from the first): at most `limit` of them, those before the page's last with under
    /// `max_bytes` of content together (so always the first). A page at a time, so that no read holds a whole long conversation, nor a
    /// page of a few thousand times the bytes of another: the order is `(created_at, id)`, and a message written
    /// meanwhile sorts after the others.
    pub async fn messages_after(
        &self,
        conversation: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
        max_bytes: u64,
    ) -> Result<MessagePage, DbError> {
        const FIRST: &str = page_sql!("");
        const NEXT: &str = page_sql!("AND (created_at, id) > ($5, $6) ");
        let rows: Vec<PagedRow> = with_pool!(self.db, |p| {
            let q = sqlx::query_as(if after.is_some() { NEXT } else { FIRST })
                .bind(self.t())
                .bind(conversation)
                .bind(i64::from(limit))
                .bind(i64::try_from(max_bytes).unwrap_or(i64::MAX));
            match after {
                Some((at, id)) => q.bind(at).bind(id).fetch_all(p).await,
                None => q.fetch_all(p).await,
            }
        })?;
        // `got`: the rows the count allowed, before the bytes cut some.
        let got = rows.first().map_or(0, |r| r.got);
        let messages: Vec<Message> = rows.into_iter().map(|r| Message::from(r.row)).collect();
        let more = got >= i64::from(limit) || (messages.len() as i64) < got;
        Ok(MessagePage { messages, more })
    }
}

/// A page of a conversation's messages, oldest first.
#[derive(Debug)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// There may be more after the last: the page is as long as asked, or was cut by its bytes.
    pub more: bool,
}

#[derive(sqlx::FromRow)]
struct PagedRow {
    #[sqlx(flatten)]
    row: MessageRow,
    got: i64,
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
