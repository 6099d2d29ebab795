//! The S3 stand-ins for `bench-images`. SeaweedFS: the endpoint in `AGENTD_TEST_S3_ENDPOINT` when set, else
//! started with `scripts/storage-services.sh start <tmpdir>` (which installs it from PyPI on first use and
//! writes `<tmpdir>/storage.env`) and stopped with `… stop <tmpdir>` on drop, error paths included. s3s-fs:
//! see [`crate::s3sfs`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Credentials the storage script configures (and that agentd gets as `MINIO_*`).
pub const ACCESS_KEY: &str = "minioadmin";
pub const SECRET_KEY: &str = "minioadmin";
pub const REGION: &str = "us-east-1";

/// Which S3 server.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Kind {
    /// SeaweedFS (`weed mini`, from PyPI via scripts/storage-services.sh).
    Seaweedfs,
    /// s3s-fs 0.14.1 (cargo install into the bench's cache on first use).
    S3sFs,
}

impl S3Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Seaweedfs => "SeaweedFS",
            Self::S3sFs => "s3s-fs",
        }
    }

    /// A short identifier (database and bucket names).
    pub fn ident(self) -> &'static str {
        match self {
            Self::Seaweedfs => "seaweedfs",
            Self::S3sFs => "s3sfs",
        }
    }
}

/// A usable S3 endpoint; stops the server it started when dropped.
pub struct S3StandIn {
    pub kind: S3Kind,
    pub endpoint: String,
    /// Where the endpoint came from, for the report.
    pub source: String,
    started: Option<(PathBuf, tempfile::TempDir)>,
    _s3s: Option<crate::s3sfs::S3sFs>,
}

impl S3StandIn {
    /// Starts (or finds) the stand-in of `kind`; `within` bounds the start, `install_within` an install.
    pub fn obtain(
        kind: S3Kind,
        repo_root: &Path,
        within: Duration,
        install_within: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<Self> {
        match kind {
            S3Kind::Seaweedfs => Self::seaweedfs(repo_root, within),
            S3Kind::S3sFs => {
                let bin = crate::s3sfs::binary(install_within, progress)?;
                let s = crate::s3sfs::S3sFs::start(&bin, ACCESS_KEY, SECRET_KEY)?;
                Ok(Self {
                    kind,
                    endpoint: s.endpoint.clone(),
                    source: format!("s3s-fs {} ({})", crate::s3sfs::VERSION, bin.display()),
                    started: None,
                    _s3s: Some(s),
                })
            }
        }
    }

    /// `AGENTD_TEST_S3_ENDPOINT`, or a SeaweedFS started for this run (at most `within`, install included).
    fn seaweedfs(repo_root: &Path, within: Duration) -> Result<Self> {
        if let Ok(endpoint) = std::env::var("AGENTD_TEST_S3_ENDPOINT")
            && !endpoint.trim().is_empty()
        {
            return Ok(Self {
                kind: S3Kind::Seaweedfs,
                endpoint: endpoint.trim().trim_end_matches('/').to_owned(),
                source: "AGENTD_TEST_S3_ENDPOINT".to_owned(),
                started: None,
                _s3s: None,
            });
        }
        let script = repo_root.join("scripts/storage-services.sh");
        if !script.is_file() {
            bail!(
                "{} not found (set AGENTD_TEST_S3_ENDPOINT instead)",
                script.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("bench-images-s3-").tempdir()?;
        let log_path = dir.path().join("storage-services.log");
        // From here on, drop runs `stop`, whatever happens.
        let mut me = Self {
            kind: S3Kind::Seaweedfs,
            endpoint: String::new(),
            source: "SeaweedFS via scripts/storage-services.sh".to_owned(),
            started: Some((script.clone(), dir)),
            _s3s: None,
        };
        let dir_path = me.dir().context("no temporary directory")?.to_owned();
        let log = fs::File::create(&log_path)?;
        let child = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir_path)
            .current_dir(repo_root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot run scripts/storage-services.sh")?;
        let log_text = || fs::read_to_string(&log_path).unwrap_or_default();
        match wait_bounded(child, within)? {
            Some(true) => {}
            Some(false) => bail!("storage-services.sh start failed:\n{}", log_text()),
            None => bail!(
                "storage-services.sh start did not finish within {} s:\n{}",
                within.as_secs(),
                log_text()
            ),
        }
        let env = fs::read_to_string(dir_path.join("storage.env"))
            .context("storage-services.sh wrote no storage.env")?;
        let endpoint = env
            .lines()
            .find_map(|l| l.trim().strip_prefix("export AGENTD_TEST_S3_ENDPOINT="))
            .map(|v| v.trim().trim_matches('"').trim_end_matches('/').to_owned())
            .context("storage.env has no AGENTD_TEST_S3_ENDPOINT")?;
        me.endpoint = endpoint;
        Ok(me)
    }

    fn dir(&self) -> Option<&Path> {
        self.started.as_ref().map(|(_, d)| d.path())
    }
}

/// Waits for the child at most `within`; `Some(success)`, or `None` after killing it on timeout.
pub(crate) fn wait_bounded(mut child: Child, within: Duration) -> Result<Option<bool>> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status.success()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(None)
}

impl Drop for S3StandIn {
    fn drop(&mut self) {
        if let Some((script, dir)) = &self.started {
            let child = Command::new("bash")
                .arg(script)
                .arg("stop")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(c) = child {
                let _ = wait_bounded(c, Duration::from_secs(30));
            }
        }
    }
}
