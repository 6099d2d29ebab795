//! A turn's opening writes on a new conversation: the user (recorded on first sight), the conversation leased by
//! the run — refused when the tenant already runs its concurrent limit —, the run's first event and the user
//! message. On PostgreSQL they are one statement (data-modifying CTEs; the event and the message are inserted
//! only if the conversation was), so admission spends one round trip on them instead of four; SQLite runs them
//! one by one.

use crate::journal::EventChunk;
use crate::turns::{NewConversation, UNDER_LIMIT, limit};
use crate::tx::AnyTx;
use crate::{DbError, NewMessage, TurnTx, now};
use chrono::Duration;
use sqlx::types::Json;
use std::sync::LazyLock;
use uuid::Uuid;

/// The opening statement (PostgreSQL), built once: `$1` tenant, `$2` conversation, `$3` run, `$4` now, `$5` the
/// lease's cutoff, `$6` the concurrent limit, `$7`–`$9` user, agent, title; the first event `$10`–`$14`; the
/// message `$15`–`$21` (`$15`: there is one).
static OPEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH \
         us AS (INSERT INTO users (tenant_id, id, created_at) VALUES ($1, $7, $4) ON CONFLICT DO NOTHING), \
         c AS (INSERT INTO conversations (id, tenant_id, user_id, agent, title, created_at, updated_at, \
               active_run_id, active_run_at, active_run_started_at) \
               SELECT $2, $1, $7, $8, $9, $4, $4, $3, $4, $4 WHERE {UNDER_LIMIT} RETURNING id), \
         e AS (INSERT INTO run_events (run_id, first_id, last_id, tenant_id, conversation_id, events, terminal, \
               created_at) SELECT $10, $11, $12, $1, id, $13, $14, $4 FROM c ON CONFLICT DO NOTHING), \
         m AS (INSERT INTO messages (id, tenant_id, conversation_id, role, content, attachments, response_id, \
               created_at) SELECT $16, $1, id, $17, $18, $19, $20, $21 FROM c WHERE $15) \
         SELECT COUNT(*) FROM c"
    )
});

impl TurnTx {
    /// Creates `conv` leased by `run` with the turn's first event and, when given, the user message; `false`
    /// when the tenant already runs `concurrent` turns (0 = unlimited): then only the user may have been
    /// recorded, and the caller rolls back.
    pub async fn open_conversation(
        &mut self,
        conv: &NewConversation<'_>,
        run: &str,
        lease: Duration,
        concurrent: u32,
        first: &EventChunk,
        user_message: Option<&NewMessage>,
    ) -> Result<bool, DbError> {
        if matches!(self.tx, AnyTx::Sqlite(_)) {
            self.ensure_user(conv.user).await?;
            if !self
                .create_leased_conversation(conv, run, lease, concurrent)
                .await?
            {
                return Ok(false);
            }
            self.append_chunk(first).await?;
            if let Some(m) = user_message {
                self.append_message(conv.id, m).await?;
            }
            return Ok(true);
        }
        let (t, n) = (self.tenant.clone(), now());
        let m = user_message;
        self.statements += 1;
        let AnyTx::Postgres(tx) = &mut self.tx else {
            return Err(DbError::Config("no PostgreSQL transaction".to_owned()));
        };
        let created: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(OPEN.as_str()))
            .bind(t.as_str())
            .bind(conv.id)
            .bind(run)
            .bind(n)
            .bind(n - lease)
            .bind(limit(concurrent))
            .bind(conv.user)
            .bind(conv.agent)
            .bind(conv.title)
            .bind(first.run_id.as_str())
            .bind(first.first_id)
            .bind(first.last_id)
            .bind(first.events.as_str())
            .bind(first.terminal)
            .bind(m.is_some())
            .bind(m.map_or_else(Uuid::nil, |m| m.id))
            .bind(m.map(|m| m.role.as_str()))
            .bind(m.map(|m| m.content.as_str()))
            .bind(m.map(|m| Json(&m.attachments)))
            .bind(m.and_then(|m| m.response_id.as_deref()))
            .bind(m.map(|m| m.created_at))
            .fetch_one(&mut **tx)
            .await?;
        Ok(created == 1)
    }
}
