//! The per-conversation run lease (one running turn per conversation, across replicas) and idempotency keys.

use crate::{DbError, Scoped, now, with_pool};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

/// What an idempotency key says about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyState {
    /// The key is new (or expired): this request owns it now.
    Claimed,
    /// A request with this key is still running.
    Running,
    /// Done: the first request's result.
    Done(Value),
    /// The key was used with a different body.
    Mismatch,
}

impl Scoped<'_> {
    /// Takes the run lease of a conversation unless another live run holds it (leases older than `stale` are
    /// considered abandoned by a crashed process). `false` means the conversation is busy.
    pub async fn try_lock_run(
        &self,
        conversation: Uuid,
        run: &str,
        stale: Duration,
    ) -> Result<bool, DbError> {
        let sql = "UPDATE conversations SET active_run_id = $3, active_run_at = $4 \
                   WHERE tenant_id = $1 AND id = $2 AND (active_run_id IS NULL OR active_run_at < $5)";
        let t = now();
        let n = with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.tenant)
            .bind(conversation)
            .bind(run)
            .bind(t)
            .bind(t - stale)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Releases the lease if `run` still holds it.
    pub async fn unlock_run(&self, conversation: Uuid, run: &str) -> Result<(), DbError> {
        let sql = "UPDATE conversations SET active_run_id = NULL, active_run_at = NULL \
                   WHERE tenant_id = $1 AND id = $2 AND active_run_id = $3";
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.tenant)
            .bind(conversation)
            .bind(run)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Claims `key` for a request whose body hashes to `hash`, or reports what an earlier request left.
    /// Keys live 24 hours.
    pub async fn claim_idempotency(&self, key: &str, hash: &str) -> Result<IdempotencyState, DbError> {
        let t = now();
        let expired: DateTime<Utc> = t - Duration::hours(24);
        let purge = "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND created_at < $3";
        with_pool!(self.db, |p| sqlx::query(purge)
            .bind(self.tenant)
            .bind(key)
            .bind(expired)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        let insert = "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, created_at) \
                      VALUES ($1, $2, $3, 'running', $4) ON CONFLICT DO NOTHING";
        let inserted = with_pool!(self.db, |p| sqlx::query(insert)
            .bind(self.tenant)
            .bind(key)
            .bind(hash)
            .bind(t)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        if inserted == 1 {
            return Ok(IdempotencyState::Claimed);
        }
        let select = "SELECT request_hash, status, response_json FROM idempotency_keys WHERE tenant_id = $1 AND key = $2";
        let row: Option<(String, String, Option<Json<Value>>)> =
            with_pool!(self.db, |p| sqlx::query_as(select)
                .bind(self.tenant)
                .bind(key)
                .fetch_optional(p)
                .await)?;
        Ok(match row {
            None => IdempotencyState::Running, // deleted between the two statements: the first request failed
            Some((h, _, _)) if h != hash => IdempotencyState::Mismatch,
            Some((_, status, Some(Json(v)))) if status == "done" => IdempotencyState::Done(v),
            Some(_) => IdempotencyState::Running,
        })
    }

    /// Stores the result of the request that claimed `key`.
    pub async fn finish_idempotency(&self, key: &str, result: &Value) -> Result<(), DbError> {
        let sql = "UPDATE idempotency_keys SET status = 'done', response_json = $3 WHERE tenant_id = $1 AND key = $2";
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.tenant)
            .bind(key)
            .bind(Json(result))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Forgets `key` (the request failed: a retry may run again).
    pub async fn release_idempotency(&self, key: &str) -> Result<(), DbError> {
        let sql = "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status = 'running'";
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.tenant)
            .bind(key)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
