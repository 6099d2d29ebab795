//! Usage records of one tenant: one row per turn (tokens, images, estimated image cost), totals by day and
//! the month's image spend for budgets.

use crate::tx::with_tx;
use crate::{DbError, Scoped, TurnTx, now, with_pool};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// One turn's usage.
#[derive(Debug, Clone, Default)]
pub struct NewUsage {
    pub conversation_id: Option<Uuid>,
    pub response_id: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub images: i64,
    pub image_output_tokens: i64,
    pub image_cost_usd: f64,
}

/// Totals of one day (UTC).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DailyUsage {
    pub day: NaiveDate,
    pub turns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub images: i64,
    pub image_output_tokens: i64,
    pub image_cost_usd: f64,
}

const INSERT: &str = "INSERT INTO usage_events (id, tenant_id, conversation_id, response_id, day, input_tokens, \
    output_tokens, images, image_output_tokens, image_cost_usd, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
    ON CONFLICT (id) DO NOTHING";

const SPENT: &str = "SELECT CAST(COALESCE(SUM(image_cost_usd), 0) AS DOUBLE PRECISION) FROM usage_events \
    WHERE tenant_id = $1 AND created_at >= $2";

impl TurnTx {
    /// Records one turn's usage as row `id` (once: a second call with the same id writes nothing).
    pub(crate) async fn record_usage(&mut self, id: Uuid, u: &NewUsage) -> Result<(), DbError> {
        let (tenant, t) = (self.tenant.clone(), now());
        with_tx!(self, |c| sqlx::query(INSERT)
            .bind(id)
            .bind(tenant.as_str())
            .bind(u.conversation_id)
            .bind(&u.response_id)
            .bind(t.date_naive())
            .bind(u.input_tokens)
            .bind(u.output_tokens)
            .bind(u.images)
            .bind(u.image_output_tokens)
            .bind(u.image_cost_usd)
            .bind(t)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Estimated image spend since `since`, inside the admission transaction.
    pub async fn image_cost_since(&mut self, since: DateTime<Utc>) -> Result<f64, DbError> {
        let tenant = self.tenant.clone();
        Ok(with_tx!(self, |c| sqlx::query_scalar(SPENT)
            .bind(tenant.as_str())
            .bind(since)
            .fetch_one(c)
            .await)?)
    }
}

impl Scoped<'_> {
    /// Totals per day since `since` (inclusive), oldest first.
    pub async fn usage_by_day(&self, since: NaiveDate) -> Result<Vec<DailyUsage>, DbError> {
        let sql = "SELECT day, COUNT(*) AS turns, CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
                   CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, CAST(SUM(images) AS BIGINT) AS images, \
                   CAST(SUM(image_output_tokens) AS BIGINT) AS image_output_tokens, \
                   CAST(SUM(image_cost_usd) AS DOUBLE PRECISION) AS image_cost_usd \
                   FROM usage_events WHERE tenant_id = $1 AND day >= $2 GROUP BY day ORDER BY day";
        Ok(with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(self.t())
            .bind(since)
            .fetch_all(p)
            .await)?)
    }

    /// Estimated image spend since `since`.
    pub async fn image_cost_since(&self, since: DateTime<Utc>) -> Result<f64, DbError> {
        Ok(with_pool!(self.db, |p| sqlx::query_scalar(SPENT)
            .bind(self.t())
            .bind(since)
            .fetch_one(p)
            .await)?)
    }
}
