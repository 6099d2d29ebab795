//! The first section of `bench-images`: concurrent multi-MB image turns through one agentd per S3 stand-in,
//! in batches that alternate between the stand-ins. agentd talks to the fake through the timing proxy, so
//! each image's `attachment` can be timed from the moment agentd was handed the upstream's
//! `output_item.done`. Also here: starting an agentd instance on an S3 stand-in, and checking downloads.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::agentd::{self, Agentd, Mem, Tap};
use crate::clients::{self, Endpoint};
use crate::db::{Databases, InstanceDb};
use crate::harness::Instance;
use crate::ingest_log::IngestLog;
use crate::interleave::{self, Arm, Plan};
use crate::pgstats::{self, SqlDelta};
use crate::phase::{PhaseResult, Watch};
use crate::proxy::TimingProxy;
use crate::s3::{self, S3StandIn};
use crate::turns::{self, AttachmentRef};

pub const JWT_SECRET: &str = "bench-images-secret-0123456789abcdefghij";
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// What the sections share.
pub struct Env<'a> {
    pub client: reqwest::Client,
    pub binary: &'a Path,
    pub repo_root: &'a Path,
    /// The fake's base URL (direct turns, and agentd without the proxy).
    pub fake_url: String,
    pub proxy: &'a TimingProxy,
    pub dbs: &'a Databases,
    pub log_dir: &'a Path,
    /// Prefix of the bucket names.
    pub bucket_prefix: String,
    pub turn_timeout: Duration,
    pub batch_deadline: Duration,
    pub progress: &'a dyn Fn(&str),
}

impl Env<'_> {
    /// An agentd on `s3` with its own database, talking to `upstream`, with JSON logs at `log_level`.
    pub async fn start_agentd(
        &self,
        name: &str,
        upstream: &str,
        s3: &S3StandIn,
        log_level: &str,
        tap: Option<Tap>,
    ) -> Result<(Agentd, InstanceDb)> {
        let db = self.dbs.for_instance(name).await?;
        let env = vec![
            ("STORAGE_PROVIDER", "minio".to_owned()),
            ("MINIO_ENDPOINT", s3.endpoint.clone()),
            ("MINIO_ACCESS_KEY", s3::ACCESS_KEY.to_owned()),
            ("MINIO_SECRET_KEY", s3::SECRET_KEY.to_owned()),
            ("MINIO_REGION", s3::REGION.to_owned()),
            (
                "MINIO_BUCKET",
                format!("{}-{}", self.bucket_prefix, name.replace('_', "-")),
            ),
            ("LOG_FORMAT", "json".to_owned()),
            ("LOG_LEVEL", log_level.to_owned()),
        ];
        let a = Instance {
            binary: self.binary,
            repo_root: self.repo_root,
            upstream_base_url: upstream,
            jwt_secret: JWT_SECRET,
            db: &db,
            log_path: self.log_dir.join(format!("agentd-{name}.log")),
            extra_env: env,
            stdout_tap: tap,
        }
        .start(Duration::from_secs(60))
        .await?;
        Ok((a, db))
    }

    pub fn endpoint<'e>(&self, a: &'e Agentd) -> Endpoint<'e> {
        Endpoint::Agentd {
            base_url: &a.base_url,
            jwt_secret: JWT_SECRET,
        }
    }

    /// One unmeasured turn through `a`; fails the setup with its log tail.
    pub async fn warm(&self, a: &Agentd, agent: &str, message: &str) -> Result<turns::TurnTiming> {
        let reqs = clients::requests(&self.endpoint(a), 1, agent, message)?;
        let Some(req) = reqs.first() else {
            bail!("no request")
        };
        match turns::run_turn(&self.client, req, self.turn_timeout).await {
            Ok(t) => Ok(t),
            Err(e) => bail!(
                "warm-up turn {message:?} failed: {e}; agentd log:\n{}",
                a.log_tail(20)
            ),
        }
    }
}

/// What one S3 stand-in's agentd did.
pub struct StoreRun {
    pub s3: String,
    pub idle: Option<Mem>,
    pub image: PhaseResult,
    /// `attachment` at the client minus the proxy handing agentd the image's `output_item.done`.
    pub after_item_done: Vec<Duration>,
    /// Attachments the proxy had no `output_item.done` for.
    pub unmatched: usize,
    /// agentd's own `ingest_ms` from its JSON log (`"image stored"` lines).
    pub ingest_ms: Vec<f64>,
    /// agentd stdout: lines, unparsed, WARN/ERROR lines, samples.
    pub log: (u64, u64, u64, Vec<String>),
    pub downloads: Vec<Result<(), String>>,
    pub sql: Result<SqlDelta, String>,
    pub exited: bool,
}

/// How the store section runs.
pub struct StoreSpec {
    pub clients: usize,
    pub rounds: usize,
    pub turns_per_client: usize,
    pub message: String,
    pub downloads: usize,
    /// Route agentd through the timing proxy (without it, only agentd's own `ingest_ms` times attachments).
    pub proxy: bool,
}

struct Store<'a> {
    s3: &'a S3StandIn,
    agentd: Agentd,
    db: InstanceDb,
    log: IngestLog,
}

/// Runs the section over every stand-in in `stores`.
pub async fn run_stores(env: &Env<'_>, spec: &StoreSpec, stands: &[S3StandIn]) -> Result<Vec<StoreRun>> {
    let mut stores = Vec::new();
    for s3 in stands {
        (env.progress)(&format!(
            "starting agentd on {} ({})…",
            s3.kind.name(),
            s3.endpoint
        ));
        let log = IngestLog::default();
        let upstream = if spec.proxy {
            env.proxy.base_url()
        } else {
            env.fake_url.clone()
        };
        let (agentd, db) = env
            .start_agentd(s3.kind.ident(), &upstream, s3, "info", Some(log.tap()))
            .await?;
        stores.push(Store { s3, agentd, db, log });
    }
    let mut idle = Vec::new();
    for st in &stores {
        env.warm(&st.agentd, "assistant", "hello #fake:text").await?;
        let w = env.warm(&st.agentd, "designer", &spec.message).await?;
        let marked = !spec.proxy || w.tag.and_then(|t| env.proxy.item_done(t)).is_some();
        if w.attachments != 1 || !marked {
            bail!(
                "the image warm-up turn through agentd on {} carried {} attachment events (image.failed: {}), \
                 timing proxy mark: {marked}; agentd log:\n{}",
                st.s3.kind.name(),
                w.attachments,
                w.images_failed,
                st.agentd.log_tail(20)
            );
        }
    }
    for st in &stores {
        // Every pooled database connection prepares its statements before anything is counted; a small
        // image keeps this batch from growing agentd's memory before the idle reading.
        let reqs = clients::requests(
            &env.endpoint(&st.agentd),
            spec.clients,
            "designer",
            "draw #fake:image",
        )?;
        interleave::warm_batch(&env.client, reqs, env.turn_timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{e}; agentd log:\n{}", st.agentd.log_tail(20)))?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for st in &stores {
        idle.push(agentd::mem(st.agentd.pid()));
    }
    let names: Vec<String> = stores.iter().filter_map(|s| s.db.pg_name.clone()).collect();
    let census = match &env.dbs.stats {
        Some(s) if !names.is_empty() => {
            (env.progress)("waiting for PostgreSQL's transaction counters to settle (11 s)…");
            pgstats::settle().await;
            Some((s, s.snapshot(&names).await?))
        }
        _ => None,
    };
    let logged: Vec<usize> = stores.iter().map(|s| s.log.stored()).collect();
    let mut arms = Vec::new();
    for st in &stores {
        arms.push(Arm {
            name: st.s3.kind.name().to_owned(),
            requests: clients::requests(&env.endpoint(&st.agentd), spec.clients, "designer", &spec.message)?,
            watch: Some(Watch {
                pid: st.agentd.pid(),
                database_url: &st.db.url,
                pg: env.dbs.stats.as_ref(),
                pg_db: st.db.pg_name.as_deref(),
            }),
        });
    }
    let plan = Plan {
        rounds: spec.rounds,
        turns_per_client: spec.turns_per_client,
        turn_timeout: env.turn_timeout,
        batch_deadline: env.batch_deadline,
        sample_every: Duration::from_millis(20),
        keep_attachments: spec.downloads,
    };
    (env.progress)(&format!(
        "image turns {:?}: {} batches per stand-in, alternating",
        spec.message, spec.rounds
    ));
    let results = interleave::alternate(&env.client, &arms, &plan, env.progress).await;
    drop(arms);
    let after = match &census {
        Some((s, _)) => {
            (env.progress)("waiting for PostgreSQL's transaction counters to settle (11 s)…");
            pgstats::settle().await;
            Some(s.snapshot(&names).await?)
        }
        None => None,
    };
    let mut out = Vec::new();
    for (((mut st, image), idle), from) in stores.into_iter().zip(results).zip(idle).zip(logged) {
        let mut after_item_done = Vec::new();
        let mut unmatched = 0;
        for (tag, at) in &image.marks {
            match env.proxy.item_done(*tag) {
                Some(done) => after_item_done.push(at.saturating_duration_since(done)),
                None => unmatched += 1,
            }
        }
        let mut downloads = Vec::new();
        for a in image.attachment_refs.iter().take(spec.downloads) {
            downloads.push(check_download(&env.client, a).await);
        }
        let sql = match (&census, &after, &st.db.pg_name) {
            (Some((s, before)), Some(after), Some(name)) => Ok(s.delta(before, after, name)),
            _ => Err(env
                .dbs
                .stats_error
                .clone()
                .unwrap_or_else(|| "no PostgreSQL statistics".to_owned())),
        };
        let exited = !st.agentd.alive();
        out.push(StoreRun {
            s3: format!("{} ({})", st.s3.endpoint, st.s3.source),
            idle,
            after_item_done,
            unmatched,
            ingest_ms: st.log.ingest_since(from),
            log: st.log.counts(),
            downloads,
            sql,
            exited,
            image,
        });
    }
    Ok(out)
}

/// GETs an attachment URL and checks the PNG magic and `size_bytes`.
pub async fn check_download(client: &reqwest::Client, a: &AttachmentRef) -> Result<(), String> {
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
