//! What agentd's PostgreSQL database did during a stretch of turns, read by the bench over its own
//! connection: statements from `pg_stat_statements` (calls per normalised query, counted at once), committed
//! and rolled-back transactions from `pg_stat_database` (which a backend flushes lazily: PostgreSQL 15 sends an
//! idle backend's counters within 10 s, hence [`settle`]), and the CPU time of the whole cluster from `/proc`
//! when the server runs on this machine (its postmaster is the parent of our backend).
//!
//! The bench's own queries never count: statements are filtered by database and by not touching `pg_stat_*`;
//! when our connection is in a watched database, our own transactions (one per query) are subtracted.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::Connection as _;
use tokio::sync::Mutex;

use crate::procfs;

/// How long to wait for every backend's pending transaction counters to reach `pg_stat_database`.
pub const SETTLE: Duration = Duration::from_millis(11_000);

/// A connection that reads the statistics views.
pub struct PgStats {
    conn: Mutex<(sqlx::PgConnection, u64)>,
    own_db: String,
    /// The postmaster, when it runs on this machine.
    pub postmaster: Option<u32>,
    /// Why statements cannot be counted (no `pg_stat_statements`), when they cannot.
    pub statements_unavailable: Option<String>,
}

/// Counters at one moment, per watched database.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    xacts: HashMap<String, i64>,
    /// (database, queryid) → (calls, query text).
    statements: HashMap<(String, i64), (i64, String)>,
    /// Queries the bench had run on its connection before this snapshot.
    own_queries: u64,
}

/// What one database did between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct SqlDelta {
    /// Committed + rolled-back transactions (the bench's own subtracted).
    pub xacts: i64,
    /// Statement counts; `None` without `pg_stat_statements`.
    pub statements: Option<Statements>,
}

/// Statement calls between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Statements {
    /// Every call except BEGIN / START TRANSACTION / COMMIT / END / ROLLBACK.
    pub work: i64,
    /// Of `work`: the run event log's own statements ([`is_run_log`]; counted apart by issue 7).
    pub run_events: i64,
    /// Of `run_events`: those that commit by themselves (all but the few a turn's or a delete's transaction
    /// runs: [`in_transaction`]).
    pub run_log_writes: i64,
    /// Of `work`: the auth extractor's tenant status reads (a cache refill, once per tenant per
    /// `TENANT_CACHE_SECONDS` and replica; autocommitted).
    pub tenant_reads: i64,
    pub begins: i64,
    pub commits: i64,
    pub rollbacks: i64,
    /// The statements of `work`, most calls first: (calls, query text on one line).
    pub top: Vec<(i64, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Begin,
    Commit,
    Rollback,
    Work,
}

fn kind(query: &str) -> Kind {
    let first = query
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "BEGIN" | "START" => Kind::Begin,
        "COMMIT" | "END" => Kind::Commit,
        "ROLLBACK" | "ABORT" => Kind::Rollback,
        _ => Kind::Work,
    }
}

/// The run log's own statements: its writes, reads (a resuming reader's look at the run and its lease among
/// them: one statement that reads `run_events`) and announcements of chunks written elsewhere — not a turn's
/// statement that also writes its terminal chunk (that one inserts its message too).
fn is_run_log(query: &str) -> bool {
    (query.contains("run_events") || query.contains("pg_notify")) && !query.contains("INTO messages")
}

/// The run log's statements that run inside another transaction (`agentd_db`: `TurnTx::append_chunk` and
/// `holds_chunk`, a turn's or a conversation's `DELETE FROM run_events`); every other one commits by itself.
fn in_transaction(query: &str) -> bool {
    let q = query.trim_start();
    (q.starts_with("INSERT INTO run_events (") && q.contains(") VALUES ($1"))
        || q.starts_with("SELECT COUNT(*) FROM run_events")
        || q.starts_with("DELETE FROM run_events WHERE tenant_id")
}

/// The auth cache's tenant status read (`agentd_db::tenants`).
fn is_tenant_read(query: &str) -> bool {
    query.trim_start().starts_with("SELECT status FROM tenants")
}

impl PgStats {
    /// Connects with `url` and finds out what can be read.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .context("the bench cannot connect to PostgreSQL to read its statistics")?;
        let (pid, db): (i32, String) = sqlx::query_as("SELECT pg_backend_pid(), current_database()::text")
            .fetch_one(&mut c)
            .await?;
        let postmaster = u32::try_from(pid).ok().and_then(procfs::ppid);
        let statements_unavailable = match sqlx::query("SELECT count(*) FROM pg_stat_statements")
            .execute(&mut c)
            .await
        {
            Ok(_) => None,
            Err(e) => Some(crate::turns::clip(&e.to_string(), 160)),
        };
        Ok(Self {
            conn: Mutex::new((c, 2)),
            own_db: db,
            postmaster,
            statements_unavailable,
        })
    }

    /// CPU time of the whole cluster so far (`None` when it does not run on this machine).
    pub fn cpu(&self) -> Option<Duration> {
        self.postmaster.and_then(procfs::tree_cpu)
    }

    /// The on-disk size of database `db` (`pg_database_size`), in bytes.
    pub async fn db_size(&self, db: &str) -> Option<u64> {
        let mut guard = self.conn.lock().await;
        let (c, own) = &mut *guard;
        *own += 1;
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)")
            .bind(db)
            .fetch_one(&mut *c)
            .await
            .ok()?;
        u64::try_from(size).ok()
    }

    /// The counters of databases `dbs` now.
    pub async fn snapshot(&self, dbs: &[String]) -> Result<Snapshot> {
        let mut guard = self.conn.lock().await;
        let (c, own) = &mut *guard;
        let mut snap = Snapshot {
            own_queries: *own,
            ..Snapshot::default()
        };
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT datname::text, (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
             WHERE datname = ANY($1)",
        )
        .bind(dbs)
        .fetch_all(&mut *c)
        .await
        .context("reading pg_stat_database")?;
        *own += 1;
        snap.xacts = rows.into_iter().collect();
        if self.statements_unavailable.is_none() {
            let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
                "SELECT d.datname::text, coalesce(s.queryid, 0), sum(s.calls)::bigint, min(s.query) \
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = ANY($1) AND s.query NOT LIKE '%pg\\_stat\\_%' GROUP BY 1, 2",
            )
            .bind(dbs)
            .fetch_all(&mut *c)
            .await
            .context("reading pg_stat_statements")?;
            *own += 1;
            snap.statements = rows
                .into_iter()
                .map(|(db, id, calls, q)| ((db, id), (calls, q)))
                .collect();
        }
        Ok(snap)
    }

    /// What database `db` did from `a` to `b`.
    pub fn delta(&self, a: &Snapshot, b: &Snapshot, db: &str) -> SqlDelta {
        let x = |s: &Snapshot| s.xacts.get(db).copied().unwrap_or(0);
        let mut xacts = x(b) - x(a);
        if db == self.own_db {
            // Our queries from `a` (included: flushed later) to `b` (excluded: still pending).
            xacts -= i64::try_from(b.own_queries - a.own_queries).unwrap_or(0);
        }
        let statements = self.statements_unavailable.is_none().then(|| {
            let mut s = Statements::default();
            for ((d, id), (calls, q)) in &b.statements {
                if d != db {
                    continue;
                }
                let before = a.statements.get(&(d.clone(), *id)).map_or(0, |v| v.0);
                let n = calls - before;
                if n <= 0 {
                    continue;
                }
                match kind(q) {
                    Kind::Begin => s.begins += n,
                    Kind::Commit => s.commits += n,
                    Kind::Rollback => s.rollbacks += n,
                    Kind::Work => {
                        s.work += n;
                        if is_run_log(q) {
                            s.run_events += n;
                            if !in_transaction(q) {
                                s.run_log_writes += n;
                            }
                        } else if is_tenant_read(q) {
                            s.tenant_reads += n;
                        }
                        s.top
                            .push((n, q.split_whitespace().collect::<Vec<_>>().join(" ")));
                    }
                }
            }
            s.top.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            s
        });
        SqlDelta { xacts, statements }
    }
}

/// Waits until every backend has had the time to flush its transaction counters (see [`SETTLE`]).
pub async fn settle() {
    tokio::time::sleep(SETTLE).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_control_is_told_apart() {
        assert_eq!(kind("BEGIN"), Kind::Begin);
        assert_eq!(
            kind("  start transaction isolation level serializable"),
            Kind::Begin
        );
        assert_eq!(kind("COMMIT"), Kind::Commit);
        assert_eq!(kind("rollback"), Kind::Rollback);
        assert_eq!(kind("INSERT INTO run_events VALUES ($1)"), Kind::Work);
        assert_eq!(kind("WITH x AS (SELECT 1) SELECT * FROM x"), Kind::Work);
    }

    #[test]
    fn the_run_log_is_told_apart_from_a_turn_that_writes_its_end() {
        assert!(is_run_log(
            "WITH v (run_id, first_id) AS (VALUES ($1, $2)), ins AS (INSERT INTO run_events …"
        ));
        assert!(is_run_log(
            "SELECT pg_notify($2, p)::text FROM unnest($1::text[]) AS p"
        ));
        assert!(is_run_log(
            "SELECT first_id, last_id, events, terminal FROM run_events WHERE run_id = $1"
        ));
        assert!(!is_run_log(
            "WITH m AS (INSERT INTO messages (id) VALUES ($1)), e AS (INSERT INTO run_events (run_id) …"
        ));
        assert!(!is_run_log("SELECT o_outcome FROM agentd_open_turn($1)"));
        assert!(!in_transaction(
            "WITH v (run_id) AS (VALUES ($1)), ins AS (INSERT INTO run_events …"
        ));
        assert!(in_transaction(
            "INSERT INTO run_events (run_id, terminal) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        ));
        assert!(!in_transaction(
            "INSERT INTO run_events (run_id, terminal) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1)"
        ));
        // A reader's look at the run: the log and the lease that holds it, in one statement.
        assert!(is_run_log(
            "SELECT l.conversation_id, l.last_id, l.terminal, c.id, c.fresh FROM (SELECT 1 AS one) AS o \
             LEFT JOIN (SELECT conversation_id, MAX(last_id) AS last_id FROM run_events …"
        ));
        assert!(is_tenant_read("SELECT status FROM tenants WHERE id = $1"));
    }
}
