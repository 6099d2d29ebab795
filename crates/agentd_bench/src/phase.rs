//! One measured batch: N concurrent clients each running K sequential turns (bounded by a deadline), with
//! agentd's RSS sampled at a fixed interval, its VmHWM reset at the start, and its CPU time, PostgreSQL's CPU
//! time and the SQLite files' growth taken around the batch. The batches of one side of an interleaved
//! comparison are merged into one [`PhaseResult`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pgstats::PgStats;

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::agentd;
use crate::stats::Dist;
use crate::turns::{self, AttachmentRef, TurnRequest, TurnTiming};

/// What a phase runs.
pub struct PhaseSpec {
    /// One request per client (each client has its own token).
    pub requests: Vec<TurnRequest>,
    pub turns_per_client: usize,
    pub turn_timeout: Duration,
    /// No new turn starts after this.
    pub deadline: Duration,
    /// How often agentd's VmRSS is sampled.
    pub sample_every: Duration,
    /// How many `attachment` references (url, size) to keep (the first clients to finish, their turns in order).
    pub keep_attachments: usize,
}

/// The agentd process to watch during a batch, and its database.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    pub pid: u32,
    pub database_url: &'a str,
    /// The PostgreSQL cluster whose CPU time is taken around the batch.
    pub pg: Option<&'a PgStats>,
    /// agentd's database in that cluster, whose size is taken around the batch.
    pub pg_db: Option<&'a str>,
}

impl Watch<'_> {
    /// The size of agentd's database: SQLite main + WAL files, or `pg_database_size`.
    async fn db_bytes(&self) -> Option<u64> {
        match (self.pg, self.pg_db) {
            (Some(pg), Some(db)) => pg.db_size(db).await,
            _ => agentd::sqlite_bytes(self.database_url),
        }
    }
}

/// What a phase measured.
#[derive(Debug, Clone, Default)]
pub struct PhaseResult {
    pub clients: usize,
    pub ok: usize,
    pub errors: usize,
    /// The most frequent error texts with their counts.
    pub error_samples: Vec<(String, usize)>,
    pub started: Dist,
    pub first_delta: Dist,
    pub last: Dist,
    pub wall: Duration,
    pub protocol_issues: u32,
    pub images_failed: u32,
    pub attachments: u32,
    /// Successful turns that carried exactly one `attachment`.
    pub one_attachment: usize,
    /// Time to the first final image (see [`TurnTiming::image_at`]).
    pub image_at: Dist,
    /// The first `keep_attachments` attachments received.
    pub attachment_refs: Vec<AttachmentRef>,
    pub bytes: u64,
    /// Tagged turns with an image: (turn tag, when the first image arrived at the client).
    pub marks: Vec<(u64, Instant)>,
    /// Batches merged into this result.
    pub batches: usize,
    /// agentd only: peak of the VmRSS samples, and VmHWM at the end (bytes).
    pub rss_peak: Option<u64>,
    pub hwm: Option<u64>,
    pub hwm_was_reset: bool,
    /// agentd only: CPU time (user + system) spent during the phase.
    pub cpu: Option<Duration>,
    /// agentd only: database growth (SQLite files, or `pg_database_size`).
    pub db_growth: Option<u64>,
    /// agentd with a PostgreSQL cluster on this machine: the cluster's CPU time during the batches.
    pub pg_cpu: Option<Duration>,
}

fn add_dur(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

impl PhaseResult {
    /// Successful turns per second of wall time.
    pub fn turns_per_sec(&self) -> Option<f64> {
        let s = self.wall.as_secs_f64();
        (s > 0.0 && self.ok > 0).then(|| self.ok as f64 / s)
    }

    /// agentd CPU milliseconds per successful turn.
    pub fn cpu_ms_per_turn(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.ok > 0).then(|| cpu.as_secs_f64() * 1000.0 / self.ok as f64)
    }

    /// PostgreSQL CPU milliseconds per successful turn.
    pub fn pg_cpu_ms_per_turn(&self) -> Option<f64> {
        let cpu = self.pg_cpu?;
        (self.ok > 0).then(|| cpu.as_secs_f64() * 1000.0 / self.ok as f64)
    }

    /// Adds another batch of the same side.
    pub fn merge(&mut self, b: PhaseResult) {
        let first = self.batches == 0;
        self.clients = self.clients.max(b.clients);
        self.ok += b.ok;
        self.errors += b.errors;
        for (msg, n) in b.error_samples {
            match self.error_samples.iter_mut().find(|(m, _)| *m == msg) {
                Some((_, k)) => *k += n,
                None => self.error_samples.push((msg, n)),
            }
        }
        self.error_samples.sort_by_key(|e| std::cmp::Reverse(e.1));
        self.error_samples.truncate(3);
        self.started.merge(&b.started);
        self.first_delta.merge(&b.first_delta);
        self.last.merge(&b.last);
        self.image_at.merge(&b.image_at);
        self.wall += b.wall;
        self.protocol_issues += b.protocol_issues;
        self.images_failed += b.images_failed;
        self.attachments += b.attachments;
        self.one_attachment += b.one_attachment;
        self.attachment_refs.extend(b.attachment_refs);
        self.bytes += b.bytes;
        self.marks.extend(b.marks);
        self.batches += b.batches;
        self.rss_peak = self.rss_peak.max(b.rss_peak);
        self.hwm = self.hwm.max(b.hwm);
        self.hwm_was_reset = (first || self.hwm_was_reset) && b.hwm_was_reset;
        self.cpu = add_dur(self.cpu, b.cpu);
        self.db_growth = match (self.db_growth, b.db_growth) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.pg_cpu = add_dur(self.pg_cpu, b.pg_cpu);
    }

    /// Database bytes per successful turn.
    pub fn db_bytes_per_turn(&self) -> Option<f64> {
        let g = self.db_growth?;
        (self.ok > 0).then(|| g as f64 / self.ok as f64)
    }
}

/// Samples VmRSS every `every` until told to stop; returns the peak.
async fn sample_rss(pid: u32, every: Duration, mut stop: oneshot::Receiver<()>) -> Option<u64> {
    let mut peak: Option<u64> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                if let Some(m) = agentd::mem(pid) {
                    peak = Some(peak.map_or(m.rss, |p| p.max(m.rss)));
                }
            }
        }
    }
    peak
}

/// Runs the phase.
pub async fn run(client: &reqwest::Client, spec: PhaseSpec, watch: Option<Watch<'_>>) -> PhaseResult {
    let clients = spec.requests.len();
    let hwm_was_reset = watch.is_some_and(|w| agentd::reset_hwm(w.pid));
    let cpu0 = watch.and_then(|w| agentd::cpu_time(w.pid));
    let db0 = match watch {
        Some(w) => w.db_bytes().await,
        None => None,
    };
    // Taken after the size query: that query is the bench's work, not agentd's.
    let pg0 = watch.and_then(|w| w.pg).and_then(PgStats::cpu);
    let (stop_tx, stop_rx) = oneshot::channel();
    let every = spec.sample_every;
    let keep = spec.keep_attachments;
    let sampler = watch.map(|w| tokio::spawn(sample_rss(w.pid, every, stop_rx)));

    let t0 = Instant::now();
    let end = t0 + spec.deadline;
    let mut set = JoinSet::new();
    for req in spec.requests {
        let client = client.clone();
        let req = Arc::new(req);
        let (k, limit) = (spec.turns_per_client, spec.turn_timeout);
        set.spawn(async move {
            let mut out: Vec<Result<TurnTiming, String>> = Vec::with_capacity(k);
            for _ in 0..k {
                if Instant::now() >= end {
                    break;
                }
                out.push(turns::run_turn(&client, &req, limit).await);
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(v) => all.extend(v),
            Err(e) => all.push(Err(format!("client task failed: {e}"))),
        }
    }
    let wall = t0.elapsed();

    let _ = stop_tx.send(());
    let rss_peak = match sampler {
        Some(h) => h.await.ok().flatten(),
        None => None,
    };
    let mut r = summarize(all, clients, wall, keep);
    r.rss_peak = rss_peak;
    r.hwm_was_reset = hwm_was_reset;
    if let Some(w) = watch {
        r.hwm = agentd::mem(w.pid).map(|m| m.hwm);
        r.cpu = match (cpu0, agentd::cpu_time(w.pid)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        // PostgreSQL's CPU before the size query below, which is the bench's, not agentd's.
        r.pg_cpu = match (pg0, w.pg.and_then(PgStats::cpu)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        r.db_growth = match (db0, w.db_bytes().await) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
    }
    r
}

pub(crate) fn summarize(
    all: Vec<Result<TurnTiming, String>>,
    clients: usize,
    wall: Duration,
    keep: usize,
) -> PhaseResult {
    let mut r = PhaseResult {
        clients,
        wall,
        batches: 1,
        ..PhaseResult::default()
    };
    let (mut started, mut first, mut last, mut image) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut errors: Vec<(String, usize)> = Vec::new();
    for item in all {
        match item {
            Ok(t) => {
                r.ok += 1;
                started.extend(t.started);
                first.extend(t.first_delta);
                last.push(t.last);
                r.protocol_issues += t.protocol_issues;
                r.images_failed += t.images_failed;
                r.attachments += t.attachments;
                if t.attachments == 1 {
                    r.one_attachment += 1;
                }
                image.extend(t.image_at);
                if let (Some(tag), Some(at)) = (t.tag, t.image_at) {
                    r.marks.push((tag, t.sent + at));
                }
                if r.attachment_refs.len() < keep
                    && let Some(a) = t.attachment
                {
                    r.attachment_refs.push(a);
                }
                r.bytes += t.bytes;
            }
            Err(e) => {
                r.errors += 1;
                match errors.iter_mut().find(|(m, _)| *m == e) {
                    Some((_, n)) => *n += 1,
                    None => errors.push((e, 1)),
                }
            }
        }
    }
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    errors.truncate(3);
    r.error_samples = errors;
    r.started = Dist::new(started);
    r.first_delta = Dist::new(first);
    r.last = Dist::new(last);
    r.image_at = Dist::new(image);
    r
}
