//! The printed report of `bench-relay`: the capacity run (turns/s, CPU of agentd and PostgreSQL, SQL per
//! turn), the paced text turns per N (added time to first / last event and the ratio, agentd vs direct), the
//! big unknown event and the image turn; then the issue's targets (see [`crate::compare`]). Every latency
//! figure comes with its sample count.

use std::fmt::Write as _;

use crate::agentd::Mem;
use crate::fmt::{MB, Row, count, head, mb, num, pair, row, table};
use crate::pgstats::SqlDelta;
use crate::phase::PhaseResult;
use crate::stats::{Dist, diff, ratio};

/// What the run was.
pub struct Header {
    pub binary: String,
    pub database: String,
    pub gap_ms: u64,
    pub paced_message: String,
    /// Cores and load average (see [`crate::harness::machine_line`]).
    pub machine: String,
}

/// Paced text turns at one concurrency, both ways.
pub struct Paced {
    pub n: usize,
    pub rounds: usize,
    pub turns_per_client: usize,
    pub agentd: PhaseResult,
    pub direct: PhaseResult,
}

/// Unpaced text turns, closed loop, both ways, with what the database did.
pub struct Capacity {
    pub n: usize,
    pub rounds: usize,
    pub turns_per_client: usize,
    pub message: String,
    pub agentd: PhaseResult,
    pub direct: PhaseResult,
    /// What agentd's database did during the capacity run, or why it is not known.
    pub sql: Result<SqlDelta, String>,
}

/// The same single-client turn with and without the big unknown event, both ways.
pub struct BigEvent {
    pub mb: u32,
    pub rounds: usize,
    pub direct_plain: PhaseResult,
    pub direct_big: PhaseResult,
    pub agentd_plain: PhaseResult,
    pub agentd_big: PhaseResult,
}

/// The image turn, both ways.
pub struct ImageTurn {
    pub message: String,
    pub agentd: PhaseResult,
    pub direct: PhaseResult,
}

pub struct Report {
    pub header: Header,
    pub idle: Option<Mem>,
    pub capacity: Option<Capacity>,
    pub paced: Vec<Paced>,
    pub big: Option<BigEvent>,
    pub image: Option<ImageTurn>,
}

/// "agentd / direct" of a percentile, its difference and its ratio.
fn lat_rows(rows: &mut Vec<Row>, name: &str, a: &[&Dist], d: &[&Dist]) {
    let cells = |f: &dyn Fn(&Dist, &Dist) -> String| -> Vec<String> {
        a.iter().zip(d).map(|(a, d)| f(a, d)).collect()
    };
    rows.push((
        format!("{name} p50 ms (agentd / direct)"),
        cells(&|a, d| pair(a.p50(), d.p50(), 2)),
    ));
    rows.push((
        format!("{name} p99 ms (agentd / direct)"),
        cells(&|a, d| pair(a.p99(), d.p99(), 2)),
    ));
    rows.push((
        format!("added {name} p50 / p99 ms"),
        cells(&|a, d| pair(diff(a.p50(), d.p50()), diff(a.p99(), d.p99()), 2)),
    ));
    rows.push((
        format!("{name} ratio p50 / p99 (agentd ÷ direct)"),
        cells(&|a, d| pair(ratio(a.p50(), d.p50()), ratio(a.p99(), d.p99()), 2)),
    ));
}

fn ok_err(a: &PhaseResult, d: &PhaseResult) -> String {
    format!("{} / {} ({} / {})", a.ok, d.ok, a.errors, d.errors)
}

fn paced_section(out: &mut String, rows_in: &[Paced]) {
    let h: Vec<String> = rows_in.iter().map(|r| format!("N={}", r.n)).collect();
    let a: Vec<&PhaseResult> = rows_in.iter().map(|r| &r.agentd).collect();
    let d: Vec<&PhaseResult> = rows_in.iter().map(|r| &r.direct).collect();
    let per = |f: &dyn Fn(&Paced) -> String| -> Vec<String> { rows_in.iter().map(f).collect() };
    let mut rows = vec![
        row(
            "batches per side × clients × turns",
            per(&|r| format!("{} × {} × {}", r.rounds, r.n, r.turns_per_client)),
        ),
        row(
            "turns ok agentd / direct (errors)",
            per(&|r| ok_err(&r.agentd, &r.direct)),
        ),
        row(
            "TTFE samples agentd / direct",
            per(&|r| format!("{} / {}", r.agentd.first_delta.len(), r.direct.first_delta.len())),
        ),
    ];
    let fa: Vec<&Dist> = a.iter().map(|p| &p.first_delta).collect();
    let fd: Vec<&Dist> = d.iter().map(|p| &p.first_delta).collect();
    lat_rows(&mut rows, "TTFE", &fa, &fd);
    let la: Vec<&Dist> = a.iter().map(|p| &p.last).collect();
    let ld: Vec<&Dist> = d.iter().map(|p| &p.last).collect();
    lat_rows(&mut rows, "TTLE", &la, &ld);
    rows.push(row(
        "agentd CPU ms / turn",
        per(&|r| num(r.agentd.cpu_ms_per_turn(), 3)),
    ));
    rows.push(row(
        "PostgreSQL CPU ms / turn",
        per(&|r| num(r.agentd.pg_cpu_ms_per_turn(), 3)),
    ));
    rows.push(row(
        "agentd peak RSS MB (samples, VmHWM)",
        per(&|r| pair(mb(r.agentd.rss_peak), mb(r.agentd.hwm), 1)),
    ));
    rows.push(row(
        "agentd contract deviations",
        per(&|r| r.agentd.protocol_issues.to_string()),
    ));
    table(out, &h, &rows);
    for r in rows_in {
        errors_of(out, &format!("N={} agentd", r.n), &r.agentd);
        errors_of(out, &format!("N={} direct", r.n), &r.direct);
    }
}

fn capacity_section(out: &mut String, c: &Capacity) {
    let (a, d) = (&c.agentd, &c.direct);
    let both = |x: Option<f64>, y: Option<f64>| x.zip(y).map(|(x, y)| x + y);
    let rows = vec![
        row(
            "batches × clients × turns",
            vec![format!("{} × {} × {}", c.rounds, c.n, c.turns_per_client); 2],
        ),
        row(
            "turns ok / errors",
            vec![
                format!("{} / {}", a.ok, a.errors),
                format!("{} / {}", d.ok, d.errors),
            ],
        ),
        row(
            "turns/s (during its own batches)",
            vec![num(a.turns_per_sec(), 0), num(d.turns_per_sec(), 0)],
        ),
        row(
            "TTLE p50 / p99 ms",
            vec![
                pair(a.last.p50(), a.last.p99(), 2),
                pair(d.last.p50(), d.last.p99(), 2),
            ],
        ),
        row(
            "agentd CPU ms / turn",
            vec![num(a.cpu_ms_per_turn(), 3), String::new()],
        ),
        row(
            "PostgreSQL CPU ms / turn (whole cluster)",
            vec![num(a.pg_cpu_ms_per_turn(), 3), String::new()],
        ),
        row(
            "agentd + PostgreSQL CPU ms / turn",
            vec![
                num(both(a.cpu_ms_per_turn(), a.pg_cpu_ms_per_turn()), 3),
                String::new(),
            ],
        ),
    ];
    table(out, &head(&["agentd", "direct"]), &rows);
    errors_of(out, "capacity agentd", a);
    errors_of(out, "capacity direct", d);
    let _ = writeln!(out, "\nSQL per text turn (agentd's database, capacity run)");
    match &c.sql {
        Ok(delta) => crate::sql_report::render(out, delta, a.ok, "text turn", 12),
        Err(why) => {
            let _ = writeln!(out, "  not measured: {why}");
        }
    }
}

/// The big event's extra TTLE p50 through agentd minus the one straight to the fake.
pub fn relayed_extra(b: &BigEvent) -> Option<f64> {
    let through = diff(b.agentd_big.last.p50(), b.agentd_plain.last.p50());
    let direct = diff(b.direct_big.last.p50(), b.direct_plain.last.p50());
    diff(through, direct)
}

fn big_section(out: &mut String, b: &BigEvent) {
    let cols = [&b.agentd_plain, &b.agentd_big, &b.direct_plain, &b.direct_big];
    let cells = |f: &dyn Fn(&PhaseResult) -> String| -> Vec<String> { cols.iter().map(|p| f(p)).collect() };
    let rows = vec![
        row(
            "turns ok / errors",
            cells(&|p| format!("{} / {}", p.ok, p.errors)),
        ),
        row(
            "TTLE p50 / p99 ms",
            cells(&|p| pair(p.last.p50(), p.last.p99(), 1)),
        ),
        row(
            "MB received / turn",
            cells(&|p| num((p.ok > 0).then(|| p.bytes as f64 / MB / p.ok as f64), 2)),
        ),
        row(
            "extra TTLE p50 of the big event, ms",
            vec![
                String::new(),
                num(diff(b.agentd_big.last.p50(), b.agentd_plain.last.p50()), 1),
                String::new(),
                num(diff(b.direct_big.last.p50(), b.direct_plain.last.p50()), 1),
            ],
        ),
    ];
    table(
        out,
        &head(&["agentd plain", "agentd big", "direct plain", "direct big"]),
        &rows,
    );
    let _ = writeln!(
        out,
        "  agentd's extra minus direct's extra (what relaying the big event costs): {} ms",
        num(relayed_extra(b), 1)
    );
    for (label, p) in [
        ("agentd plain", &b.agentd_plain),
        ("agentd big", &b.agentd_big),
        ("direct plain", &b.direct_plain),
        ("direct big", &b.direct_big),
    ] {
        errors_of(out, label, p);
    }
}

fn image_section(out: &mut String, im: &ImageTurn) {
    let (a, d) = (&im.agentd, &im.direct);
    let rows = vec![
        row("turns ok agentd / direct (errors)", vec![ok_err(a, d)]),
        row(
            "TTLE p50 ms (agentd / direct)",
            vec![pair(a.last.p50(), d.last.p50(), 1)],
        ),
        row(
            "TTLE p99 ms (agentd / direct)",
            vec![pair(a.last.p99(), d.last.p99(), 1)],
        ),
        row(
            "added TTLE p50 / p99 ms",
            vec![pair(
                diff(a.last.p50(), d.last.p50()),
                diff(a.last.p99(), d.last.p99()),
                1,
            )],
        ),
        row(
            "turns/s (agentd / direct)",
            vec![pair(a.turns_per_sec(), d.turns_per_sec(), 2)],
        ),
        row(
            "attachment / image.failed events (agentd)",
            vec![format!("{} / {}", a.attachments, a.images_failed)],
        ),
        row(
            "agentd / PostgreSQL CPU ms per turn",
            vec![pair(a.cpu_ms_per_turn(), a.pg_cpu_ms_per_turn(), 1)],
        ),
        row(
            "agentd database growth MB / turn",
            vec![num(a.db_bytes_per_turn().map(|b| b / MB), 3)],
        ),
    ];
    table(out, &head(&["value"]), &rows);
    errors_of(out, "agentd", a);
    errors_of(out, "direct", d);
}

pub(crate) fn errors_of(out: &mut String, label: &str, p: &PhaseResult) {
    for (msg, n) in &p.error_samples {
        let _ = writeln!(out, "  {label} error ×{n}: {msg}");
    }
}

/// Renders the whole report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let h = &r.header;
    let _ = writeln!(
        out,
        "bench-relay: what agentd adds on top of the upstream (fake Responses API, loopback)"
    );
    let _ = writeln!(out, "  agentd binary: {}", h.binary);
    let _ = writeln!(out, "  database: {}; storage: memory", h.database);
    let _ = writeln!(out, "  machine: {}", h.machine);
    let _ = writeln!(
        out,
        "  every comparison runs agentd and direct in alternating batches (A B B A …) under the same load"
    );
    let _ = writeln!(
        out,
        "  TTFE = first message.delta (direct: first response.output_text.delta); TTLE = terminal event;"
    );
    let _ = writeln!(
        out,
        "  times from request send, client side; added = agentd percentile − direct percentile"
    );
    let _ = writeln!(out, "  agentd idle RSS: {} MB", num(mb(r.idle.map(|m| m.rss)), 1));
    if let Some(c) = &r.capacity {
        let _ = writeln!(
            out,
            "\nCapacity: N={} closed loop, unpaced text turn {:?} (the fake sends events back to back)",
            c.n, c.message
        );
        capacity_section(&mut out, c);
    }
    if !r.paced.is_empty() {
        let _ = writeln!(
            out,
            "\nPaced text turns {:?} ({} ms between upstream events)",
            h.paced_message, h.gap_ms
        );
        paced_section(&mut out, &r.paced);
    }
    if let Some(b) = &r.big {
        let _ = writeln!(
            out,
            "\nOne client, {} MB single-line unknown upstream event (big-other={}) vs the same turn without it, {} rounds",
            b.mb, b.mb, b.rounds
        );
        big_section(&mut out, b);
    }
    if let Some(im) = &r.image {
        let _ = writeln!(
            out,
            "\nImage turn {:?} (agent designer; direct: same tool config), {} clients",
            im.message,
            count(Some(im.agentd.clients))
        );
        image_section(&mut out, im);
    }
    crate::compare::targets_section(&mut out, r);
    crate::compare::python_section(&mut out, r);
    out
}
