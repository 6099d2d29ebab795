//! Connecting to PostgreSQL or SQLite from `DATABASE_URL`, running the embedded migrations, readiness.

use crate::{DbError, Scoped, with_pool};
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

static PG_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// `DATABASE_URL`, `AUTO_MIGRATE` and the pool size.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DbSettings {
    /// `postgres://…` or `sqlite://path?mode=rwc`.
    pub url: String,
    /// `AUTO_MIGRATE`; unset means "yes for SQLite, no for PostgreSQL".
    pub auto_migrate: Option<bool>,
    pub max_connections: u32,
    pub acquire_timeout_seconds: u64,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://var/agentd.sqlite".into(),
            auto_migrate: None,
            max_connections: 16,
            acquire_timeout_seconds: 5,
        }
    }
}

impl DbSettings {
    /// The URL with any password replaced, for logs and `agentd config`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSettings")
            .field("url", &self.redacted_url())
            .field("auto_migrate", &self.auto_migrate)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Replaces every password in a database URL with `***`: the userinfo's (`scheme://user:password@host/…`, the
/// password may itself hold `@`, `/`, `?` or `#`: userinfo ends at the last `@` before the query, or at the
/// last `@` at all) and the `password=` / `sslpassword=` query parameters. When unsure it redacts more.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let before_query = rest.find(['?', '#']).map_or(rest, |i| &rest[..i]);
    let at = before_query.rfind('@').or_else(|| rest.rfind('@'));
    let mut out = String::with_capacity(url.len());
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    let tail = match at {
        Some(i) => {
            let userinfo = &rest[..i];
            match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***@")),
                None => out.push_str(&rest[..=i]),
            }
            &rest[i + 1..]
        }
        None => rest,
    };
    let Some((head, query)) = tail.split_once('?') else {
        out.push_str(tail);
        return out;
    };
    out.push_str(head);
    out.push('?');
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if ["password", "sslpassword"].contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}=***")
            }
            _ => p.to_owned(),
        })
        .collect();
    out.push_str(&params.join("&"));
    out
}

/// The connection pool of whichever database `DATABASE_URL` names.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    /// Connects (lazily for PostgreSQL: the first query opens the first connection).
    pub async fn connect(s: &DbSettings) -> Result<Self, DbError> {
        let acquire = Duration::from_secs(s.acquire_timeout_seconds.max(1));
        if s.url.starts_with("postgres://") || s.url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(&s.url)
                .map_err(|e| DbError::Config(format!("DATABASE_URL={}: {e}", redact_url(&s.url))))?;
            let pool = PgPoolOptions::new()
                .max_connections(s.max_connections.max(1))
                .acquire_timeout(acquire)
                .connect_lazy_with(opts);
            Ok(Db::Postgres(pool))
        } else if s.url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(&s.url)
                .map_err(|e| DbError::Config(format!("DATABASE_URL={}: {e}", s.url)))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL: a commit is one write to the log, fsynced at checkpoints; durable against a
                // crash of the process, not of the machine — the zero-config database's trade-off.
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            if let Some(dir) = opts.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DbError::Config(format!("cannot create {} for SQLite: {e}", dir.display()))
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(s.max_connections.clamp(1, 8))
                .acquire_timeout(acquire)
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool))
        } else {
            Err(DbError::Config(format!(
                "DATABASE_URL={} is not allowed: use postgres://user:password@host/db or sqlite://path",
                redact_url(&s.url)
            )))
        }
    }

    /// "postgres" or "sqlite".
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self {
            Db::Postgres(_) => &PG_MIGRATOR,
            Db::Sqlite(_) => &SQLITE_MIGRATOR,
        }
    }

    /// Applies every pending migration (safe to run concurrently: PostgreSQL takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), DbError> {
        with_pool!(self, |p| self.migrator().run(p).await?);
        Ok(())
    }

    /// How many embedded migrations the database has not applied yet.
    pub async fn pending_migrations(&self) -> Result<usize, DbError> {
        let sql = "SELECT version FROM _sqlx_migrations WHERE success";
        let applied: Vec<i64> = match with_pool!(self, |p| sqlx::query_scalar(sql).fetch_all(p).await) {
            Ok(v) => v,
            Err(e) if DbError::is_missing_table(&e) => Vec::new(), // no migrations table yet
            Err(e) => return Err(e.into()),
        };
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count())
    }

    /// Migrates when `auto_migrate` (default: SQLite only) says so, else refuses to run on a stale schema.
    pub async fn prepare(&self, settings: &DbSettings) -> Result<(), DbError> {
        if settings.auto_migrate.unwrap_or(matches!(self, Db::Sqlite(_))) {
            return self.migrate().await;
        }
        match self.pending_migrations().await? {
            0 => Ok(()),
            pending => Err(DbError::SchemaBehind { pending }),
        }
    }

    /// Readiness: one round trip.
    pub async fn ping(&self) -> Result<(), DbError> {
        with_pool!(self, |p| sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// The handle on one tenant's data.
    pub fn scoped<'a>(&'a self, tenant: &'a crate::TenantId) -> Scoped<'a> {
        Scoped { db: self, tenant }
    }

    /// The pool now: connections open, and how many of them are idle (for the metrics).
    pub fn pool_connections(&self) -> (u32, usize) {
        with_pool!(self, |p| (p.size(), p.num_idle()))
    }

    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await);
    }
}
