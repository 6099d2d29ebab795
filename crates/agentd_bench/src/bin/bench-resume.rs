//! `bench-resume`: issue 9's benchmark. Three agentd replicas (release binaries as child processes) on one
//! private PostgreSQL database and one bucket of an S3 stand-in, the fake upstream in-process; 200 clients
//! keep a run each in flight (slow streamed text turns, one in five an image turn), drop their stream at
//! random moments and resume it on a random other replica with `Last-Event-ID`; every run is checked against
//! its full replay (see `agentd_bench::resume`). This file owns the command line, the setup and the phase;
//! exit 0 when the run completes (targets met or not), 2 when the setup fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentd_bench::agentd::{self, Agentd};
use agentd_bench::clients::{self, Endpoint};
use agentd_bench::db::{Databases, DbKind, InstanceDb};
use agentd_bench::harness::{self, Fake, Instance};
use agentd_bench::pgstats;
use agentd_bench::resume::{self, Setup};
use agentd_bench::resume_report::{self, LogSize, ReplicaCost, ResumeRun, RunResult};
use agentd_bench::s3::{self, S3Kind, S3StandIn};
use agentd_bench::turns;
use anyhow::{Context, Result, bail};
use clap::Parser;
use sqlx::Connection as _;

const JWT_SECRET: &str = "bench-resume-secret-0123456789abcdefghij";

/// Drop and resume runs across agentd replicas; check every event arrives exactly once.
#[derive(Parser, Debug)]
#[command(name = "bench-resume")]
struct Args {
    /// agentd replicas on the one database and bucket.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Concurrent clients, each with one run in flight at a time.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Runs per client, one after the other.
    #[arg(long, default_value_t = 2)]
    runs_per_client: usize,
    /// Every Nth run is an image turn (0: none).
    #[arg(long, default_value_t = 5)]
    image_every: usize,
    /// Every Nth run is observed (never dropped; followed on two replicas to time cross-replica delivery).
    #[arg(long, default_value_t = 8)]
    observe_every: usize,
    /// The text turn (a `#fake:` directive sets its pace).
    #[arg(long, default_value = "resume me #fake:text deltas=30 gap=100")]
    text_message: String,
    /// The image turn.
    #[arg(
        long,
        default_value = "draw #fake:image partials=2 text=both gap=100 stall=800 big=1"
    )]
    image_message: String,
    /// A connection lives between these many ms (uniform) before the client drops it.
    #[arg(long, default_value_t = 200)]
    min_lifetime_ms: u64,
    #[arg(long, default_value_t = 1500)]
    max_lifetime_ms: u64,
    /// The client reconnects after up to this many ms.
    #[arg(long, default_value_t = 300)]
    max_reconnect_ms: u64,
    /// Clients start spread over this many ms.
    #[arg(long, default_value_t = 2000)]
    ramp_ms: u64,
    /// Limit of one run (resumes and replay included), in seconds.
    #[arg(long, default_value_t = 120)]
    run_timeout_secs: u64,
    /// More environment for every replica, KEY=VALUE (e.g. DATABASE_MAX_CONNECTIONS=32); repeatable.
    #[arg(long = "env", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// The S3 stand-in holding the image turns' attachments.
    #[arg(long, value_enum, default_value = "seaweedfs")]
    s3: S3Kind,
    /// The agentd binary; default: <repo>/target/release/agentd.
    #[arg(long)]
    agentd_bin: Option<PathBuf>,
    /// Repository root (agentd's working directory; holds scripts/storage-services.sh).
    #[arg(long)]
    repo_root: Option<PathBuf>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
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
    eprintln!("bench-resume: {msg}");
}

#[expect(clippy::print_stdout, reason = "benchmark report")]
fn print_report(text: &str) {
    println!("{text}");
}

fn run(args: &Args) -> Result<()> {
    if args.replicas < 2 || args.clients == 0 || args.runs_per_client == 0 {
        bail!("--replicas must be at least 2, --clients and --runs-per-client at least 1");
    }
    let repo_root = harness::repo_root(args.repo_root.as_deref())?;
    progress(&format!("starting {}…", args.s3.name()));
    let s3 = S3StandIn::obtain(
        args.s3,
        &repo_root,
        Duration::from_secs(300),
        Duration::from_secs(1800),
        &progress,
    )?;
    let fake = Fake::start(Duration::ZERO)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(bench(args, &repo_root, &fake, &s3));
    drop(rt);
    drop(fake);
    print_report(&resume_report::render(&result?));
    drop(s3);
    Ok(())
}

/// Starts the replicas one after the other (the first creates the schema and the bucket).
async fn replicas(
    args: &Args,
    repo_root: &Path,
    binary: &Path,
    fake: &Fake,
    s3: &S3StandIn,
    db: &InstanceDb,
    log_dir: &Path,
) -> Result<Vec<Agentd>> {
    let fake_url = fake.base_url();
    let mut out = Vec::new();
    for i in 1..=args.replicas {
        let a = Instance {
            binary,
            repo_root,
            upstream_base_url: &fake_url,
            jwt_secret: JWT_SECRET,
            db,
            log_path: log_dir.join(format!("agentd-{i}.log")),
            extra_env: vec![
                ("STORAGE_PROVIDER", "minio".to_owned()),
                ("MINIO_ENDPOINT", s3.endpoint.clone()),
                ("MINIO_ACCESS_KEY", s3::ACCESS_KEY.to_owned()),
                ("MINIO_SECRET_KEY", s3::SECRET_KEY.to_owned()),
                ("MINIO_REGION", s3::REGION.to_owned()),
                ("MINIO_BUCKET", "bench-resume".to_owned()),
            ]
            .into_iter()
            .chain(args.env.iter().map(|(k, v)| (k.as_str(), v.clone())))
            .collect(),
            stdout_tap: None,
        }
        .start(Duration::from_secs(60))
        .await
        .with_context(|| format!("replica {i}"))?;
        out.push(a);
    }
    Ok(out)
}

/// `run_events`' rows and sizes now.
async fn log_size(url: &str) -> Result<LogSize> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    let (rows, total, heap, indexes, payload): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), pg_total_relation_size('run_events'), pg_relation_size('run_events'), \
         pg_indexes_size('run_events'), coalesce(sum(octet_length(events)), 0)::bigint FROM run_events",
    )
    .fetch_one(&mut c)
    .await?;
    Ok(LogSize {
        rows,
        total,
        heap,
        indexes,
        payload,
    })
}

/// WARN / ERROR lines of a replica's log, and the first three.
fn warnings(log: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let first = hits.iter().take(3).map(|l| turns::clip(l, 200)).collect();
    (hits.len(), first)
}

async fn bench(args: &Args, repo_root: &Path, fake: &Fake, s3: &S3StandIn) -> Result<ResumeRun> {
    let load_at_start = harness::loadavg();
    let dbs = Databases::open(DbKind::Postgres, None).await?;
    let db = dbs.for_instance("resume").await?;
    let binary = harness::agentd_binary(args.agentd_bin.as_deref(), repo_root);
    let tmp = tempfile::Builder::new().prefix("bench-resume-").tempdir()?;
    progress(&format!("starting {} replicas…", args.replicas));
    let reps = replicas(args, repo_root, &binary, fake, s3, &db, tmp.path()).await?;
    let client = harness::client(args.clients * 2)?;
    for a in &reps {
        let ep = Endpoint::Agentd {
            base_url: &a.base_url,
            jwt_secret: JWT_SECRET,
        };
        for req in clients::requests(&ep, 1, "designer", &args.image_message)? {
            turns::run_turn(&client, &req, Duration::from_secs(60))
                .await
                .map_err(|e| anyhow::anyhow!("warm-up turn failed: {e}; log:\n{}", a.log_tail(20)))?;
        }
    }
    let setup = Arc::new(Setup {
        client,
        replicas: reps.iter().map(|a| a.base_url.clone()).collect(),
        lifetime_ms: (
            args.min_lifetime_ms,
            args.max_lifetime_ms.max(args.min_lifetime_ms),
        ),
        reconnect_ms: (0, args.max_reconnect_ms),
        run_timeout: Duration::from_secs(args.run_timeout_secs),
        log_db: sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&db.url)
            .await
            .ok(),
        anchor: (Instant::now(), std::time::SystemTime::now()),
    });

    let stats = dbs.stats.as_ref();
    let db_name = db.pg_name.clone().unwrap_or_default();
    let log_before = log_size(&db.url).await.ok();
    let sql_before = match stats {
        Some(s) => s
            .snapshot(std::slice::from_ref(&db_name))
            .await
            .map_err(|e| format!("{e:#}")),
        None => Err(dbs.stats_error.clone().unwrap_or_default()),
    };
    let idle: Vec<_> = reps.iter().map(|a| agentd::mem(a.pid()).map(|m| m.rss)).collect();
    let cpu0: Vec<_> = reps.iter().map(|a| agentd::cpu_time(a.pid())).collect();
    let pg0 = stats.and_then(pgstats::PgStats::cpu);

    progress(&format!(
        "{} clients × {} runs across {} replicas…",
        args.clients, args.runs_per_client, args.replicas
    ));
    let started = Instant::now();
    let runs = phase(args, &setup).await?;
    let wall = started.elapsed();
    let cpu1: Vec<_> = reps.iter().map(|a| agentd::cpu_time(a.pid())).collect();
    let pg1 = stats.and_then(pgstats::PgStats::cpu);
    let log_after = log_size(&db.url).await.ok();
    progress("waiting for PostgreSQL's transaction counters…");
    pgstats::settle().await;
    let sql = match (stats, sql_before) {
        (Some(s), Ok(a)) => s
            .snapshot(std::slice::from_ref(&db_name))
            .await
            .map(|b| s.delta(&a, &b, &db_name))
            .map_err(|e| format!("{e:#}")),
        (_, Err(e)) => Err(e),
        (None, Ok(_)) => Err("no statistics connection".to_owned()),
    };
    let replicas = reps
        .iter()
        .enumerate()
        .map(|(i, rep)| ReplicaCost {
            cpu: cpu1[i].zip(cpu0[i]).map(|(end, start)| end.saturating_sub(start)),
            idle_rss: idle[i],
            peak_rss: agentd::mem(rep.pid()).map(|m| m.hwm),
            warnings: warnings(&tmp.path().join(format!("agentd-{}.log", i + 1))),
        })
        .collect();
    Ok(ResumeRun {
        binary: harness::describe_binary(&binary),
        database: format!(
            "{}, one database shared by the {} replicas",
            dbs.describe().replace(", one database per agentd", ""),
            args.replicas
        ),
        store: format!(
            "{} at {} ({}), one bucket",
            s3.kind.name(),
            s3.endpoint,
            s3.source
        ),
        machine: harness::machine_line(load_at_start),
        workload: vec![
            format!(
                "{} replicas, {} clients × {} runs; text {:?}; every {}th run an image turn {:?}",
                args.replicas,
                args.clients,
                args.runs_per_client,
                args.text_message,
                args.image_every,
                args.image_message
            ),
            format!("replica environment added: {:?}", args.env),
            format!(
                "drops: a connection lives {}–{} ms, then the client reconnects after 0–{} ms on a random other \
                 replica with Last-Event-ID; every {}th run is observed instead",
                args.min_lifetime_ms, args.max_lifetime_ms, args.max_reconnect_ms, args.observe_every
            ),
        ],
        runs,
        wall,
        peak_in_flight: PEAK.load(Ordering::Relaxed),
        log_before,
        log_after,
        replicas,
        pg_cpu: pg1.zip(pg0).map(|(end, start)| end.saturating_sub(start)),
        sql,
    })
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Every client's runs, in tasks of their own.
async fn phase(args: &Args, setup: &Arc<Setup>) -> Result<Vec<RunResult>> {
    let text = Arc::new(turns::agentd_body("assistant", &args.text_message));
    let image = Arc::new(turns::agentd_body("designer", &args.image_message));
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let bearer = clients::token(JWT_SECRET, i)?;
        let (setup, text, image) = (Arc::clone(setup), Arc::clone(&text), Arc::clone(&image));
        let (clients, per, img_n, obs_n) = (
            args.clients,
            args.runs_per_client,
            args.image_every,
            args.observe_every,
        );
        let ramp = Duration::from_millis(args.ramp_ms * i as u64 / clients as u64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(ramp).await;
            let mut out = Vec::new();
            for k in 0..per {
                let n = k * clients + i;
                let is_image = img_n > 0 && n % img_n == 0;
                let observed = obs_n > 0 && n % obs_n == obs_n / 2;
                let body = if is_image { &image } else { &text };
                let now = IN_FLIGHT.fetch_add(1, Ordering::Relaxed) + 1;
                PEAK.fetch_max(now, Ordering::Relaxed);
                let outcome = if observed {
                    resume::observed_run(&setup, &bearer, body).await
                } else {
                    resume::dropped_run(&setup, &bearer, body).await
                };
                IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
                out.push(RunResult {
                    image: is_image,
                    observed,
                    outcome,
                });
            }
            out
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.extend(t.await.context("a client task panicked")?);
    }
    Ok(runs)
}
