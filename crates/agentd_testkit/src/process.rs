//! The real `agentd` binary as a child process, for tests that need what only a process has: its own memory
//! (RSS), its logs, signals (`kill -9`, SIGTERM), restarts, and several replicas over one database.
//!
//! [`ServerProcess::start`] runs the binary in a clean environment (only what [`ServerOptions`] gives, plus
//! `PATH`) in a working directory (by default a fresh temporary one holding a copy of the repo's
//! `config/agents`), bound to `127.0.0.1:0` unless `BIND_ADDR` is given. The real address is read from the
//! server's own `listening` log line (text or JSON), so no port is guessed; then `/healthz` must answer.
//! stdout and stderr go to one log file that [`ServerProcess::logs`] reads back as lines. The process is
//! killed (SIGKILL) when the value is dropped.

use agentd_auth::{AuthSettings, Authenticator, ScopeSet, TenantId};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How to run the binary.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The `agentd` binary: `env!("CARGO_BIN_EXE_agentd")` in tests of the `agentd` crate.
    pub binary: PathBuf,
    /// The whole environment of the process besides `PATH`.
    pub env: Vec<(String, String)>,
    /// Arguments (`serve` when empty: the binary's default command).
    pub args: Vec<String>,
    /// Working directory; `None`: a fresh temporary directory with `config/agents` copied from the repo.
    pub dir: Option<PathBuf>,
    /// How long the server may take to log `listening` and answer `/healthz`.
    pub ready_timeout: Duration,
}

impl ServerOptions {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            env: Vec::new(),
            args: Vec::new(),
            dir: None,
            ready_timeout: Duration::from_secs(60),
        }
    }

    /// Sets (or replaces) one variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// Removes a variable set earlier.
    pub fn without(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// `DATABASE_URL` (e.g. a [`crate::fresh_postgres`] database shared by several replicas).
    pub fn database(self, url: &str) -> Self {
        self.env("DATABASE_URL", url)
    }

    /// The S3 stand-in started by `scripts/test-services.sh` (`AGENTD_TEST_S3_ENDPOINT`), as the `minio`
    /// provider with its own `bucket` (created at startup).
    pub fn s3_stand_in(self, bucket: &str) -> Self {
        let endpoint = std::env::var("AGENTD_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
            panic!(
                "AGENTD_TEST_S3_ENDPOINT is not set: run `eval \"$(scripts/test-services.sh start)\"` first"
            )
        });
        let key = |var: &str| std::env::var(var).unwrap_or_else(|_| "minioadmin".into());
        self.env("STORAGE_PROVIDER", "minio")
            .env("MINIO_ENDPOINT", endpoint)
            .env("MINIO_ACCESS_KEY", key("AGENTD_TEST_S3_ACCESS_KEY"))
            .env("MINIO_SECRET_KEY", key("AGENTD_TEST_S3_SECRET_KEY"))
            .env("MINIO_BUCKET", bucket)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

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

/// A running `agentd`; SIGKILLed on drop.
pub struct ServerProcess {
    opts: ServerOptions,
    dir: PathBuf,
    log_path: PathBuf,
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
        let mut p = Self {
            opts,
            dir,
            log_path,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: reqwest::Client::new(),
            _work: work,
            _logs: logs,
        };
        p.addr = p.wait_ready(0).await?;
        Ok(p)
    }

    /// Kills the process if it still runs (SIGKILL), then starts it again: same directory, same environment,
    /// same log file (appended), a new address. For crash/restart tests.
    pub async fn restart(&mut self) {
        self.kill9();
        let _ = self.child.wait();
        let offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
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

    /// Waits until a log line contains `needle`; that line, or `None` after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.logs().into_iter().find(|l| l.contains(needle)) {
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
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path} (has agentd exited?): {e}"));
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
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
            TenantId::parse(tenant).unwrap_or_else(|| panic!("tenant {tenant:?}: {}", TenantId::RULE));
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

/// A fresh temporary directory holding a copy of the repo's `config/agents` (the shipped agents).
pub fn agent_workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary working directory");
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/agents");
    let target = dir.path().join("config/agents");
    std::fs::create_dir_all(&target).expect("create config/agents");
    for f in std::fs::read_dir(&agents).unwrap_or_else(|e| panic!("{}: {e}", agents.display())) {
        let f = f.expect("a directory entry").path();
        if let Some(name) = f.file_name() {
            std::fs::copy(&f, target.join(name)).expect("copy an agent file");
        }
    }
    dir
}

fn spawn(opts: &ServerOptions, dir: &Path, log_path: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open the log file");
    let err = log.try_clone().expect("clone the log file handle");
    let mut cmd = Command::new(&opts.binary);
    cmd.current_dir(dir)
        .args(&opts.args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err));
    if opts.get("BIND_ADDR").is_none() {
        cmd.env("BIND_ADDR", "127.0.0.1:0");
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", opts.binary.display()))
}

/// The address of a `listening` log line, text (`… listening addr=127.0.0.1:PORT`) or JSON.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if line.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let message = v.get("message").or_else(|| v.pointer("/fields/message"))?;
        if message != "listening" {
            return None;
        }
        let addr = v.get("addr").or_else(|| v.pointer("/fields/addr"))?;
        return addr.as_str()?.parse().ok();
    }
    let mut words = line.split_whitespace();
    words.find(|w| *w == "listening")?;
    words.find_map(|w| w.strip_prefix("addr=")?.parse().ok())
}

/// Removes ANSI escape sequences (`ESC [ … final-byte`), which the text log format uses for colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_in_text_and_json_lines() {
        let text = "2026-01-01T00:00:00.000000Z \u{1b}[32m INFO\u{1b}[0m listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4321";
        assert_eq!(
            listening_addr(&strip_ansi(text)),
            Some(SocketAddr::from(([127, 0, 0, 1], 4321)))
        );
        let json = r#"{"timestamp":"x","level":"INFO","message":"listening","addr":"127.0.0.1:99"}"#;
        assert_eq!(listening_addr(json), Some(SocketAddr::from(([127, 0, 0, 1], 99))));
        assert_eq!(listening_addr("INFO starting agentd addr=127.0.0.1:1"), None);
    }
}
