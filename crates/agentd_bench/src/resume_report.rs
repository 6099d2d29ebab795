//! The `bench-resume` report: runs and resumes, the exactly-once check (lost, duplicated, different events
//! against a full replay), the added latency of an event seen through another replica, the run event log's
//! rows and bytes per run, the cost (CPU, memory, SQL) of the phase, and the targets of issue 9.

use std::fmt::Write as _;
use std::time::Duration;

use crate::fmt::{MB, head, num, row, table, targets, verdict};
use crate::pgstats::SqlDelta;
use crate::resume::RunCheck;
use crate::sql_report;

/// Issue 9: an event seen through another replica, added latency p99.
pub const LATENCY_TARGET_MS: f64 = 20.0;

/// One run of the phase.
pub struct RunResult {
    pub image: bool,
    pub observed: bool,
    pub outcome: Result<RunCheck, String>,
}

/// `run_events` at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSize {
    pub rows: i64,
    /// `pg_total_relation_size` (heap, TOAST, indexes).
    pub total: i64,
    pub heap: i64,
    pub indexes: i64,
    /// Bytes of the JSON event arrays (`sum(octet_length(events))`).
    pub payload: i64,
}

/// One replica's cost over the phase.
pub struct ReplicaCost {
    pub cpu: Option<Duration>,
    pub idle_rss: Option<u64>,
    pub peak_rss: Option<u64>,
    /// WARN / ERROR lines in its log, and the first few.
    pub warnings: (usize, Vec<String>),
}

/// Everything the report prints.
pub struct ResumeRun {
    pub binary: String,
    pub database: String,
    pub store: String,
    pub machine: String,
    pub workload: Vec<String>,
    pub runs: Vec<RunResult>,
    pub wall: Duration,
    pub peak_in_flight: usize,
    pub log_before: Option<LogSize>,
    pub log_after: Option<LogSize>,
    pub replicas: Vec<ReplicaCost>,
    pub pg_cpu: Option<Duration>,
    pub sql: Result<SqlDelta, String>,
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    (n > 0).then(|| sorted[rank.clamp(1, n) - 1])
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// Sums over the completed runs.
#[derive(Default)]
struct Totals {
    ok: usize,
    replayed: usize,
    lost: usize,
    duplicated: usize,
    different: usize,
    resumes: usize,
    resume_errors: usize,
    broken: usize,
    not_completed: usize,
    own: Vec<f64>,
    other: Vec<f64>,
    other_minus_own: Vec<f64>,
    queued: Vec<f64>,
    written_to_own: Vec<f64>,
    observed: usize,
}

fn totals(runs: &[RunResult]) -> Totals {
    let mut t = Totals::default();
    for c in runs.iter().filter_map(|r| r.outcome.as_ref().ok()) {
        t.ok += 1;
        t.replayed += c.replayed;
        t.lost += c.lost;
        t.duplicated += c.duplicated;
        t.different += c.different;
        t.resumes += c.resumes;
        t.resume_errors += c.resume_errors;
        t.broken += c.broken;
        t.not_completed += usize::from(c.terminal != "run.completed");
        if let Some(l) = &c.latency {
            t.observed += 1;
            t.own.extend(&l.own);
            t.other.extend(&l.other);
            t.other_minus_own.extend(&l.other_minus_own);
            t.queued.extend(&l.queued);
            t.written_to_own.extend(&l.written_to_own);
        }
    }
    t.own = sorted(std::mem::take(&mut t.own));
    t.other = sorted(std::mem::take(&mut t.other));
    t.other_minus_own = sorted(std::mem::take(&mut t.other_minus_own));
    t.queued = sorted(std::mem::take(&mut t.queued));
    t.written_to_own = sorted(std::mem::take(&mut t.written_to_own));
    t
}

fn runs_section(out: &mut String, r: &ResumeRun, t: &Totals) {
    let failed: Vec<&String> = r.runs.iter().filter_map(|x| x.outcome.as_ref().err()).collect();
    let kinds = |image: bool, observed: bool| {
        r.runs
            .iter()
            .filter(|x| x.image == image && x.observed == observed && x.outcome.is_ok())
            .count()
    };
    let secs = r.wall.as_secs_f64();
    let _ = writeln!(
        out,
        "\nRuns: {} of {} checked in {secs:.1} s (text {} + image {} dropped and resumed, text {} + image {} \
         observed); peak {} in flight; {} failed; {} ended with `error`",
        t.ok,
        r.runs.len(),
        kinds(false, false),
        kinds(true, false),
        kinds(false, true),
        kinds(true, true),
        r.peak_in_flight,
        failed.len(),
        t.not_completed
    );
    for f in failed.iter().take(5) {
        let _ = writeln!(out, "  failed: {f}");
    }
    let rate = (secs > 0.0).then(|| t.resumes as f64 / secs);
    let rows = vec![
        row(
            "resumes (GET …/events with Last-Event-ID, another replica)",
            vec![t.resumes.to_string()],
        ),
        row("resumes per second", vec![num(rate, 1)]),
        row(
            "resume requests refused or failed (retried)",
            vec![t.resume_errors.to_string()],
        ),
        row(
            "streams that broke without the client dropping them",
            vec![t.broken.to_string()],
        ),
        row(
            "events checked (full replays, previews are not kept)",
            vec![t.replayed.to_string()],
        ),
        row(
            "events lost (in the replay, never received)",
            vec![t.lost.to_string()],
        ),
        row(
            "events duplicated (an id received twice)",
            vec![t.duplicated.to_string()],
        ),
        row(
            "events different from the replay (name or data)",
            vec![t.different.to_string()],
        ),
    ];
    table(out, &head(&["count"]), &rows);
}

fn latency_section(out: &mut String, t: &Totals) {
    let _ = writeln!(
        out,
        "\nAn event seen through another replica ({} observed runs, never dropped: the original stream, a follower \
         on the replica running the turn and one on another replica; events emitted after both followers were \
         connected), ms",
        t.observed
    );
    let line = |label: &str, v: &[f64]| {
        row(
            label,
            vec![
                num(pct(v, 50.0), 1),
                num(pct(v, 99.0), 1),
                num(v.last().copied(), 1),
                v.len().to_string(),
            ],
        )
    };
    let rows = vec![
        line("other replica − running replica (same event)", &t.other_minus_own),
        line("other replica − original stream", &t.other),
        line("running replica's follower − original stream", &t.own),
        line("  journal starts the event's write − original stream", &t.queued),
        line(
            "  running replica's follower − journal starts the write",
            &t.written_to_own,
        ),
    ];
    table(out, &head(&["p50", "p99", "max", "samples"]), &rows);
    let _ = writeln!(
        out,
        "  (the last two split the running replica's delay at its chunk's created_at, agentd's clock)"
    );
}

fn log_section(out: &mut String, r: &ResumeRun, t: &Totals) {
    let (Some(a), Some(b)) = (r.log_before, r.log_after) else {
        let _ = writeln!(out, "\nrun_events: not measured");
        return;
    };
    let runs = r.runs.len().max(1) as f64;
    let per = |x: i64, y: i64| Some((y - x) as f64 / runs);
    let events_per_run = (t.ok > 0).then(|| t.replayed as f64 / t.ok as f64);
    let _ = writeln!(
        out,
        "\nrun_events, growth over the phase divided by the {} runs started ({} → {} rows, {:.2} → {:.2} MB)",
        r.runs.len(),
        a.rows,
        b.rows,
        a.total as f64 / MB,
        b.total as f64 / MB
    );
    let bytes = per(a.total, b.total);
    let per_event = bytes.zip(events_per_run).map(|(b, e)| b / e.max(1.0));
    let rows = vec![
        row("rows per run", vec![num(per(a.rows, b.rows), 2)]),
        row("kept events per run (replay)", vec![num(events_per_run, 1)]),
        row("bytes per run, pg_total_relation_size", vec![num(bytes, 0)]),
        row("  heap", vec![num(per(a.heap, b.heap), 0)]),
        row("  indexes", vec![num(per(a.indexes, b.indexes), 0)]),
        row(
            "  TOAST",
            vec![num(
                per(a.total - a.heap - a.indexes, b.total - b.heap - b.indexes),
                0,
            )],
        ),
        row(
            "JSON payload bytes per run (events column)",
            vec![num(per(a.payload, b.payload), 0)],
        ),
        row("bytes per kept event (total size)", vec![num(per_event, 0)]),
    ];
    table(out, &head(&["value"]), &rows);
}

fn cost_section(out: &mut String, r: &ResumeRun) {
    let runs = r.runs.len().max(1) as f64;
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let mut rows = Vec::new();
    for (i, c) in r.replicas.iter().enumerate() {
        rows.push(row(
            &format!("agentd replica {}", i + 1),
            vec![
                num(ms(c.cpu).map(|v| v / 1000.0), 2),
                num(ms(c.cpu).map(|v| v / runs), 2),
                num(c.idle_rss.map(|b| b as f64 / MB), 1),
                num(c.peak_rss.map(|b| b as f64 / MB), 1),
            ],
        ));
    }
    let all: Option<Duration> = r.replicas.iter().map(|c| c.cpu).sum();
    rows.push(row(
        "agentd, all replicas",
        vec![
            num(ms(all).map(|v| v / 1000.0), 2),
            num(ms(all).map(|v| v / runs), 2),
            String::new(),
            String::new(),
        ],
    ));
    rows.push(row(
        "PostgreSQL cluster",
        vec![
            num(ms(r.pg_cpu).map(|v| v / 1000.0), 2),
            num(ms(r.pg_cpu).map(|v| v / runs), 2),
            String::new(),
            String::new(),
        ],
    ));
    let _ = writeln!(
        out,
        "\nCost over the phase (CPU from /proc; busy machine: compare with the wall time)"
    );
    table(
        out,
        &head(&["CPU s", "CPU ms per run", "idle RSS MB", "peak RSS MB"]),
        &rows,
    );
    for (i, c) in r.replicas.iter().enumerate() {
        if c.warnings.0 > 0 {
            let _ = writeln!(
                out,
                "  replica {} logged {} WARN/ERROR lines, e.g.:",
                i + 1,
                c.warnings.0
            );
            for l in &c.warnings.1 {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    let _ = writeln!(out, "\nSQL on the shared database over the phase, per run");
    match &r.sql {
        Ok(d) => sql_report::render(out, d, r.runs.len(), "run", 8),
        Err(e) => {
            let _ = writeln!(out, "  not measured: {e}");
        }
    }
}

/// The whole report.
pub fn render(r: &ResumeRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench-resume: runs dropped and resumed on other agentd replicas (issue 9)"
    );
    let _ = writeln!(out, "  agentd: {}", r.binary);
    let _ = writeln!(out, "  database: {}", r.database);
    let _ = writeln!(out, "  object store: {}", r.store);
    let _ = writeln!(out, "  machine: {}", r.machine);
    for w in &r.workload {
        let _ = writeln!(out, "  {w}");
    }
    let t = totals(&r.runs);
    runs_section(&mut out, r, &t);
    latency_section(&mut out, &t);
    log_section(&mut out, r, &t);
    cost_section(&mut out, r);
    let zero = |v: usize| if v == 0 { "met" } else { "MISSED" };
    let p99 = pct(&t.other_minus_own, 99.0);
    let p99_live = pct(&t.other, 99.0);
    let all = r.runs.iter().all(|x| x.outcome.is_ok());
    targets(
        &mut out,
        "Targets (issue 9, Proof: benchmark)",
        vec![
            ("events lost".into(), "0".into(), t.lost.to_string(), zero(t.lost)),
            (
                "events duplicated".into(),
                "0".into(),
                t.duplicated.to_string(),
                zero(t.duplicated),
            ),
            (
                "events different from the replay".into(),
                "0".into(),
                t.different.to_string(),
                zero(t.different),
            ),
            (
                "runs checked".into(),
                "all".into(),
                format!("{} / {}", t.ok, r.runs.len()),
                if all { "met" } else { "MISSED" },
            ),
            (
                "added latency via another replica p99 (vs running replica)".into(),
                format!("≤ {LATENCY_TARGET_MS:.0} ms"),
                num(p99, 1),
                verdict(p99, LATENCY_TARGET_MS, false),
            ),
            (
                "  the same, vs the original stream (journal write included)".into(),
                format!("≤ {LATENCY_TARGET_MS:.0} ms"),
                num(p99_live, 1),
                verdict(p99_live, LATENCY_TARGET_MS, false),
            ),
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_percentiles() {
        let v = sorted(vec![3.0, -1.0, 2.0, 1.0]);
        assert_eq!(pct(&v, 50.0), Some(1.0));
        assert_eq!(pct(&v, 99.0), Some(3.0));
        assert_eq!(pct(&v, 0.0), Some(-1.0));
        assert_eq!(pct(&[], 50.0), None);
    }
}
