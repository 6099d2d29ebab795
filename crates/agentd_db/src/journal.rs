//! The run event log (`run_events`): every event of a run except image previews, kept so that a stream can be
//! resumed — from the same replica or another — for `RUN_EVENTS_RETENTION_HOURS`.
//!
//! Rows are chunks: one row holds a run's consecutive events `first_id..=last_id` as a JSON array, so a batch
//! writes one row per run however many deltas it carries. On PostgreSQL every write also sends
//! `NOTIFY agentd_run_events, '<run_id> <prev_id> <last_id>[ <events>]'` (in the same statement), which
//! [`RunListener`] relays to the readers of other replicas: the chunk itself when it is small enough for a
//! notification (most are), so that a reader on another replica needs no query to follow a run.

use crate::tx::with_tx;
use crate::{Db, DbError, Scoped, TenantId, TurnTx, now, with_pool};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

mod notes;
pub use notes::{Heard, RunListener};

/// The PostgreSQL notification channel of new run events.
pub const CHANNEL: &str = "agentd_run_events";

/// Consecutive events of one run, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct EventChunk {
    pub run_id: String,
    pub tenant: TenantId,
    pub conversation_id: Uuid,
    pub first_id: i64,
    pub last_id: i64,
    /// A JSON array of the events (the caller's format; this crate stores it as text).
    pub events: String,
    /// Holds the run's terminal event (at most one chunk per run does).
    pub terminal: bool,
    /// The id of the run's last logged event before this chunk (0: none). Not stored; it travels with the
    /// notification so that a reader can tell whether it holds every chunk before this one. Ids between
    /// `prev_id` and `first_id` are previews, which are never logged.
    pub prev_id: i64,
}

/// One notification: a run's chunk was written. `events` is the chunk's JSON array when it fitted in the
/// notification (`None`: read the rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkNote {
    pub run_id: String,
    pub prev_id: i64,
    pub last_id: i64,
    pub events: Option<String>,
}

/// Chunks read at most per statement ([`Scoped::run_chunks_after`], [`Scoped::run_resume`]): a reader holds one
/// page of a run's log at a time, however long the run (its reply alone may be `CHAT_MAX_REPLY_MB`, in
/// thousands of deltas). A full page means there may be more: read again after its last id.
pub const CHUNKS_PER_READ: usize = 16;

/// Where a read of a run's chunks after id `$after` starts: the first id of the chunk holding `$after` (chunks
/// never overlap), found by a backward step on the primary key — so that each page is an index range from
/// there, not a scan from the run's first chunk (which made reading a long run page by page quadratic).
macro_rules! from_chunk {
    ($after:literal) => {
        concat!(
            "COALESCE((SELECT first_id FROM run_events WHERE run_id = $1 AND first_id <= ",
            $after,
            " ORDER BY first_id DESC LIMIT 1), 0)"
        )
    };
}

/// A stored chunk, read back.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredChunk {
    pub first_id: i64,
    pub last_id: i64,
    pub events: String,
    pub terminal: bool,
}

/// What the database knows about a run of this tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub conversation_id: Uuid,
    /// A conversation still holds a fresh lease for the run.
    pub live: bool,
    /// The last id written so far (0 when nothing is).
    pub last_id: i64,
    pub finished: bool,
}

const COLUMNS: &str = "run_id, first_id, last_id, tenant_id, conversation_id, events, terminal, created_at";

/// What the log holds of a run and the conversation whose lease holds it, as one row off a one-row relation
/// (either side may be missing; at most one of each, so that a join with the run's chunks never repeats
/// them): `$1` the run, `$2` the tenant, `$3` the oldest fresh lease.
macro_rules! run_state_from {
    () => {
        "FROM (SELECT 1 AS one) AS o \
         LEFT JOIN (SELECT conversation_id, MAX(last_id) AS last_id, \
         MAX(CASE WHEN terminal THEN 1 ELSE 0 END) AS terminal FROM run_events \
         WHERE run_id = $1 AND tenant_id = $2 GROUP BY conversation_id LIMIT 1) AS l ON TRUE \
         LEFT JOIN (SELECT id, active_run_at >= $3 AS fresh FROM conversations \
         WHERE tenant_id = $2 AND active_run_id = $1 LIMIT 1) AS c ON TRUE"
    };
}

/// The row of `run_state_from!`: the log's conversation, last id and terminal flag; the lease's conversation
/// and freshness.
type StateRow = (Option<Uuid>, Option<i64>, Option<i32>, Option<Uuid>, Option<bool>);

fn state_of((log_conv, log_last, log_terminal, lease_conv, lease_fresh): StateRow) -> Option<RunState> {
    let leased = lease_conv.map(|c| (c, lease_fresh.unwrap_or(false)));
    match (log_conv.zip(log_last), leased) {
        (None, None) => None,
        (Some((conversation_id, last_id)), lease) => Some(RunState {
            conversation_id,
            live: lease.is_some_and(|(_, fresh)| fresh),
            last_id,
            finished: log_terminal == Some(1),
        }),
        (None, Some((conversation_id, fresh))) => Some(RunState {
            conversation_id,
            live: fresh,
            last_id: 0,
            finished: false,
        }),
    }
}

impl Db {
    /// Writes chunks of any runs and tenants in one statement and returns the `(run_id, first_id)` of those
    /// written: a chunk already there, or a second terminal of a run (a reader ended it as dead meanwhile), is
    /// dropped. On PostgreSQL the same statement notifies listeners of the written ones.
    pub async fn append_chunks(&self, chunks: &[EventChunk]) -> Result<Vec<(String, i64)>, DbError> {
        self.append(chunks, true).await
    }

    /// [`Db::append_chunks`] without the notification, for while notifying fails: PostgreSQL fails the whole
    /// statement when its notification queue is full (a listener somewhere stopped reading), and the events
    /// must still be written; [`Db::announce`] may try the notification apart.
    pub async fn append_chunks_unannounced(
        &self,
        chunks: &[EventChunk],
    ) -> Result<Vec<(String, i64)>, DbError> {
        self.append(chunks, false).await
    }

    async fn append(&self, chunks: &[EventChunk], notify: bool) -> Result<Vec<(String, i64)>, DbError> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let t = now();
        // One row per chunk; the same binds for both drivers, plus the notification's payload for PostgreSQL.
        macro_rules! bind_chunk {
            ($row:expr, $c:expr) => {
                $row.push_bind($c.run_id.as_str())
                    .push_bind($c.first_id)
                    .push_bind($c.last_id)
                    .push_bind($c.tenant.as_str())
                    .push_bind($c.conversation_id)
                    .push_bind($c.events.as_str())
                    .push_bind($c.terminal)
                    .push_bind(t)
            };
        }
        match self {
            Db::Postgres(p) if notify => {
                let mut q = sqlx::QueryBuilder::new(format!("WITH v ({COLUMNS}, note) AS ("));
                q.push_values(chunks, |mut row, c| {
                    bind_chunk!(row, c).push_bind(ChunkNote::payload(c));
                });
                // Each inserted chunk (`v` joined with `ins`) is notified and reported.
                q.push(format!(
                    "), ins AS (INSERT INTO run_events ({COLUMNS}) SELECT {COLUMNS} FROM v \
                     ON CONFLICT DO NOTHING RETURNING run_id, first_id) \
                     SELECT v.run_id, v.first_id, pg_notify('{CHANNEL}', v.note)::text \
                     FROM ins JOIN v USING (run_id, first_id)"
                ));
                let rows: Vec<(String, i64, String)> = q.build_query_as().fetch_all(p).await?;
                Ok(rows.into_iter().map(|(run, first, _)| (run, first)).collect())
            }
            _ => with_pool!(self, |p| {
                let mut q = sqlx::QueryBuilder::new(format!("INSERT INTO run_events ({COLUMNS}) "));
                q.push_values(chunks, |mut row, c| {
                    bind_chunk!(row, c);
                });
                q.push(" ON CONFLICT DO NOTHING RETURNING run_id, first_id");
                Ok(q.build_query_as().fetch_all(p).await?)
            }),
        }
    }

    /// Notifies listeners of chunks written in transactions that did not (PostgreSQL; nothing on SQLite). Apart
    /// from those transactions on purpose: a notifying commit takes PostgreSQL's cluster-wide notification lock,
    /// and fails outright when the notification queue is full (a listener that stopped reading) — a turn must
    /// not be lost for want of a notification.
    pub async fn announce(&self, chunks: &[EventChunk]) -> Result<(), DbError> {
        let Db::Postgres(p) = self else {
            return Ok(());
        };
        if chunks.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = chunks.iter().map(ChunkNote::payload).collect();
        sqlx::query("SELECT pg_notify($2, p)::text FROM unnest($1::text[]) AS p")
            .bind(payloads)
            .bind(CHANNEL)
            .execute(p)
            .await?;
        Ok(())
    }

    /// Deletes the runs whose every chunk is older than `before` (all tenants), whole — never a run's first
    /// chunks while its later ones stay, which would make a replay start mid-run; returns how many chunks.
    pub async fn purge_run_events(&self, before: DateTime<Utc>) -> Result<u64, DbError> {
        // NOT EXISTS, not NOT IN: an anti-join however many runs are recent (NOT IN falls back to a scan of
        // the recent rows per row once they no longer fit in work_mem).
        let sql = "DELETE FROM run_events WHERE created_at < $1 AND NOT EXISTS \
                   (SELECT 1 FROM run_events n WHERE n.run_id = run_events.run_id AND n.created_at >= $1)";
        Ok(with_pool!(self, |p| sqlx::query(sql)
            .bind(before)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?)
    }
}

impl TurnTx {
    /// Writes one chunk in this transaction (a run's first event at admission, its terminal one at the end);
    /// `true` when it was written (not when the run already has that chunk, or already ended). Nobody is
    /// notified: no reader can wait for a run's first event (it has not been told the run's id yet), and the
    /// terminal one is announced after the commit ([`Db::announce`]).
    pub async fn append_chunk(&mut self, c: &EventChunk) -> Result<bool, DbError> {
        let sql = "INSERT INTO run_events (run_id, first_id, last_id, tenant_id, conversation_id, events, terminal, \
                   created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
        let n = with_tx!(self, |conn| sqlx::query(sql)
            .bind(c.run_id.as_str())
            .bind(c.first_id)
            .bind(c.last_id)
            .bind(c.tenant.as_str())
            .bind(c.conversation_id)
            .bind(c.events.as_str())
            .bind(c.terminal)
            .bind(now())
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// The log holds this very chunk (same place, same events): written by an earlier try of the same save.
    /// Another end a reader wrote at the same place has other events and does not count.
    pub(crate) async fn holds_chunk(&mut self, c: &EventChunk) -> Result<bool, DbError> {
        let sql = "SELECT COUNT(*) FROM run_events WHERE run_id = $1 AND tenant_id = $2 AND first_id = $3 \
                   AND last_id = $4 AND terminal = $5 AND events = $6";
        let n: i64 = with_tx!(self, |conn| sqlx::query_scalar(sql)
            .bind(c.run_id.as_str())
            .bind(c.tenant.as_str())
            .bind(c.first_id)
            .bind(c.last_id)
            .bind(c.terminal)
            .bind(c.events.as_str())
            .fetch_one(conn)
            .await)?;
        Ok(n > 0)
    }
}

impl Scoped<'_> {
    /// The run's chunks holding events after `after`, in order: the first [`CHUNKS_PER_READ`] of them.
    pub async fn run_chunks_after(&self, run: &str, after: i64) -> Result<Vec<StoredChunk>, DbError> {
        let sql = concat!(
            "SELECT first_id, last_id, events, terminal FROM run_events \
             WHERE run_id = $1 AND tenant_id = $2 AND last_id > $3 AND first_id >= ",
            from_chunk!("$3"),
            " ORDER BY first_id LIMIT $4"
        );
        Ok(with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(run)
            .bind(self.t())
            .bind(after)
            .bind(CHUNKS_PER_READ as i64)
            .fetch_all(p)
            .await)?)
    }

    /// The run as the database knows it; `None` when this tenant has no such run (not written, not leased).
    pub async fn run_state(&self, run: &str, lease: Duration) -> Result<Option<RunState>, DbError> {
        let sql = concat!(
            "SELECT l.conversation_id, l.last_id, l.terminal, c.id, c.fresh ",
            run_state_from!()
        );
        let row: StateRow = with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(run)
            .bind(self.t())
            .bind(now() - lease)
            .fetch_one(p)
            .await)?;
        Ok(state_of(row))
    }

    /// [`Self::run_state`] and the run's chunks holding events after `after`, in order (the first
    /// [`CHUNKS_PER_READ`]), in one statement (one snapshot): what a resuming reader needs first.
    pub async fn run_resume(
        &self,
        run: &str,
        after: i64,
        lease: Duration,
    ) -> Result<Option<(RunState, Vec<StoredChunk>)>, DbError> {
        let sql = concat!(
            "SELECT l.conversation_id, l.last_id, l.terminal, c.id, c.fresh, \
             e.first_id, e.last_id, e.events, e.terminal ",
            run_state_from!(),
            " LEFT JOIN (SELECT first_id, last_id, events, terminal FROM run_events \
             WHERE run_id = $1 AND tenant_id = $2 AND last_id > $4 AND first_id >= ",
            from_chunk!("$4"),
            " ORDER BY first_id LIMIT $5) AS e ON TRUE \
             ORDER BY e.first_id"
        );
        type Row = (
            Option<Uuid>,
            Option<i64>,
            Option<i32>,
            Option<Uuid>,
            Option<bool>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<bool>,
        );
        let rows: Vec<Row> = with_pool!(self.db, |p| sqlx::query_as(sql)
            .bind(run)
            .bind(self.t())
            .bind(now() - lease)
            .bind(after)
            .bind(CHUNKS_PER_READ as i64)
            .fetch_all(p)
            .await)?;
        let Some(state) = rows.first().and_then(|r| state_of((r.0, r.1, r.2, r.3, r.4))) else {
            return Ok(None);
        };
        let chunks = rows
            .into_iter()
            .filter_map(|r| {
                Some(StoredChunk {
                    first_id: r.5?,
                    last_id: r.6?,
                    events: r.7?,
                    terminal: r.8?,
                })
            })
            .collect();
        Ok(Some((state, chunks)))
    }

    /// Ends a run whose holder died: writes `chunk` (its terminal event, ids after the last written) unless the
    /// run is live again, finished meanwhile, or someone else ended it. `true` when this call wrote it.
    pub async fn end_dead_run(&self, chunk: &EventChunk, lease: Duration) -> Result<bool, DbError> {
        let sql = "INSERT INTO run_events (run_id, first_id, last_id, tenant_id, conversation_id, events, terminal, created_at) \
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM conversations \
                   WHERE tenant_id = $4 AND active_run_id = $1 AND active_run_at >= $9) ON CONFLICT DO NOTHING";
        let n = with_pool!(self.db, |p| sqlx::query(sql)
            .bind(chunk.run_id.as_str())
            .bind(chunk.first_id)
            .bind(chunk.last_id)
            .bind(self.t())
            .bind(chunk.conversation_id)
            .bind(chunk.events.as_str())
            .bind(true)
            .bind(now())
            .bind(now() - lease)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}
