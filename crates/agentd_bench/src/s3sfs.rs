//! s3s-fs, the second S3 stand-in of `bench-images` (a small Rust S3 server over a directory that checks
//! SigV4 signatures). No registry ships its binary, so the bench installs it once into a cache directory it
//! manages — `cargo install s3s-fs@0.14.1 --features binary --locked --root <cache>/s3s-fs-0.14.1` (≈ 3.5 min
//! on 2 cores; 0.14.1 because later versions need a newer rustc) — and reuses it afterwards. The cache is
//! `$AGENTD_BENCH_CACHE`, else `$XDG_CACHE_HOME/agentd`, else `~/.cache/agentd`; `S3S_FS_BIN` names an
//! existing binary instead.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub const VERSION: &str = "0.14.1";

/// The cache directory of the bench's tools.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("AGENTD_BENCH_CACHE") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(d).join("agentd"));
    }
    let home =
        std::env::var_os("HOME").context("neither AGENTD_BENCH_CACHE, XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/agentd"))
}

/// The s3s-fs binary: `S3S_FS_BIN`, or the cached one, installed first when missing (at most `within`).
pub fn binary(within: Duration, progress: &dyn Fn(&str)) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = cache_dir()?.join(format!("s3s-fs-{VERSION}"));
    let bin = root.join("bin/s3s-fs");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&root)?;
    let log_path = root.join("install.log");
    progress(&format!(
        "installing s3s-fs {VERSION} into {} (once; ≈ 3.5 min on 2 cores; log: {})",
        root.display(),
        log_path.display()
    ));
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            &format!("s3s-fs@{VERSION}"),
            "--features",
            "binary",
            "--locked",
            "--root",
        ])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot run cargo install")?;
    let tail = || {
        let t = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    match crate::s3::wait_bounded(child, within)? {
        Some(true) if bin.is_file() => Ok(bin),
        Some(_) => bail!("cargo install s3s-fs@{VERSION} failed:\n{}", tail()),
        None => bail!(
            "cargo install s3s-fs@{VERSION} took over {} s (raise --s3-install-secs):\n{}",
            within.as_secs(),
            tail()
        ),
    }
}

/// A running s3s-fs over a temporary directory; killed on drop.
pub struct S3sFs {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl S3sFs {
    /// Starts `bin` on a free loopback port and waits (at most 10 s) until it answers.
    pub fn start(bin: &std::path::Path, access_key: &str, secret_key: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("bench-images-s3s-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("s3s-fs.log"))?;
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", access_key, "--secret-key", secret_key])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut me = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(status) = me.child.try_wait()? {
                bail!("s3s-fs exited at startup ({status})");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(me);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("s3s-fs did not listen on port {port} within 10 s")
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
