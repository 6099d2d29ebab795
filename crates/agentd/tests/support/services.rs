//! Private database and object-store servers for the tests that stop and restart them: a PostgreSQL cluster
//! and a SeaweedFS S3 server of their own (the commands of `scripts/test-services.sh` and
//! `scripts/storage-services.sh`), so the shared test servers are never disturbed. Each is stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// `n` free loopback ports (held together while they are picked, so they differ).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("its address").port())
        .collect()
}

/// Runs a command to its end; fails the test with its output when it fails.
async fn run(cmd: &mut Command, what: &str) {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL cluster of one test, on a free port, run as the `postgres` user when the test runs as root.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.extend([PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")]);
    dirs.into_iter()
        .rev()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .expect("PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let bin = pg_bin();
        let dir = tempfile::tempdir().expect("a temporary directory");
        if is_root() {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
                "chown the cluster directory",
            )
            .await;
        }
        let port = free_ports(1)[0];
        let pg = Self { bin, dir, port };
        let data = pg.data();
        run(
            pg.as_postgres("initdb")
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "-D",
                ])
                .arg(&data),
            "initdb",
        )
        .await;
        pg.pg_ctl_start().await;
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    async fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        run(
            self.as_postgres("pg_ctl")
                .args(["-w", "-t", "30", "-D"])
                .arg(self.data())
                .arg("-l")
                .arg(log)
                .args(["-o", &opts, "start"]),
            "pg_ctl start",
        )
        .await;
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server with `-m fast`: every session is cut, as in a database failover.
    pub async fn stop(&self) {
        run(
            self.as_postgres("pg_ctl")
                .args(["-w", "-m", "fast", "-D"])
                .arg(self.data())
                .arg("stop"),
            "pg_ctl stop",
        )
        .await;
    }

    /// Starts it again on the same port and data.
    pub async fn start_again(&self) {
        self.pg_ctl_start().await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            std::process::Command::new(pg_ctl)
        };
        let _ = cmd
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The S3 access key and secret of the stand-ins (`scripts/storage-services.sh`).
pub const S3_KEY: &str = "minioadmin";

/// A SeaweedFS S3 server of one test (`weed mini`, every port its own), stoppable and restartable on the
/// same ports and data.
pub struct PrivateS3 {
    weed: PathBuf,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    child: Option<Child>,
}

/// The `weed` binary that `scripts/storage-services.sh` installed (`AGENTD_TEST_WEED` overrides).
fn weed_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENTD_TEST_WEED") {
        return p.into();
    }
    let venv = std::env::var_os("AGENTD_TOOLS_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
            Some(cache.join("agentd/storage-venv"))
        });
    if let Some(w) = venv.map(|v| v.join("bin/weed")).filter(|w| w.exists()) {
        return w;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("weed"))
                .find(|w| w.exists())
        })
        .expect("the SeaweedFS `weed` binary: run `scripts/test-services.sh start` once (it installs it)")
}

impl PrivateS3 {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir_all(dir.path().join("data")).expect("the data directory");
        let config = format!(
            r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_KEY}"}}],
              "actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), config).expect("the S3 identities");
        let mut s3 = Self {
            weed: weed_binary(),
            dir,
            ports: free_ports(10),
            child: None,
        };
        s3.resume().await;
        s3
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    /// Stops the server (SIGKILL, as a crash would) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(30), c.wait()).await;
        }
    }

    /// Starts it (again) on the same ports and data; returns once S3 answers.
    pub async fn resume(&mut self) {
        let p = &self.ports;
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("weed.log"))
            .expect("the weed log");
        let err = log.try_clone().expect("the weed log");
        let child = Command::new(&self.weed)
            .arg("mini")
            .arg(format!("-dir={}", d.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
            .args([
                "-master.volumeSizeLimitMB=64",
                "-volume.max=50",
                "-admin.ui=false",
                "-webdav=false",
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", d.join("s3.json").display()))
            .arg(format!("-s3.port={}", p[0]))
            .arg(format!("-s3.port.grpc={}", p[1]))
            .arg(format!("-master.port={}", p[2]))
            .arg(format!("-master.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-volume.port={}", p[6]))
            .arg(format!("-volume.port.grpc={}", p[7]))
            .arg(format!("-admin.port={}", p[8]))
            .arg(format!("-admin.port.grpc={}", p[9]))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.weed.display()));
        self.child = Some(child);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        // S3 answers anonymous requests with 403 once it is up; the filer behind it must answer too.
        let filer = format!("http://127.0.0.1:{}/", p[4]);
        while http.get(self.endpoint()).send().await.is_err() || http.get(&filer).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not answer within 60 s: {}",
                std::fs::read_to_string(d.join("weed.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
