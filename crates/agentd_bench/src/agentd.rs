//! agentd as a child process: building or locating the release binary, starting it with a clean
//! environment on a free loopback port, waiting for `/readyz`, killing it on drop (panic or error included),
//! optionally handing each line of its stdout to a tap (the log file still gets every line), and reading its
//! memory and CPU from `/proc/<pid>`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What the child needs to start.
pub struct Launch<'a> {
    pub binary: &'a Path,
    pub repo_root: &'a Path,
    pub upstream_base_url: &'a str,
    pub jwt_secret: &'a str,
    pub database_url: &'a str,
    pub log_path: &'a Path,
    /// Variables set after the defaults (so they override them), e.g. `STORAGE_PROVIDER`, `LOG_LEVEL`.
    pub extra_env: &'a [(&'a str, String)],
    /// Sees every stdout line (stdout is then piped through a reader thread into the log file).
    pub stdout_tap: Option<Tap>,
}

/// A consumer of agentd's stdout lines, called from the reader thread.
pub type Tap = Arc<dyn Fn(&str) + Send + Sync>;

/// A running agentd; killed and reaped on drop.
pub struct Agentd {
    child: Child,
    pub base_url: String,
    log_path: PathBuf,
}

impl Drop for Agentd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cargo build --release -p agentd` in the repository root.
pub fn build_release(repo_root: &Path) -> Result<()> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "agentd"])
        .current_dir(repo_root)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo build --release -p agentd` failed ({status})");
    }
    Ok(())
}

/// A free loopback port (bound then released: another process could take it in between).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

impl Agentd {
    /// Starts agentd and waits (at most `ready_within`) for `GET /readyz` = 200.
    pub async fn start(l: &Launch<'_>, ready_within: Duration) -> Result<Self> {
        if !l.binary.is_file() {
            bail!(
                "no agentd binary at {}; build it with `cargo build --release -p agentd` \
                 (or pass --build, or --agentd-bin PATH)",
                l.binary.display()
            );
        }
        let port = free_port()?;
        let bind = format!("127.0.0.1:{port}");
        let log = fs::File::create(l.log_path).context("cannot create the agentd log file")?;
        let log_err = log.try_clone()?;
        let mut cmd = Command::new(l.binary);
        cmd.env_clear()
            .current_dir(l.repo_root)
            .env("BIND_ADDR", &bind)
            .env("METRICS_ADDR", "")
            .env("OPENAI_BASE_URL", l.upstream_base_url)
            .env("OPENAI_API_KEY", "bench-key")
            .env("AUTH_JWT_SECRET", l.jwt_secret)
            .env("DATABASE_URL", l.database_url)
            .env("AUTO_MIGRATE", "true")
            .env("STORAGE_PROVIDER", "memory")
            .env("LOG_LEVEL", "warn")
            .env("CHAT_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("CHAT_STREAM_CONCURRENT_LIMIT", "100000")
            .envs(l.extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stderr(Stdio::from(log_err));
        if l.stdout_tap.is_some() {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(Stdio::from(log.try_clone()?));
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", l.binary.display()))?;
        if let (Some(tap), Some(out)) = (l.stdout_tap.clone(), child.stdout.take()) {
            std::thread::Builder::new()
                .name("agentd-stdout".to_owned())
                .spawn(move || pump(out, log, &tap))
                .context("cannot start the stdout reader thread")?;
        }
        let mut me = Self {
            child,
            base_url: format!("http://{bind}"),
            log_path: l.log_path.to_owned(),
        };
        me.wait_ready(ready_within).await?;
        Ok(me)
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/readyz", self.base_url);
        let deadline = Instant::now() + within;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "agentd exited during startup ({status}); log:\n{}",
                    self.log_tail(30)
                );
            }
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = crate::turns::chain(&e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "agentd did not become ready within {} s (last: {last}); log:\n{}",
            within.as_secs(),
            self.log_tail(30)
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `n` lines of the child's output.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Copies the child's stdout into the log file line by line, showing each line to `tap`; ends at EOF (the
/// child exited) or on a read error.
fn pump(out: std::process::ChildStdout, mut log: fs::File, tap: &Tap) {
    let mut reader = BufReader::new(out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let _ = log.write_all(&line);
                tap(String::from_utf8_lossy(&line).trim_end());
            }
        }
    }
}

/// `VmRSS` and `VmHWM` of a process, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss: u64,
    pub hwm: u64,
}

/// Reads `/proc/<pid>/status`.
pub fn mem(pid: u32) -> Option<Mem> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    Some(Mem {
        rss: kb("VmRSS:")?,
        hwm: kb("VmHWM:")?,
    })
}

/// Resets the process's `VmHWM` to its current RSS (`echo 5 > /proc/<pid>/clear_refs`); `false` when the
/// kernel refuses, in which case VmHWM stays the peak since start.
pub fn reset_hwm(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// User + system CPU time of a process (from `/proc/<pid>/stat`, USER_HZ = 100).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Size of the SQLite database files (main + WAL) behind a `sqlite://` URL.
pub fn sqlite_bytes(database_url: &str) -> Option<u64> {
    let path = database_url.strip_prefix("sqlite://")?;
    let path = path.split('?').next()?;
    let size = |p: String| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    Some(size(path.to_owned()) + size(format!("{path}-wal")))
}
