//! Where the agentd instances of one benchmark run keep their data: a private PostgreSQL cluster (default; one
//! database per instance, and instances that should share one — replicas — are given the same URL), an
//! external PostgreSQL (`--database-url`, shared by every instance), or a SQLite file per instance. Holds the
//! statistics connection for PostgreSQL.

use anyhow::Result;

use crate::pg::{self, PgCluster};
use crate::pgstats::PgStats;

/// The database kind picked on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    /// A private PostgreSQL cluster started for the run (initdb into a temporary directory).
    Postgres,
    /// A SQLite file per agentd instance (agentd's zero-config default).
    Sqlite,
}

/// One agentd instance's database.
#[derive(Debug, Clone)]
pub struct InstanceDb {
    pub url: String,
    /// The database name for the statistics views (PostgreSQL only).
    pub pg_name: Option<String>,
}

/// The databases of a run.
pub struct Databases {
    cluster: Option<PgCluster>,
    external: Option<String>,
    tmp: tempfile::TempDir,
    /// PostgreSQL statistics (`None` on SQLite, or when they cannot be read).
    pub stats: Option<PgStats>,
    /// Why there are no statistics, when there are none.
    pub stats_error: Option<String>,
}

/// The database part of a `postgres://…/NAME?…` URL.
fn db_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let name = path.split(['?', '#']).next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

impl Databases {
    /// Starts the private cluster (PostgreSQL without `external_url`) and connects for statistics.
    pub async fn open(kind: DbKind, external_url: Option<&str>) -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("agentd-bench-db-").tempdir()?;
        let (cluster, external, stats_url) = match (kind, external_url) {
            (_, Some(url)) => (None, Some(url.to_owned()), Some(url.to_owned())),
            (DbKind::Postgres, None) => {
                let c = PgCluster::start().await?;
                let url = c.url("postgres");
                (Some(c), None, Some(url))
            }
            (DbKind::Sqlite, None) => (None, None, None),
        };
        let (stats, stats_error) = match stats_url {
            Some(u) => match PgStats::connect(&u).await {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            },
            None => (None, Some("SQLite".to_owned())),
        };
        Ok(Self {
            cluster,
            external,
            tmp,
            stats,
            stats_error,
        })
    }

    /// A database for the agentd instance `name` (letters, digits, `_`).
    pub async fn for_instance(&self, name: &str) -> Result<InstanceDb> {
        if let Some(url) = &self.external {
            return Ok(InstanceDb {
                url: url.clone(),
                pg_name: db_name(url),
            });
        }
        if let Some(c) = &self.cluster {
            let db = format!("agentd_{name}");
            return Ok(InstanceDb {
                url: c.create_db(&db).await?,
                pg_name: Some(db),
            });
        }
        Ok(InstanceDb {
            url: format!(
                "sqlite://{}",
                self.tmp.path().join(format!("{name}.sqlite")).display()
            ),
            pg_name: None,
        })
    }

    /// One line for the report header.
    pub fn describe(&self) -> String {
        match (&self.cluster, &self.external) {
            (Some(c), _) => format!(
                "PostgreSQL, private cluster ({}; {}), one database per agentd",
                c.version,
                pg::SETTINGS
            ),
            (None, Some(_)) => "PostgreSQL (--database-url)".to_owned(),
            (None, None) => "SQLite, one temporary file per agentd".to_owned(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.cluster.is_some() || self.external.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_from_url() {
        assert_eq!(db_name("postgres://u@h:5/app?x=1").as_deref(), Some("app"));
        assert_eq!(db_name("postgres://u@h:5/app").as_deref(), Some("app"));
        assert_eq!(db_name("postgres://u@h:5/"), None);
        assert_eq!(db_name("postgres://u@h:5"), None);
    }
}
