//! `bench-relay`: measures, in one run and side by side, what agentd adds on top of the upstream. It starts
//! the fake Responses API in-process (on its own runtime), agentd as a child process pointed at it, then runs
//! the same streamed turns through agentd and straight to the fake and prints a quotable report. This file
//! owns the command line and the order of the phases; exit 0 unless the setup fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use agentd_fake_upstream::{FakeConfig, FakeUpstream};
use anyhow::{Context, Result, bail};
use clap::Parser;

use agentd_bench::agentd::{self, Agentd, Launch};
use agentd_bench::clients::{self, Endpoint};
use agentd_bench::phase::{self, PhaseResult, PhaseSpec, Watch};
use agentd_bench::report::{self, BigEvent, Header, ImageTurn, Report, TextRow};
use agentd_bench::turns::{self, Target, TurnRequest};

const JWT_SECRET: &str = "bench-relay-secret-0123456789abcdefghijk";

/// Measure agentd's added latency, throughput and memory against the in-process fake upstream.
#[derive(Parser, Debug)]
#[command(name = "bench-relay")]
struct Args {
    /// Concurrency levels (clients), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,50,200")]
    clients: Vec<usize>,
    /// Sequential turns per client in each text phase.
    #[arg(long, default_value_t = 5)]
    turns_per_client: usize,
    /// Text deltas per text turn (`#fake:text deltas=N`).
    #[arg(long, default_value_t = 20)]
    deltas: u32,
    /// The fake's delay between two events of a stream, in ms.
    #[arg(long, default_value_t = 2)]
    event_delay_ms: u64,
    /// Turns of each kind (plain / with the big event, agentd / direct) in the big-event phase; 0 skips it.
    #[arg(long, default_value_t = 20)]
    big_turns: usize,
    /// Size of the big unknown event in MB (`big-other=MB`, MB = 1,000,000 bytes).
    #[arg(long, default_value_t = 4)]
    big_mb: u32,
    /// Turns per client in the image phase (`#fake:image partials=2 big=4`); 0 skips it.
    #[arg(long, default_value_t = 10)]
    image_turns: usize,
    /// Concurrent clients in the image phase.
    #[arg(long, default_value_t = 1)]
    image_clients: usize,
    /// Unmeasured turns (each way) before the first phase.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// agentd's database; default: a SQLite file in a temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    /// The agentd binary; default: <repo>/target/release/agentd.
    #[arg(long)]
    agentd_bin: Option<PathBuf>,
    /// Run `cargo build --release -p agentd` first.
    #[arg(long)]
    build: bool,
    /// Repository root (agentd's working directory; it reads config/agents).
    #[arg(long)]
    repo_root: Option<PathBuf>,
    /// Only the direct-to-fake half (no agentd).
    #[arg(long)]
    direct_only: bool,
    /// Limit of one turn, in seconds.
    #[arg(long, default_value_t = 60)]
    turn_timeout_secs: u64,
    /// No new turn starts this many seconds into a phase.
    #[arg(long, default_value_t = 180)]
    phase_timeout_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            progress(&format!("setup failed: {e:#}"));
            ExitCode::from(2)
        }
    }
}

#[expect(clippy::print_stderr, reason = "benchmark progress")]
fn progress(msg: &str) {
    eprintln!("bench-relay: {msg}");
}

#[expect(clippy::print_stdout, reason = "benchmark report")]
fn print_report(text: &str) {
    println!("{text}");
}

fn run(args: &Args) -> Result<ExitCode> {
    let repo_root = match &args.repo_root {
        Some(p) => p.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    let repo_root = repo_root.canonicalize().context("repository root not found")?;
    if args.build && !args.direct_only {
        progress("building agentd (cargo build --release -p agentd)…");
        agentd::build_release(&repo_root)?;
    }
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
    let result = rt.block_on(bench(args, &repo_root, &fake.base_url()));
    drop(fake);
    let (report, agentd_ok) = result?;
    print_report(&report::render(&report));
    if !args.direct_only && agentd_ok == 0 {
        progress("no turn through agentd succeeded");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds and runs phases; knows both endpoints.
struct Bench<'a> {
    client: reqwest::Client,
    fake_url: String,
    agentd: Option<(Agentd, String)>,
    args: &'a Args,
}

impl Bench<'_> {
    fn requests(&self, target: Target, n: usize, agent: &str, message: &str) -> Result<Vec<TurnRequest>> {
        let to = match (target, &self.agentd) {
            (Target::Agentd, Some((a, _))) => Endpoint::Agentd {
                base_url: &a.base_url,
                jwt_secret: JWT_SECRET,
            },
            (Target::Agentd, None) => bail!("agentd is not running"),
            (Target::Direct, _) => Endpoint::Direct {
                fake_url: &self.fake_url,
            },
        };
        clients::requests(&to, n, agent, message)
    }

    async fn phase(
        &self,
        target: Target,
        n: usize,
        k: usize,
        agent: &str,
        message: &str,
    ) -> Result<PhaseResult> {
        progress(&format!("{} N={n} K={k} {message:?}", target.name()));
        let spec = PhaseSpec {
            requests: self.requests(target, n, agent, message)?,
            turns_per_client: k,
            turn_timeout: Duration::from_secs(self.args.turn_timeout_secs),
            deadline: Duration::from_secs(self.args.phase_timeout_secs),
            sample_every: Duration::from_millis(50),
            keep_attachments: 0,
        };
        let watch = match (target, &self.agentd) {
            (Target::Agentd, Some((a, db))) => Some(Watch {
                pid: a.pid(),
                database_url: db,
            }),
            _ => None,
        };
        Ok(phase::run(&self.client, spec, watch).await)
    }

    /// Unmeasured turns that also prove the path works.
    async fn warm(&self, target: Target, message: &str) -> Result<()> {
        let reqs = self.requests(target, 1, "assistant", message)?;
        let limit = Duration::from_secs(self.args.turn_timeout_secs);
        for req in reqs.iter().cycle().take(self.args.warmup.max(1)) {
            if let Err(e) = turns::run_turn(&self.client, req, limit).await {
                bail!("{} turn failed: {e}", target.name());
            }
        }
        Ok(())
    }

    /// The direct phase, and the agentd phase when agentd runs.
    async fn both(
        &self,
        n: usize,
        k: usize,
        agent: &str,
        message: &str,
    ) -> Result<(PhaseResult, Option<PhaseResult>)> {
        let direct = self.phase(Target::Direct, n, k, agent, message).await?;
        let agentd = match self.agentd {
            Some(_) => Some(self.phase(Target::Agentd, n, k, agent, message).await?),
            None => None,
        };
        Ok((direct, agentd))
    }
}

async fn bench(args: &Args, repo_root: &Path, fake_url: &str) -> Result<(Report, usize)> {
    let tmp = tempfile::Builder::new().prefix("bench-relay-").tempdir()?;
    let database_url = match &args.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", tmp.path().join("bench.sqlite").display()),
    };
    let binary = args
        .agentd_bin
        .clone()
        .unwrap_or_else(|| repo_root.join("target/release/agentd"));
    let max_clients = args
        .clients
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(args.image_clients);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(max_clients + 8)
        .connect_timeout(Duration::from_secs(5))
        .build()?;

    let agentd = if args.direct_only {
        None
    } else {
        let launch = Launch {
            binary: &binary,
            repo_root,
            upstream_base_url: fake_url,
            jwt_secret: JWT_SECRET,
            database_url: &database_url,
            log_path: &tmp.path().join("agentd.log"),
            extra_env: &[],
            stdout_tap: None,
        };
        Some((
            Agentd::start(&launch, Duration::from_secs(30)).await?,
            database_url.clone(),
        ))
    };
    let mut b = Bench {
        client,
        fake_url: fake_url.to_owned(),
        agentd,
        args,
    };

    let text = format!("hello #fake:text deltas={}", args.deltas);
    // Probe (and warm) both ways: the setup fails here, with the reason, rather than in every turn.
    b.warm(Target::Direct, &text).await?;
    let idle = match &b.agentd {
        Some((a, _)) => {
            let idle = agentd::mem(a.pid());
            b.warm(Target::Agentd, &text).await.with_context(|| {
                format!(
                    "POST /v1/chat/stream is not usable; agentd log:\n{}",
                    a.log_tail(20)
                )
            })?;
            idle
        }
        None => None,
    };

    let mut rows = Vec::new();
    for &n in &args.clients {
        let (direct, agentd) = b.both(n, args.turns_per_client, "assistant", &text).await?;
        rows.push(TextRow { n, direct, agentd });
    }
    let big = if args.big_turns > 0 {
        let big_text = format!("{text} big-other={}", args.big_mb);
        let (direct_plain, agentd_plain) = b.both(1, args.big_turns, "assistant", &text).await?;
        let (direct_big, agentd_big) = b.both(1, args.big_turns, "assistant", &big_text).await?;
        Some(BigEvent {
            mb: args.big_mb,
            direct_plain,
            direct_big,
            agentd_plain,
            agentd_big,
        })
    } else {
        None
    };
    let image = if args.image_turns > 0 {
        let message = "draw a cat #fake:image partials=2 big=4".to_owned();
        let (direct, agentd) = b
            .both(args.image_clients, args.image_turns, "designer", &message)
            .await?;
        Some(ImageTurn {
            message,
            direct,
            agentd,
        })
    } else {
        None
    };

    let mut binary_desc = binary.display().to_string();
    match &mut b.agentd {
        Some((a, _)) => {
            if let Ok(age) = std::fs::metadata(&binary)
                .and_then(|m| m.modified())
                .map(|m| m.elapsed())
            {
                let mins = age.map(|a| a.as_secs() / 60).unwrap_or(0);
                binary_desc.push_str(&format!(" (built {mins} min before the end of this run)"));
            }
            if !a.alive() {
                progress(&format!("agentd exited during the run; log:\n{}", a.log_tail(30)));
            }
        }
        None => binary_desc = "not started (--direct-only)".to_owned(),
    }
    let agentd_ok = rows.iter().filter_map(|r| r.agentd.as_ref()).map(|p| p.ok).sum();
    let report = Report {
        header: Header {
            binary: binary_desc,
            database: if database_url.starts_with("sqlite:") {
                "SQLite (temp file)".to_owned()
            } else {
                "PostgreSQL (--database-url)".to_owned()
            },
            event_delay_ms: args.event_delay_ms,
            text_message: text,
            turns_per_client: args.turns_per_client,
        },
        idle,
        text: rows,
        big,
        image,
    };
    Ok((report, agentd_ok))
}
