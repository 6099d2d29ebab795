//! `CHAT_RATE_LIMIT_PER_MINUTE` in the database, so it holds across every replica sharing it: one GCRA cell
//! (generic cell rate algorithm) per tenant. A limit of L per minute admits bursts of up to L and then one turn
//! every 60/L seconds; the retry-after of a refusal is exact. The upsert takes the tenant's row lock, which the
//! admission transaction keeps until it commits — so the live-lease count that follows it ([`TurnTx::live_runs`],
//! the concurrency limit) is taken in order, replica against replica. Admission takes it last, so the lock is
//! held for a statement or two, not for the whole admission.

use crate::tx::with_tx;
use crate::{DbError, TurnTx};

/// What the rate limit said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Admitted,
    /// Retry after this many seconds (≥ 1); every request before `until_us` (microseconds since the epoch) will
    /// be refused too — the cell's time only moves forward.
    Refused {
        retry_after: u64,
        until_us: i64,
    },
}

const MINUTE_US: i64 = 60_000_000;

/// The cell of `per_minute` (> 0): the interval between two turns and the burst tolerance, in µs.
pub(crate) fn cell(per_minute: u32) -> (i64, i64) {
    let interval = MINUTE_US / i64::from(per_minute.max(1));
    (interval, MINUTE_US - interval)
}

/// The refusal of a request at `now_us` by a cell whose theoretical arrival time is `tat`.
pub(crate) fn refused(tat: i64, now_us: i64, tolerance: i64) -> RateDecision {
    let wait_us = (tat - now_us - tolerance).max(1);
    RateDecision::Refused {
        retry_after: (wait_us as u64).div_ceil(1_000_000).max(1),
        until_us: now_us + wait_us,
    }
}

impl TurnTx {
    /// Counts one turn against `per_minute` (> 0) at `now_us` (microseconds since the epoch), or later: the
    /// clock is read again here, so a caller that waited since it read `now_us` does not go back in time.
    pub async fn take_rate(&mut self, per_minute: u32, now_us: i64) -> Result<RateDecision, DbError> {
        let now_us = now_us.max(crate::now().timestamp_micros());
        let (interval, tolerance) = cell(per_minute);
        // SET expressions read the row as it was, so both columns see the same old `tat_us`.
        let sql = "INSERT INTO tenant_rate (tenant_id, tat_us, admitted) VALUES ($1, $2 + $3, 1) \
                   ON CONFLICT (tenant_id) DO UPDATE SET \
                   admitted = CASE WHEN tenant_rate.tat_us - $2 <= $4 THEN 1 ELSE 0 END, \
                   tat_us = CASE WHEN tenant_rate.tat_us - $2 <= $4 \
                       THEN (CASE WHEN tenant_rate.tat_us > $2 THEN tenant_rate.tat_us ELSE $2 END) + $3 \
                       ELSE tenant_rate.tat_us END \
                   RETURNING tat_us, admitted";
        let t = self.tenant.clone();
        let (tat, admitted): (i64, i32) = with_tx!(self, |c| sqlx::query_as(sql)
            .bind(t.as_str())
            .bind(now_us)
            .bind(interval)
            .bind(tolerance)
            .fetch_one(c)
            .await)?;
        if admitted == 1 {
            return Ok(RateDecision::Admitted);
        }
        Ok(refused(tat, now_us, tolerance))
    }

    /// Takes the tenant's rate cell's row lock without charging it: with a concurrency limit but no rate
    /// limit, what orders the live-run count that follows ([`TurnTx::live_runs`]) replica against replica.
    pub async fn lock_tenant(&mut self) -> Result<(), DbError> {
        let sql = "INSERT INTO tenant_rate (tenant_id, tat_us, admitted) VALUES ($1, 0, 1) \
                   ON CONFLICT (tenant_id) DO UPDATE SET admitted = tenant_rate.admitted";
        let t = self.tenant.clone();
        with_tx!(self, |c| sqlx::query(sql)
            .bind(t.as_str())
            .execute(c)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// How many of this tenant's conversations a live run holds (heartbeat younger than `lease`), this
    /// transaction's own lease included. Read after [`TurnTx::take_rate`] (or [`TurnTx::lock_tenant`]), it sees
    /// every admission that took the tenant's rate cell before this one.
    pub async fn live_runs(&mut self, lease: chrono::Duration) -> Result<i64, DbError> {
        let sql = "SELECT COUNT(*) FROM conversations WHERE tenant_id = $1 AND active_run_id IS NOT NULL \
                   AND active_run_at >= $2";
        let t = self.tenant.clone();
        let since = crate::now() - lease;
        Ok(with_tx!(self, |c| sqlx::query_scalar(sql)
            .bind(t.as_str())
            .bind(since)
            .fetch_one(c)
            .await)?)
    }
}
