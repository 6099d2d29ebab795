//! `Idempotency-Key`s of one tenant: claimed at admission (in the admission transaction), finished with the
//! turn's result or released in the turn's final transaction. A claim whose run died with its process is free
//! again once that run's lease has expired; keys live 24 hours and are purged after.

use crate::tx::with_tx;
use crate::{Db, DbError, Scoped, TurnTx, now, with_pool};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

/// What an idempotency key says about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyState {
    /// The key is new, expired, or its first request died: this request owns it now.
    Claimed,
    /// A request with this key is still running.
    Running,
    /// Done: the first request's result, and its run (whose events may still be kept for a stream replay).
    Done { result: Value, run_id: Option<String> },
    /// The key was used with a different body.
    Mismatch,
}

/// How long a key lives.
pub const IDEMPOTENCY_TTL: Duration = Duration::hours(24);

/// Claims the key unless a live claim or a result holds it. A `running` claim is dead when it is older than
/// `lease` and no conversation holds a fresh lease for its run.
const CLAIM: &str = "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, created_at, run_id) \
     VALUES ($1, $2, $3, 'running', $4, $5) \
     ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = excluded.request_hash, status = 'running', \
     response_json = NULL, created_at = excluded.created_at, run_id = excluded.run_id, conversation_id = NULL \
     WHERE idempotency_keys.created_at < $6 OR (idempotency_keys.status = 'running' \
     AND idempotency_keys.request_hash = excluded.request_hash AND idempotency_keys.created_at < $7 \
     AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.tenant_id = $1 \
     AND c.active_run_id = idempotency_keys.run_id AND c.active_run_at >= $7)) \
     RETURNING run_id";

const READ: &str = "SELECT request_hash, status, response_json, run_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2";

type Row = (String, String, Option<Json<Value>>, Option<String>);

fn state(row: Option<Row>, hash: &str) -> IdempotencyState {
    match row {
        None => IdempotencyState::Running, // deleted between the two statements: the first request failed
        Some((h, _, _, _)) if h != hash => IdempotencyState::Mismatch,
        Some((_, status, Some(Json(result)), run_id)) if status == "done" => {
            IdempotencyState::Done { result, run_id }
        }
        Some(_) => IdempotencyState::Running,
    }
}

impl TurnTx {
    /// Claims `key` for run `run` of a request whose body hashes to `hash`, or reports what holds it.
    pub async fn claim_idempotency(
        &mut self,
        key: &str,
        hash: &str,
        run: &str,
        lease: Duration,
    ) -> Result<IdempotencyState, DbError> {
        let t = self.tenant.clone();
        let n = now();
        let claimed: Option<Option<String>> = with_tx!(self, |c| sqlx::query_scalar(CLAIM)
            .bind(t.as_str())
            .bind(key)
            .bind(hash)
            .bind(n)
            .bind(run)
            .bind(n - IDEMPOTENCY_TTL)
            .bind(n - lease)
            .fetch_optional(c)
            .await)?;
        if claimed.is_some() {
            return Ok(IdempotencyState::Claimed);
        }
        let row: Option<Row> = with_tx!(self, |c| sqlx::query_as(READ)
            .bind(t.as_str())
            .bind(key)
            .fetch_optional(c)
            .await)?;
        Ok(state(row, hash))
    }

    /// Stores the result of `run`'s request, replayable until the key expires or `conversation` is deleted.
    pub(crate) async fn finish_idempotency(
        &mut self,
        key: &str,
        run: &str,
        conversation: Uuid,
        result: &Value,
    ) -> Result<(), DbError> {
        let t = self.tenant.clone();
        let sql = "UPDATE idempotency_keys SET status = 'done', response_json = $4, conversation_id = $5 \
                   WHERE tenant_id = $1 AND key = $2 AND run_id = $3";
        with_tx!(self, |c| sqlx::query(sql)
            .bind(t.as_str())
            .bind(key)
            .bind(run)
            .bind(Json(result))
            .bind(conversation)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Forgets `run`'s claim on `key` (the request failed: a retry may run again).
    pub(crate) async fn release_idempotency(&mut self, key: &str, run: &str) -> Result<(), DbError> {
        let t = self.tenant.clone();
        let sql = "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND run_id = $3 AND status = 'running'";
        with_tx!(self, |c| sqlx::query(sql)
            .bind(t.as_str())
            .bind(key)
            .bind(run)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

impl Scoped<'_> {
    /// [`TurnTx::claim_idempotency`] in a transaction of its own, for a request without a run (tests, tools).
    pub async fn claim_idempotency(&self, key: &str, hash: &str) -> Result<IdempotencyState, DbError> {
        let mut tx = self.begin().await?;
        let run = format!("claim_{}", Uuid::now_v7().simple());
        let state = tx
            .claim_idempotency(key, hash, &run, Duration::seconds(30))
            .await?;
        tx.commit().await?;
        Ok(state)
    }

    /// Stores the result of whichever request holds `key`.
    pub async fn finish_idempotency(&self, key: &str, result: &Value) -> Result<(), DbError> {
        let sql = "UPDATE idempotency_keys SET status = 'done', response_json = $3 WHERE tenant_id = $1 AND key = $2";
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.t())
            .bind(key)
            .bind(Json(result))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Forgets a running claim on `key`.
    pub async fn release_idempotency(&self, key: &str) -> Result<(), DbError> {
        let sql = "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status = 'running'";
        with_pool!(self.db, |p| sqlx::query(sql)
            .bind(self.t())
            .bind(key)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

impl Db {
    /// Deletes keys older than 24 hours (all tenants); returns how many.
    pub async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, DbError> {
        let sql = "DELETE FROM idempotency_keys WHERE created_at < $1";
        Ok(with_pool!(self, |p| sqlx::query(sql)
            .bind(before)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?)
    }
}
