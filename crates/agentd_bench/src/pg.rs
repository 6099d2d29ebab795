//! A private PostgreSQL cluster for one benchmark run, started the way `scripts/test-services.sh` starts the
//! test server (the machine's `initdb` / `pg_ctl` into a temporary directory, run as the `postgres` user when
//! we are root, loopback only, `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`) plus
//! `shared_preload_libraries=pg_stat_statements` with `track=top`, so that every statement agentd sends is
//! counted (and not the statements the server runs for it, such as foreign-key checks). Stopped
//! (`pg_ctl stop -m fast`) and deleted on drop, error paths included.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sqlx::Connection as _;

/// The server settings of the private cluster, as printed in the reports.
pub const SETTINGS: &str =
    "fsync=off, synchronous_commit=off, full_page_writes=off, pg_stat_statements.track=top";

/// A running private cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
    /// `initdb --version`, e.g. "initdb (PostgreSQL) 15.14".
    pub version: String,
}

fn pg_bin() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.sort();
    found.push(PathBuf::from("/usr/local/bin"));
    found.push(PathBuf::from("/usr/bin"));
    found
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .context(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; `apt-get install postgresql`, \
             or pass --db sqlite",
        )
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

impl PgCluster {
    /// initdb + start on a free loopback port, then `CREATE EXTENSION pg_stat_statements` in `postgres`.
    pub async fn start() -> Result<Self> {
        let bin = pg_bin()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("agentd-bench-pg-").tempdir()?;
        if as_postgres {
            // /tmp is traversable; the directory itself must belong to the server's user.
            run(Command::new("chown").arg("postgres:postgres").arg(dir.path()))
                .context("cannot hand the cluster directory to the postgres user (does it exist?)")?;
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut me = Self {
            version: String::new(),
            dir,
            bin,
            as_postgres,
            port,
        };
        let data = me.data_dir();
        me.pg_cmd("initdb", |c| {
            c.arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
        })
        .context("initdb failed")?;
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400 \
             -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top",
            me.dir.path().display()
        );
        let log = me.dir.path().join("server.log");
        if let Err(e) = me.pg_cmd("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "30", "-o", &opts, "start"])
        }) {
            bail!(
                "pg_ctl start failed: {e:#}; server log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        me.version = Command::new(me.bin.join("initdb"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let mut c = sqlx::PgConnection::connect(&me.url("postgres")).await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut c)
            .await
            .context("CREATE EXTENSION pg_stat_statements")?;
        c.close().await?;
        Ok(me)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the server's programs (as `postgres` when we are root).
    fn pg_cmd(&self, prog: &str, args: impl FnOnce(&mut Command) -> &mut Command) -> Result<()> {
        let path = self.bin.join(prog);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        args(&mut cmd);
        run(&mut cmd)
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database for one agentd instance.
    pub async fn create_db(&self, name: &str) -> Result<String> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("database name {name:?}: use lowercase letters, digits and _");
        }
        let mut c = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        // The name was checked above: nothing in it can end the identifier.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        c.close().await?;
        Ok(self.url(name))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {} ({}): {}{}",
            cmd.get_program(),
            cmd.get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(())
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.pg_cmd("pg_ctl", |c| {
            c.arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"])
        });
    }
}
