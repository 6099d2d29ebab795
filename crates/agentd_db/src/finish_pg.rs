//! The finished turn on PostgreSQL as one statement: the assistant message, its image links, the usage row, the
//! conversation's `last_response_id` and lease release, the idempotency result and the terminal run event are
//! data-modifying CTEs of one `WITH … SELECT`. A single statement commits atomically by itself, so the finished
//! turn costs one round trip instead of up to eight (BEGIN, up to six statements, COMMIT). SQLite runs the same
//! writes as separate statements in one transaction ([`Scoped::finish_turn`]).

use crate::turns::{Finished, FinishedTurn};
use crate::{DbError, Scoped, now};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

/// `$1` tenant, `$2` conversation, `$3` run, `$4` response id, `$5` now; the message `$6`–`$12` (`$6`: there is
/// one); the images it shows `$13`; usage `$14`–`$22` (`$14`: the turn's usage id); the idempotency key `$23` and
/// result `$24` (no result frees the key); the run-log chunk `$25`–`$31` (`$25`: there is one).
///
/// Each CTE is one statement of the SQLite path (`append_message`, `link_objects`, `record_usage`, the lease
/// release, `finish_idempotency` / `release_idempotency`, `append_chunk`); PostgreSQL runs every data-modifying
/// CTE once, whatever the final SELECT reads. `m0` and `e0` find (in the statement's snapshot) the message and the
/// chunk of an earlier try whose commit went unanswered, so a retried save reports them as saved and writes
/// nothing twice.
const FINISH: &str = "WITH \
  m AS (INSERT INTO messages (id, tenant_id, conversation_id, role, content, attachments, response_id, created_at) \
        SELECT $7, $1, $2, $8, $9, $10, $11, $12 FROM conversations WHERE tenant_id = $1 AND id = $2 AND $6 \
        ON CONFLICT (id) DO NOTHING RETURNING id), \
  m0 AS (SELECT 1 FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND id = $7 AND $6), \
  l AS (UPDATE stored_objects SET message_id = $7 WHERE tenant_id = $1 AND id = ANY($13) \
        AND (EXISTS (SELECT 1 FROM m) OR EXISTS (SELECT 1 FROM m0)) RETURNING 1), \
  u AS (INSERT INTO usage_events (id, tenant_id, conversation_id, response_id, day, input_tokens, output_tokens, \
        images, image_output_tokens, image_cost_usd, created_at) \
        VALUES ($14, $1, $15, $16, $17, $18, $19, $20, $21, $22, $5) ON CONFLICT (id) DO NOTHING RETURNING 1), \
  c AS (UPDATE conversations SET last_response_id = COALESCE($4, last_response_id), updated_at = $5, \
        active_run_id = NULL, active_run_at = NULL, active_run_started_at = NULL \
        WHERE tenant_id = $1 AND id = $2 AND active_run_id = $3 RETURNING 1), \
  d AS (UPDATE idempotency_keys SET status = 'done', response_json = $24, conversation_id = $2 \
        WHERE tenant_id = $1 AND key = $23 AND run_id = $3 AND $24 IS NOT NULL RETURNING 1), \
  r AS (DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $23 AND run_id = $3 AND status = 'running' \
        AND $24 IS NULL RETURNING 1), \
  e AS (INSERT INTO run_events (run_id, first_id, last_id, tenant_id, conversation_id, events, terminal, created_at) \
        SELECT $26, $27, $28, $1, $29, $30, $31, $5 WHERE $25 ON CONFLICT DO NOTHING RETURNING 1), \
  e0 AS (SELECT 1 FROM run_events WHERE run_id = $26 AND tenant_id = $1 AND first_id = $27 AND last_id = $28 \
         AND terminal = $31 AND events = $30 AND $25) \
  SELECT (SELECT COUNT(*) FROM m) + (SELECT COUNT(*) FROM m0), (SELECT COUNT(*) FROM c), \
         (SELECT COUNT(*) FROM e) + (SELECT COUNT(*) FROM e0), \
         (SELECT COUNT(*) FROM l) + (SELECT COUNT(*) FROM u) + (SELECT COUNT(*) FROM d) + (SELECT COUNT(*) FROM r)";

impl Scoped<'_> {
    /// [`Scoped::finish_turn`] on PostgreSQL.
    pub(crate) async fn finish_turn_pg(
        &self,
        pool: &PgPool,
        f: &FinishedTurn<'_>,
    ) -> Result<Finished, DbError> {
        let n = now();
        let m = f.assistant;
        let u = f.usage;
        let (key, result) = match f.idempotency {
            Some((key, result)) => (Some(key), result.map(Json)),
            None => (None, None),
        };
        let chunk = f.events;
        let (saved, released, logged, _): (i64, i64, i64, i64) = sqlx::query_as(FINISH)
            .bind(self.t())
            .bind(f.conversation)
            .bind(f.run_id)
            .bind(f.response_id)
            .bind(n)
            .bind(m.is_some())
            .bind(m.map_or_else(Uuid::nil, |m| m.id))
            .bind(m.map(|m| m.role.as_str()))
            .bind(m.map(|m| m.content.as_str()))
            .bind(m.map(|m| Json(&m.attachments)))
            .bind(m.and_then(|m| m.response_id.as_deref()))
            .bind(m.map(|m| m.created_at))
            .bind(f.object_ids)
            .bind(f.usage_id)
            .bind(u.conversation_id)
            .bind(u.response_id.as_deref())
            .bind(n.date_naive())
            .bind(u.input_tokens)
            .bind(u.output_tokens)
            .bind(u.images)
            .bind(u.image_output_tokens)
            .bind(u.image_cost_usd)
            .bind(key)
            .bind(result)
            .bind(chunk.is_some())
            .bind(chunk.map(|c| c.run_id.as_str()))
            .bind(chunk.map(|c| c.first_id))
            .bind(chunk.map(|c| c.last_id))
            .bind(chunk.map(|c| c.conversation_id))
            .bind(chunk.map(|c| c.events.as_str()))
            .bind(chunk.map(|c| c.terminal))
            .fetch_one(pool)
            .await?;
        Ok(Finished {
            message_saved: saved == 1,
            lease_released: released == 1,
            terminal_logged: logged == 1,
        })
    }
}
