//! What every benchmark sets up the same way: the repository root and the agentd release binary, the fake
//! Responses API on a runtime of its own (so the clients' work does not delay its event schedule), the HTTP
//! client, and agentd instances started as child processes on a database of the run. A multi-replica bench
//! starts several instances on the same [`InstanceDb`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use anyhow::{Context, Result};

use crate::agentd::{Agentd, Launch, Tap};
use crate::db::InstanceDb;

/// `--repo-root`, else the workspace this crate was built in.
pub fn repo_root(arg: Option<&Path>) -> Result<PathBuf> {
    let p = match arg {
        Some(p) => p.to_owned(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    p.canonicalize().context("repository root not found")
}

/// `--agentd-bin`, else `<repo>/target/release/agentd`.
pub fn agentd_binary(arg: Option<&Path>, repo_root: &Path) -> PathBuf {
    arg.map_or_else(|| repo_root.join("target/release/agentd"), Path::to_owned)
}

/// The binary's path and age, for the report header.
pub fn describe_binary(binary: &Path) -> String {
    let mut s = binary.display().to_string();
    if let Ok(Ok(age)) = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .map(|m| m.elapsed())
    {
        s.push_str(&format!(
            " (built {} min before the end of this run)",
            age.as_secs() / 60
        ));
    }
    s
}

/// The 1-minute load average (`/proc/loadavg`): other work on the machine, printed with the figures.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// "cores N; 1-min load average at start / end: a / b", for the report header.
pub fn machine_line(start: Option<f64>) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    format!(
        "{cores} cores; 1-min load average at start / end: {} / {}",
        f(start),
        f(loadavg())
    )
}

/// The fake upstream on its own runtime; stopped on drop.
pub struct Fake {
    fake: Option<FakeUpstream>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Fake {
    /// Starts the fake with `event_delay` between every two events of every stream, writing its bodies in
    /// writes of the fake's default size (1,460 bytes, one TCP segment: what catches a parser that is
    /// quadratic in a line's reads).
    pub fn start(event_delay: Duration) -> Result<Self> {
        Self::start_writing(event_delay, FakeConfig::default().chunk_size)
    }

    /// [`Fake::start`] with `write_bytes` per body write.
    pub fn start_writing(event_delay: Duration, write_bytes: usize) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .thread_name("fake-upstream")
            .enable_all()
            .build()?;
        let fake = rt
            .block_on(FakeUpstream::start(FakeConfig {
                event_delay,
                chunk_size: write_bytes,
                ..FakeConfig::default()
            }))
            .context("cannot start the fake upstream")?;
        Ok(Self {
            fake: Some(fake),
            rt: Some(rt),
        })
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        self.fake.as_ref().map(FakeUpstream::base_url).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        self.fake
            .as_ref()
            .map(|f| format!("http://{}", f.addr()))
            .unwrap_or_default()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        drop(self.fake.take());
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The benchmark's HTTP client: enough idle connections per host for `clients`.
pub fn client(clients: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(clients + 8)
        .connect_timeout(Duration::from_secs(5))
        .build()?)
}

/// How to start one agentd instance.
pub struct Instance<'a> {
    pub binary: &'a Path,
    pub repo_root: &'a Path,
    pub upstream_base_url: &'a str,
    pub jwt_secret: &'a str,
    pub db: &'a InstanceDb,
    /// Where its log goes.
    pub log_path: PathBuf,
    pub extra_env: Vec<(&'a str, String)>,
    pub stdout_tap: Option<Tap>,
}

impl Instance<'_> {
    /// Starts it and waits for `/readyz` (at most `ready_within`).
    pub async fn start(&self, ready_within: Duration) -> Result<Agentd> {
        let launch = Launch {
            binary: self.binary,
            repo_root: self.repo_root,
            upstream_base_url: self.upstream_base_url,
            jwt_secret: self.jwt_secret,
            database_url: &self.db.url,
            log_path: &self.log_path,
            extra_env: &self.extra_env,
            stdout_tap: self.stdout_tap.clone(),
        };
        Agentd::start(&launch, ready_within).await
    }
}
