//! The comparison part of the `bench-relay` report: issue 7's targets with met / MISSED, and the Python
//! reference figures from design.md ("The bar to clear") beside this run's.

use crate::fmt::{MB, mb, num, table, targets, verdict};
use crate::phase::PhaseResult;
use crate::report::{Report, relayed_extra};
use crate::stats::diff;

/// The targets of issue 7 (points 9 and 10) and the earlier relay targets.
pub fn targets_section(out: &mut String, r: &Report) {
    let at = |n: usize| r.paced.iter().find(|p| p.n == n);
    let ttfe50 = at(50).and_then(|p| diff(p.agentd.first_delta.p99(), p.direct.first_delta.p99()));
    let samples50 = at(50).map_or(0, |p| p.agentd.first_delta.len().min(p.direct.first_delta.len()));
    let cap = r.capacity.as_ref();
    let tps = cap.and_then(|c| c.agentd.turns_per_sec());
    let cpu = cap.and_then(|c| c.agentd.cpu_ms_per_turn());
    let pg = cap.and_then(|c| c.agentd.pg_cpu_ms_per_turn());
    let relayed = r.big.as_ref().and_then(relayed_extra);
    let rss200 = at(200).and_then(|p| {
        mb(p.agentd
            .rss_peak
            .max(p.agentd.hwm.filter(|_| p.agentd.hwm_was_reset)))
    });
    let rows = vec![
        (
            format!("added TTFE p99 at N=50 (n={samples50} each side)"),
            "≤ 5 ms".to_owned(),
            num(ttfe50, 2),
            verdict(ttfe50, 5.0, false),
        ),
        (
            "agentd CPU per text turn (capacity run)".to_owned(),
            "≤ 1 ms".to_owned(),
            format!("{} (PostgreSQL {})", num(cpu, 3), num(pg, 3)),
            verdict(cpu, 1.0, false),
        ),
        (
            "text turns/s at N=50 (capacity run)".to_owned(),
            "≥ 1,000".to_owned(),
            num(tps, 0),
            verdict(tps, 1000.0, true),
        ),
        (
            "big event relayed, extra TTLE p50".to_owned(),
            "≤ 10 ms".to_owned(),
            num(relayed, 2),
            verdict(relayed, 10.0, false),
        ),
        (
            "agentd peak RSS at N=200, text".to_owned(),
            "≤ 100 MB".to_owned(),
            num(rss200, 1),
            verdict(rss200, 100.0, false),
        ),
    ];
    targets(
        out,
        "Targets (issue 7: points 9, 10; earlier relay targets)",
        rows,
    );
}

pub fn python_section(out: &mut String, r: &Report) {
    let one = r.paced.iter().find(|t| t.n == 1);
    let ttfe = one.map(|t| {
        format!(
            "{} ms p50, {} ms p99",
            num(diff(t.agentd.first_delta.p50(), t.direct.first_delta.p50()), 2),
            num(diff(t.agentd.first_delta.p99(), t.direct.first_delta.p99()), 2)
        )
    });
    let img = r.image.as_ref();
    let img_ttle = img.map(|i| {
        format!(
            "{} ms p50",
            num(diff(i.agentd.last.p50(), i.direct.last.p50()), 1)
        )
    });
    let cap = r.capacity.as_ref().map(|c| &c.agentd);
    let tps = format!(
        "{} (N={}) / {} (N={})",
        num(cap.and_then(PhaseResult::turns_per_sec), 0),
        cap.map_or(0, |c| c.clients),
        num(img.and_then(|i| i.agentd.turns_per_sec()), 2),
        img.map_or(0, |i| i.agentd.clients)
    );
    let cpu = format!(
        "{} ms / {} ms (+ PostgreSQL {} / {})",
        num(cap.and_then(PhaseResult::cpu_ms_per_turn), 2),
        num(img.and_then(|i| i.agentd.cpu_ms_per_turn()), 1),
        num(cap.and_then(PhaseResult::pg_cpu_ms_per_turn), 2),
        num(img.and_then(|i| i.agentd.pg_cpu_ms_per_turn()), 1)
    );
    let peak_text = r.paced.iter().filter_map(|t| t.agentd.rss_peak).max();
    let mem = format!(
        "{} MB / text peak {} MB (50 image turns: bench-images)",
        num(mb(r.idle.map(|m| m.rss)), 1),
        num(mb(peak_text), 1)
    );
    let db = img
        .and_then(|i| i.agentd.db_bytes_per_turn())
        .map(|b| format!("{} MB", num(Some(b / MB), 3)));
    let sql = r.capacity.as_ref().and_then(|c| {
        let d = c.sql.as_ref().ok()?;
        let p = crate::sql_report::per_turn(d, c.agentd.ok)?;
        Some(format!(
            "text turn: {} in {} (image turn: bench-images)",
            num(p.statements, 1),
            num(Some(p.xacts), 1)
        ))
    });
    let na = || "n/a".to_owned();
    let rows = vec![
        (
            "added TTFE, one client, text turn".to_owned(),
            vec!["71 ms p50, 96 ms p99".to_owned(), ttfe.unwrap_or_else(na)],
        ),
        (
            "added TTLE, one client, 4 MB image turn".to_owned(),
            vec!["746 ms p50".to_owned(), img_ttle.unwrap_or_else(na)],
        ),
        (
            "turns/s, one process: text / 4 MB image".to_owned(),
            vec!["4–6 / 1.2–1.4".to_owned(), tps],
        ),
        (
            "server CPU per turn: text / 4 MB image".to_owned(),
            vec!["138–245 ms / 540–660 ms".to_owned(), cpu],
        ),
        (
            "memory idle / peak".to_owned(),
            vec!["316 MB / 1,514 MB (50 image turns)".to_owned(), mem],
        ),
        (
            "database growth per 4 MB image turn".to_owned(),
            vec!["12.6 MB".to_owned(), db.unwrap_or_else(na)],
        ),
        (
            "SQL statements in transactions per turn".to_owned(),
            vec!["211 in 47 (image turn)".to_owned(), sql.unwrap_or_else(na)],
        ),
    ];
    out.push_str(
        "\nPython reference (design.md, \"The bar to clear\"; same machine kind, ±30 %) vs agentd\n",
    );
    table(
        out,
        &["Python reference".to_owned(), "agentd (this run)".to_owned()],
        &rows,
    );
}
