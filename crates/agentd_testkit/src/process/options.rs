//! How [`crate::ServerProcess`] runs the binary: [`ServerOptions`], the default working directory and the
//! spawn itself (clean environment, one log file for stdout and stderr).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
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

pub(crate) fn spawn(opts: &ServerOptions, dir: &Path, log_path: &Path) -> Child {
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
        .envs(opts.env.iter().map(|(k, v)| match k.as_str() {
            // The harness reads the address from serve's `listening` line (info).
            "LOG_LEVEL" | "RUST_LOG" => (k.clone(), format!("{v},agentd::serve=info")),
            _ => (k.clone(), v.clone()),
        }))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err));
    if opts.get("BIND_ADDR").is_none() {
        cmd.env("BIND_ADDR", "127.0.0.1:0");
    }
    // Metrics off unless a test asks (then `127.0.0.1:0`): servers of parallel tests never share a port.
    if opts.get("METRICS_ADDR").is_none() {
        cmd.env("METRICS_ADDR", "");
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", opts.binary.display()))
}
