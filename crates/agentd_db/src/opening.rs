//! A turn's opening on a new conversation, limits included: the tenant's rate cell, the count of its live runs,
//! then the user (recorded on first sight), the conversation leased by the run, the run's first event and the
//! user message. A refusal writes none of it and charges nothing (on PostgreSQL a tenant's very first turn may
//! leave its rate cell created, uncharged).
//!
//! On PostgreSQL the opening is one call of `agentd_open_turn` (migration `…04_open_turn.sql`, which says why it
//! is a function and not one statement; `…05_open_turn_concurrency.sql` has it lock the rate cell for a
//! concurrency limit alone too). [`Scoped::open_turn`] calls it on its own, so a plain turn's admission
//! is one round trip with no BEGIN and COMMIT; [`TurnTx::open_turn`] calls it inside a transaction that has more
//! to do (an idempotency claim, the budget, attachments). SQLite runs the same steps one by one in its
//! transaction.

use crate::journal::EventChunk;
use crate::limits::{RateDecision, cell, refused};
use crate::turns::{NewConversation, limit};
use crate::tx::AnyTx;
use crate::{Db, DbError, NewMessage, Scoped, TurnTx, now};
use chrono::Duration;
use sqlx::types::Json;

/// What a turn on a new conversation opens.
#[derive(Debug)]
pub struct OpenTurn<'a> {
    pub conv: NewConversation<'a>,
    pub run: &'a str,
    pub lease: Duration,
    /// `CHAT_STREAM_CONCURRENT_LIMIT` (0 = none).
    pub concurrent: u32,
    /// `CHAT_RATE_LIMIT_PER_MINUTE` (0 = none). The live-run count is taken under the tenant's rate cell, in
    /// order across replicas, with a rate limit or a concurrency limit (the cell is then locked, not charged).
    pub rate_per_minute: u32,
    /// Now, in microseconds since the epoch: the rate cell's clock reads no earlier than this (it reads the
    /// clock again once it holds the cell, so that instants follow the order admissions take it).
    pub now_us: i64,
    /// The run's first event.
    pub first: &'a EventChunk,
    /// The user message, when it is known before the lease (no attachments to read first).
    pub message: Option<&'a NewMessage>,
}

/// What the opening did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    Opened,
    /// The tenant already runs its concurrent limit.
    TooMany,
    /// The rate limit refused it ([`RateDecision::Refused`]).
    Refused(RateDecision),
}

/// The call (PostgreSQL): `$1`–`$9` the conversation, `$10`–`$13` the first event, `$14`–`$19` the message
/// (`$14` NULL: none), `$20`–`$22` the rate cell (`$21` NULL: no rate limit).
const OPEN: &str = "SELECT o_outcome, o_tat, o_now FROM agentd_open_turn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                    $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)";

async fn call<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    tenant: &str,
    o: &OpenTurn<'_>,
) -> Result<Opening, DbError> {
    debug_assert_eq!(o.first.run_id, o.run, "the first event is the run's");
    let n = now();
    let m = o.message;
    let rate = (o.rate_per_minute > 0).then(|| cell(o.rate_per_minute));
    let (outcome, tat, at): (String, Option<i64>, Option<i64>) = sqlx::query_as(OPEN)
        .bind(tenant)
        .bind(o.conv.id)
        .bind(o.run)
        .bind(n)
        .bind(n - o.lease)
        .bind(limit(o.concurrent))
        .bind(o.conv.user)
        .bind(o.conv.agent)
        .bind(o.conv.title)
        .bind(o.first.first_id)
        .bind(o.first.last_id)
        .bind(o.first.events.as_str())
        .bind(o.first.terminal)
        .bind(m.map(|m| m.id))
        .bind(m.map(|m| m.role.as_str()))
        .bind(m.map(|m| m.content.as_str()))
        .bind(m.map(|m| Json(&m.attachments)))
        .bind(m.and_then(|m| m.response_id.as_deref()))
        .bind(m.map(|m| m.created_at))
        .bind(o.now_us)
        .bind(rate.map(|(interval, _)| interval))
        .bind(rate.map(|(_, tolerance)| tolerance))
        .fetch_one(conn)
        .await?;
    match (outcome.as_str(), tat.zip(at), rate) {
        ("opened", _, _) => Ok(Opening::Opened),
        ("too_many", _, _) => Ok(Opening::TooMany),
        ("rate", Some((tat, at)), Some((_, tolerance))) => {
            // `at` is the database's clock; the caller remembers the refusal on its own: keep the wait, and
            // count it from the caller's instant (which is earlier, so the memory lapses early, never late).
            let mut refusal = refused(tat, at, tolerance);
            if let RateDecision::Refused { until_us, .. } = &mut refusal {
                *until_us += o.now_us - at;
            }
            Ok(Opening::Refused(refusal))
        }
        _ => Err(DbError::Config(format!(
            "agentd_open_turn answered {outcome:?} (tat {tat:?}); is the schema newer than this binary?"
        ))),
    }
}

impl Scoped<'_> {
    /// Opens a turn on a new conversation, and nothing else, in a transaction of its own: on PostgreSQL one
    /// statement that commits by itself.
    pub async fn open_turn(&self, o: &OpenTurn<'_>) -> Result<Opening, DbError> {
        match self.db {
            Db::Postgres(pool) => call(pool, self.tenant.as_str(), o).await,
            Db::Sqlite(_) => {
                let mut tx = self.begin().await?;
                let opened = tx.open_turn(o).await?;
                if opened == Opening::Opened {
                    tx.commit().await?;
                }
                Ok(opened)
            }
        }
    }
}

impl TurnTx {
    /// Opens a turn on a new conversation in this transaction. On a refusal PostgreSQL wrote nothing; SQLite
    /// may have, and the caller rolls back (drops the transaction).
    pub async fn open_turn(&mut self, o: &OpenTurn<'_>) -> Result<Opening, DbError> {
        if let AnyTx::Postgres(tx) = &mut self.tx {
            self.statements += 1;
            let t = self.tenant.clone();
            return call(&mut **tx, t.as_str(), o).await;
        }
        // The function's order: the rate cell, then the count (here the conversation insert's own guard, exact
        // under SQLite's write lock, which BEGIN IMMEDIATE took), then the writes.
        if o.rate_per_minute > 0
            && let refusal @ RateDecision::Refused { .. } =
                self.take_rate(o.rate_per_minute, o.now_us).await?
        {
            return Ok(Opening::Refused(refusal));
        }
        self.ensure_user(o.conv.user).await?;
        if !self
            .create_leased_conversation(&o.conv, o.run, o.lease, o.concurrent)
            .await?
        {
            return Ok(Opening::TooMany);
        }
        self.append_chunk(o.first).await?;
        if let Some(m) = o.message {
            self.append_message(o.conv.id, m).await?;
        }
        Ok(Opening::Opened)
    }
}
