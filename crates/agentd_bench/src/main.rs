//! `bench-relay`: measures, in one run, what agentd adds on top of the upstream. It starts the fake Responses
//! API in-process (on its own runtime), a database (a private PostgreSQL cluster by default), agentd as a
//! child process pointed at both, then runs every comparison as alternating batches through agentd and
//! straight to the fake, and prints a quotable report. This file owns the command line and the order of the
//! sections; exit 0 unless the setup fails (2) or no turn through agentd succeeded (1).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use agentd_bench::agentd::{self, Agentd};
use agentd_bench::clients::{self, Endpoint};
use agentd_bench::db::{Databases, DbKind, InstanceDb};
use agentd_bench::harness::{self, Fake, Instance};
use agentd_bench::interleave::{self, Arm, Plan};
use agentd_bench::pgstats;
use agentd_bench::phase::{PhaseResult, Watch};
use agentd_bench::report::{self, BigEvent, Capacity, Header, ImageTurn, Paced, Report};
use agentd_bench::turns;

const JWT_SECRET: &str = "bench-relay-secret-0123456789abcdefghijk";

/// Measure agentd's added latency, throughput, CPU and SQL per turn against the in-process fake upstream.
#[derive(Parser, Debug)]
#[command(name = "bench-relay")]
struct Args {
    /// Concurrency levels of the paced text turns, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,50,200")]
    clients: Vec<usize>,
    /// Sequential turns per client in one batch of paced text turns.
    #[arg(long, default_value_t = 5)]
    turns_per_client: usize,
    /// Paced text turns: at least this many samples per side (batches are added, at least 4 per side).
    #[arg(long, default_value_t = 200)]
    min_samples: usize,
    /// Text deltas per paced text turn (`#fake:text deltas=N`).
    #[arg(long, default_value_t = 20)]
    deltas: u32,
    /// Paced turns: the fake's delay between two events of a stream, in ms (`gap=MS`).
    #[arg(long, default_value_t = 2)]
    gap_ms: u64,
    /// Capacity run: concurrent clients (0 skips the run).
    #[arg(long, default_value_t = 50)]
    capacity_clients: usize,
    /// Capacity run: sequential turns per client in one batch.
    #[arg(long, default_value_t = 20)]
    capacity_turns: usize,
    /// Capacity run: batches per side.
    #[arg(long, default_value_t = 4)]
    capacity_rounds: usize,
    /// Rounds of the big-event comparison (four single-turn batches each); 0 skips it.
    #[arg(long, default_value_t = 20)]
    big_turns: usize,
    /// Size of the big unknown event in MB (`big-other=MB`, MB = 1,000,000 bytes).
    #[arg(long, default_value_t = 4)]
    big_mb: u32,
    /// Rounds of the image comparison (`#fake:image partials=2 big=4`); 0 skips it.
    #[arg(long, default_value_t = 10)]
    image_turns: usize,
    /// Concurrent clients in the image comparison.
    #[arg(long, default_value_t = 1)]
    image_clients: usize,
    /// Unmeasured turns (each way) before the first section.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// agentd's database: a private PostgreSQL cluster (with pg_stat_statements) or a SQLite file.
    #[arg(long, value_enum, default_value = "postgres")]
    db: DbKind,
    /// An existing PostgreSQL database instead (statements need pg_stat_statements preloaded there).
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
    /// Limit of one turn, in seconds.
    #[arg(long, default_value_t = 60)]
    turn_timeout_secs: u64,
    /// No new turn starts this many seconds into a batch.
    #[arg(long, default_value_t = 120)]
    batch_timeout_secs: u64,
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
    let repo_root = harness::repo_root(args.repo_root.as_deref())?;
    if args.build {
        progress("building agentd (cargo build --release -p agentd)…");
        agentd::build_release(&repo_root)?;
    }
    // Unpaced: the capacity run sends events back to back; paced turns ask for `gap=MS` themselves.
    let fake = Fake::start(Duration::ZERO)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(bench(args, &repo_root, &fake));
    drop(fake);
    let report = result?;
    print_report(&report::render(&report));
    let ok = report.paced.iter().map(|p| p.agentd.ok).sum::<usize>()
        + report.capacity.as_ref().map_or(0, |c| c.agentd.ok);
    if ok == 0 {
        progress("no turn through agentd succeeded");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The running parts and the settings every section shares.
struct Bench<'a> {
    client: reqwest::Client,
    fake_url: String,
    agentd: Agentd,
    db: InstanceDb,
    dbs: Databases,
    args: &'a Args,
}

impl Bench<'_> {
    fn arms(&self, n: usize, agent: &str, message: &str) -> Result<Vec<Arm<'_>>> {
        let watch = Watch {
            pid: self.agentd.pid(),
            database_url: &self.db.url,
            pg: self.dbs.stats.as_ref(),
            pg_db: self.db.pg_name.as_deref(),
        };
        let to_agentd = Endpoint::Agentd {
            base_url: &self.agentd.base_url,
            jwt_secret: JWT_SECRET,
        };
        let to_fake = Endpoint::Direct {
            fake_url: &self.fake_url,
        };
        Ok(vec![
            Arm {
                name: "agentd".to_owned(),
                requests: clients::requests(&to_agentd, n, agent, message)?,
                watch: Some(watch),
            },
            Arm {
                name: "direct".to_owned(),
                requests: clients::requests(&to_fake, n, agent, message)?,
                watch: None,
            },
        ])
    }

    fn plan(&self, rounds: usize, turns_per_client: usize) -> Plan {
        Plan {
            rounds,
            turns_per_client,
            turn_timeout: Duration::from_secs(self.args.turn_timeout_secs),
            batch_deadline: Duration::from_secs(self.args.batch_timeout_secs),
            sample_every: Duration::from_millis(50),
            keep_attachments: 0,
        }
    }

    /// Interleaved agentd / direct batches; returns (agentd, direct).
    async fn compare(
        &self,
        what: &str,
        n: usize,
        plan: &Plan,
        agent: &str,
        message: &str,
    ) -> Result<(PhaseResult, PhaseResult)> {
        progress(&format!("{what}: N={n} {message:?}"));
        let arms = self.arms(n, agent, message)?;
        let mut out = interleave::alternate(&self.client, &arms, plan, &progress).await;
        let direct = out.pop().unwrap_or_default();
        let agentd = out.pop().unwrap_or_default();
        Ok((agentd, direct))
    }

    /// Unmeasured turns each way that also prove both paths work.
    async fn warm(&self, message: &str) -> Result<()> {
        let limit = Duration::from_secs(self.args.turn_timeout_secs);
        for arm in self.arms(1, "assistant", message)? {
            for req in arm.requests.iter().cycle().take(self.args.warmup.max(1)) {
                if let Err(e) = turns::run_turn(&self.client, req, limit).await {
                    bail!(
                        "{} warm-up turn failed: {e}; agentd log:\n{}",
                        arm.name,
                        self.agentd.log_tail(20)
                    );
                }
            }
        }
        Ok(())
    }

    /// The capacity run, with what agentd's database did during it.
    async fn capacity(&self) -> Result<Capacity> {
        let a = self.args;
        let message = "hello #fake:text".to_owned();
        let census = match (&self.dbs.stats, &self.db.pg_name) {
            (Some(s), Some(name)) => {
                progress("waiting for PostgreSQL's transaction counters to settle (11 s)…");
                pgstats::settle().await;
                Some((s, name.clone(), s.snapshot(std::slice::from_ref(name)).await?))
            }
            _ => None,
        };
        let plan = self.plan(a.capacity_rounds, a.capacity_turns);
        let (agentd, direct) = self
            .compare("capacity", a.capacity_clients, &plan, "assistant", &message)
            .await?;
        let sql = match census {
            Some((s, name, before)) => {
                progress("waiting for PostgreSQL's transaction counters to settle (11 s)…");
                pgstats::settle().await;
                let after = s.snapshot(std::slice::from_ref(&name)).await?;
                Ok(s.delta(&before, &after, &name))
            }
            None => Err(self
                .dbs
                .stats_error
                .clone()
                .unwrap_or_else(|| "no PostgreSQL statistics".to_owned())),
        };
        Ok(Capacity {
            n: a.capacity_clients,
            rounds: a.capacity_rounds,
            turns_per_client: a.capacity_turns,
            message,
            agentd,
            direct,
            sql,
        })
    }
}

async fn bench(args: &Args, repo_root: &std::path::Path, fake: &Fake) -> Result<Report> {
    let load_at_start = harness::loadavg();
    let dbs = Databases::open(args.db, args.database_url.as_deref()).await?;
    let db = dbs.for_instance("relay").await?;
    let binary = harness::agentd_binary(args.agentd_bin.as_deref(), repo_root);
    let tmp = tempfile::Builder::new().prefix("bench-relay-").tempdir()?;
    let max_clients = args
        .clients
        .iter()
        .copied()
        .chain([args.capacity_clients, args.image_clients])
        .max()
        .unwrap_or(1);
    let fake_url = fake.base_url();
    let agentd = Instance {
        binary: &binary,
        repo_root,
        upstream_base_url: &fake_url,
        jwt_secret: JWT_SECRET,
        db: &db,
        log_path: tmp.path().join("agentd.log"),
        extra_env: vec![],
        stdout_tap: None,
    }
    .start(Duration::from_secs(30))
    .await?;
    let b = Bench {
        client: harness::client(max_clients)?,
        fake_url,
        agentd,
        db,
        dbs,
        args,
    };

    let paced_message = format!("hello #fake:text deltas={} gap={}", args.deltas, args.gap_ms);
    b.warm(&paced_message).await?;
    b.warm("hello #fake:text").await?;
    // Every pooled database connection prepares its statements before anything is counted.
    let warm_n = args.capacity_clients.max(20);
    let warm = b.arms(warm_n, "assistant", "hello #fake:text")?;
    if let Some(arm) = warm.into_iter().next() {
        let limit = Duration::from_secs(args.turn_timeout_secs);
        interleave::warm_batch(&b.client, arm.requests, limit)
            .await
            .map_err(|e| anyhow::anyhow!("{e}; agentd log:\n{}", b.agentd.log_tail(20)))?;
    }
    let idle = agentd::mem(b.agentd.pid());

    let capacity = if args.capacity_clients > 0 {
        Some(b.capacity().await.context("capacity run")?)
    } else {
        None
    };
    let mut paced = Vec::new();
    for &n in &args.clients {
        let k = args.turns_per_client.max(1);
        let rounds = args.min_samples.div_ceil(n.max(1) * k).max(4);
        let plan = b.plan(rounds, k);
        let (agentd, direct) = b.compare("paced", n, &plan, "assistant", &paced_message).await?;
        paced.push(Paced {
            n,
            rounds,
            turns_per_client: k,
            agentd,
            direct,
        });
    }
    let big = if args.big_turns > 0 {
        let big_message = format!("{paced_message} big-other={}", args.big_mb);
        progress(&format!("big event: {big_message:?} vs plain, 4 arms"));
        let mut arms = b.arms(1, "assistant", &paced_message)?;
        for (i, mut arm) in b.arms(1, "assistant", &big_message)?.into_iter().enumerate() {
            arm.name.push_str(" big");
            arms.insert(2 * i + 1, arm);
        }
        let mut r = interleave::alternate(&b.client, &arms, &b.plan(args.big_turns, 1), &progress)
            .await
            .into_iter();
        let mut next = || r.next().unwrap_or_default();
        Some(BigEvent {
            mb: args.big_mb,
            rounds: args.big_turns,
            agentd_plain: next(),
            agentd_big: next(),
            direct_plain: next(),
            direct_big: next(),
        })
    } else {
        None
    };
    let image = if args.image_turns > 0 {
        let message = format!("draw a cat #fake:image partials=2 big=4 gap={}", args.gap_ms);
        let plan = b.plan(args.image_turns, 1);
        let (agentd, direct) = b
            .compare("image", args.image_clients, &plan, "designer", &message)
            .await?;
        Some(ImageTurn {
            message,
            agentd,
            direct,
        })
    } else {
        None
    };

    let mut b = b;
    if !b.agentd.alive() {
        progress(&format!(
            "agentd exited during the run; log:\n{}",
            b.agentd.log_tail(30)
        ));
    }
    Ok(Report {
        header: Header {
            binary: harness::describe_binary(&binary),
            database: b.dbs.describe(),
            gap_ms: args.gap_ms,
            paced_message,
            machine: harness::machine_line(load_at_start),
        },
        idle,
        capacity,
        paced,
        big,
        image,
    })
}
