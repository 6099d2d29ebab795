//! The real `agentd` binary as a child process, for tests that need what only a process has: its own memory
//! (RSS), its logs, signals (`kill -9`, SIGTERM), restarts, and several replicas over one database.
//!
//! [`ServerProcess::start`] runs the binary in a clean environment (only what [`ServerOptions`] gives, plus
//! `PATH`) in a working directory (by default a fresh temporary one holding a copy of the repo's
//! `config/agents`), bound to `127.0.0.1:0` unless `BIND_ADDR` is given. The real address is read from the
//! server's own `listening` log line (text or JSON), so no port is guessed; then `/healthz` must answer. A
//! `LOG_LEVEL`/`RUST_LOG` given in the options gets `,agentd::serve=info` appended so that line still shows.
//! Metrics are off (`METRICS_ADDR` empty) unless the options set it, e.g. to `127.0.0.1:0`; then
//! [`ServerProcess::metrics_url`] points at the listener the server announced.
//! stdout and stderr go to one log file that [`ServerProcess::logs`] reads back as lines. The process is
//! killed (SIGKILL) when the value is dropped.

mod log;
mod options;

pub use options::{ServerOptions, agent_workdir};

use agentd_auth::{AuthSettings, Authenticator, ScopeSet, TenantId};
use log::{listening_addr, metrics_addr, strip_ansi};
use options::spawn;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Why [`ServerProcess::try_start`] gave up.
#[derive(Debug)]
pub struct StartFailure {
    /// `Some` when the process exited on its own (e.g. a refused configuration).
    pub exit: Option<ExitStatus>,
    pub reason: String,
    /// Everything the process wrote.
    pub log: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "agentd did not come up: {}\n--- its log ---\n{}",
            self.reason, self.log
        )
    }
}

/// An `agentd` spawned by [`ServerProcess::spawn`] that may not listen yet; SIGKILLed on drop.
pub struct Starting(ServerProcess);

impl Starting {
    /// Waits until a line of its log contains `needle`; that line, or `None` after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.0.wait_for_log(needle, timeout).await
    }

    /// Waits until it listens and answers `/healthz`, as [`ServerProcess::try_start`] does.
    pub async fn ready(mut self) -> Result<ServerProcess, StartFailure> {
        self.0.addr = self.0.wait_ready(0).await?;
        Ok(self.0)
    }
}

/// A running `agentd`; SIGKILLed on drop.
pub struct ServerProcess {
    opts: ServerOptions,
    dir: PathBuf,
    log_path: PathBuf,
    /// Where the current incarnation's lines start in the log file.
    log_offset: u64,
    child: Child,
    addr: SocketAddr,
    http: reqwest::Client,
    _work: Option<tempfile::TempDir>,
    _logs: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary and waits until it answers `/healthz`; panics with its log when it does not.
    pub async fn start(opts: ServerOptions) -> Self {
        match Self::try_start(opts).await {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`ServerProcess::start`], but hands back the failure (exit status and log) instead of panicking.
    pub async fn try_start(opts: ServerOptions) -> Result<Self, StartFailure> {
        Self::spawn(opts).ready().await
    }

    /// Starts the binary without waiting for it, for a test that acts while it comes up (on its log lines).
    pub fn spawn(opts: ServerOptions) -> Starting {
        let (work, dir) = match &opts.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = agent_workdir();
                let d = t.path().to_owned();
                (Some(t), d)
            }
        };
        let logs = tempfile::tempdir().expect("a temporary directory for the log");
        let log_path = logs.path().join("agentd.log");
        let child = spawn(&opts, &dir, &log_path);
        Starting(Self {
            opts,
            dir,
            log_path,
            log_offset: 0,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: reqwest::Client::new(),
            _work: work,
            _logs: logs,
        })
    }

    /// Kills the process if it still runs (SIGKILL), then starts it again: same directory, same environment
    /// (unless changed through [`ServerProcess::options_mut`]), same log file (appended), a new address. For
    /// crash/restart tests.
    pub async fn restart(&mut self) {
        self.kill9();
        let _ = self.child.wait();
        let offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        self.log_offset = offset;
        self.child = spawn(&self.opts, &self.dir, &self.log_path);
        match self.wait_ready(offset).await {
            Ok(addr) => self.addr = addr,
            Err(e) => panic!("after restart: {e}"),
        }
    }

    /// Polls the log (from byte `offset`) for the address, then `/healthz`.
    async fn wait_ready(&mut self, offset: u64) -> Result<SocketAddr, StartFailure> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        let addr = loop {
            if let Some(addr) = self.log_from(offset).iter().find_map(|l| listening_addr(l)) {
                break addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(Some(status), format!("it exited ({status}) before listening")));
            }
            if Instant::now() > deadline {
                return Err(self.failure(None, "no `listening` log line in time".into()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let health = format!("http://{addr}/healthz");
        loop {
            if let Ok(r) = self.http.get(&health).send().await
                && r.status().is_success()
            {
                return Ok(addr);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(
                    Some(status),
                    format!("it exited ({status}) before /healthz answered"),
                ));
            }
            if Instant::now() > deadline {
                return Err(self.failure(None, format!("{health} did not answer 200 in time")));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn failure(&mut self, exit: Option<ExitStatus>, reason: String) -> StartFailure {
        if exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        StartFailure {
            exit,
            reason,
            log: self.logs().join("\n"),
        }
    }

    fn log_from(&self, offset: u64) -> Vec<String> {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .map(strip_ansi)
            .collect()
    }

    /// Every line the process (and its earlier incarnations) wrote to stdout and stderr, colours removed.
    pub fn logs(&self) -> Vec<String> {
        self.log_from(0)
    }

    /// The lines of the current incarnation only (since the last start or restart).
    pub fn current_logs(&self) -> Vec<String> {
        self.log_from(self.log_offset)
    }

    /// Waits until a line of the current incarnation contains `needle`; that line, or `None` after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.current_logs().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The options of the next [`ServerProcess::restart`] (e.g. a changed setting).
    pub fn options_mut(&mut self) -> &mut ServerOptions {
        &mut self.opts
    }

    /// The working directory (where `var/` is).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://METRICS_ADDR{path}` of the current incarnation, from the line announcing its metrics listener;
    /// `None` when metrics are off.
    pub fn metrics_url(&self, path: &str) -> Option<String> {
        let addr = self.current_logs().iter().find_map(|l| metrics_addr(l))?;
        Some(format!("http://{addr}{path}"))
    }

    /// A client for requests to this server.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS")
    }

    /// Peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kb(&self) -> u64 {
        self.status_kb("VmHWM")
    }

    fn status_kb(&self, field: &str) -> u64 {
        self.proc_field("status", field)
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status (has agentd exited?)", self.pid()))
    }

    /// The value of the `name:  value` line of `/proc/<pid>/<file>` (e.g. `status`, `smaps_rollup`), trimmed;
    /// `None` when the file or the line is missing (older kernels lack some).
    pub fn proc_field(&self, file: &str, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{}/{file}", self.pid())).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    }

    /// `true` while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a crash would; the exit is reaped by the next wait.
    pub fn kill9(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
    }

    /// SIGTERM, as an orchestrator stopping a deploy would (`kill -TERM`).
    pub fn sigterm(&mut self) {
        if !self.is_running() {
            return;
        }
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run `kill`");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// Waits for the process to exit: its status, or `None` when it still runs after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A bearer token (every scope, 1 h) for `tenant`/`user`, signed like this server verifies: with its
    /// `AUTH_JWT_SECRET` (and `AUTH_JWT_ISSUER`/`AUTH_JWT_AUDIENCE`), or with the development secret it made
    /// under `var/` when it has none.
    pub fn token(&self, tenant: &str, user: &str) -> String {
        self.token_with(tenant, user, None)
    }

    /// Like [`ServerProcess::token`], with chosen scopes.
    pub fn token_with(&self, tenant: &str, user: &str, scopes: Option<ScopeSet>) -> String {
        let settings = AuthSettings {
            jwt_secret: self.opts.get("AUTH_JWT_SECRET").map(str::to_owned),
            jwt_issuer: self.opts.get("AUTH_JWT_ISSUER").map(str::to_owned),
            jwt_audience: self.opts.get("AUTH_JWT_AUDIENCE").map(str::to_owned),
            jwt_public_key_path: None,
        };
        let auth = Authenticator::new(&settings, &self.dir.join("var/dev-jwt-secret"))
            .unwrap_or_else(|e| panic!("cannot sign like this server: {e}"));
        let tenant =
            TenantId::parse(tenant).unwrap_or_else(|_| panic!("tenant {tenant:?}: {}", TenantId::RULE));
        auth.mint(&tenant, user, scopes, chrono::Duration::hours(1))
            .unwrap_or_else(|e| panic!("cannot mint: {e}"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
