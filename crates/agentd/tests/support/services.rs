//! A private object-store server for the tests that stop and restart it: a SeaweedFS S3 server of their own
//! (the commands of `scripts/storage-services.sh`), so the shared test servers are never disturbed; stopped on
//! drop. (A private PostgreSQL cluster is `agentd_testkit::PrivatePostgres`.)

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

    /// A client of it, with the stand-ins' keys.
    pub fn client(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(S3_KEY, S3_KEY, None, None, "test"))
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The keys in `bucket`, sorted.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list {bucket}: {e:?}"));
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// Waits (30 s at most) until it takes a write into `bucket`: SeaweedFS answers before its volume server
    /// has registered again after a (re)start.
    pub async fn until_it_takes_writes(&self, bucket: &str) {
        let s3 = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let put = s3
                .put_object()
                .bucket(bucket)
                .key("probe")
                .body(b"probe".to_vec().into())
                .send()
                .await;
            if put.is_ok() {
                s3.delete_object()
                    .bucket(bucket)
                    .key("probe")
                    .send()
                    .await
                    .unwrap();
                return;
            }
            assert!(Instant::now() < deadline, "the store takes no write: {put:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
