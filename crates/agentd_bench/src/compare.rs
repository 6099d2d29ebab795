//! The comparison part of the report: the targets with met / missed, and the Python reference figures
//! from design.md ("The bar to clear") beside this run's.

use std::fmt::Write as _;

use crate::phase::PhaseResult;
use crate::report::{MB, Report, mb, num, table};
use crate::stats::diff;

fn verdict(v: Option<f64>, limit: f64) -> &'static str {
    match v {
        None => "not measured",
        Some(x) if x <= limit => "met",
        Some(_) => "MISSED",
    }
}

/// The targets; `relayed` is the big event's extra TTLE p50 (agentd's extra minus direct's).
pub fn targets_section(out: &mut String, r: &Report, relayed: Option<f64>) {
    let at = |n: usize| r.text.iter().find(|t| t.n == n).and_then(|t| t.agentd.as_ref());
    let ttfe50 = at(50).map(|p| {
        let d = &r
            .text
            .iter()
            .find(|t| t.n == 50)
            .map(|t| t.direct.first_delta.clone())
            .unwrap_or_default();
        diff(p.first_delta.p99(), d.p99())
    });
    let rss200 = at(200).and_then(|p| mb(p.rss_peak.max(p.hwm.filter(|_| p.hwm_was_reset))));
    let _ = writeln!(out, "\nTargets (issue)");
    let rows = vec![
        (
            "added TTFE p99 at N=50".to_owned(),
            vec![
                "≤ 5 ms".to_owned(),
                num(ttfe50.flatten(), 2),
                verdict(ttfe50.flatten(), 5.0).to_owned(),
            ],
        ),
        (
            "big event relayed, extra TTLE p50".to_owned(),
            vec![
                "≤ 10 ms".to_owned(),
                num(relayed, 2),
                verdict(relayed, 10.0).to_owned(),
            ],
        ),
        (
            "agentd peak RSS at N=200, text".to_owned(),
            vec![
                "≤ 100 MB".to_owned(),
                num(rss200, 1),
                verdict(rss200, 100.0).to_owned(),
            ],
        ),
    ];
    table(
        out,
        &["target".to_owned(), "measured".to_owned(), "verdict".to_owned()],
        &rows,
    );
}

pub fn python_section(out: &mut String, r: &Report) {
    let one = r.text.iter().find(|t| t.n == 1);
    let one_a = one.and_then(|t| t.agentd.as_ref());
    let ttfe = one.zip(one_a).map(|(t, a)| {
        format!(
            "{} ms p50, {} ms p99",
            num(diff(a.first_delta.p50(), t.direct.first_delta.p50()), 2),
            num(diff(a.first_delta.p99(), t.direct.first_delta.p99()), 2)
        )
    });
    let img = r.image.as_ref();
    let img_a = img.and_then(|i| i.agentd.as_ref());
    let img_ttle = img
        .zip(img_a)
        .map(|(i, a)| format!("{} ms p50", num(diff(a.last.p50(), i.direct.last.p50()), 1)));
    let best_text = r
        .text
        .iter()
        .filter_map(|t| {
            t.agentd
                .as_ref()
                .and_then(PhaseResult::turns_per_sec)
                .map(|v| (v, t.n))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let tps = format!(
        "{} / {}",
        best_text.map_or("n/a".to_owned(), |(v, n)| format!("{v:.0} (N={n})")),
        img_a.map_or("n/a".to_owned(), |a| format!(
            "{} (N={})",
            num(a.turns_per_sec(), 2),
            a.clients
        ))
    );
    let text_cpu = r
        .text
        .iter()
        .rev()
        .find_map(|t| t.agentd.as_ref().and_then(PhaseResult::cpu_ms_per_turn));
    let cpu = format!(
        "{} ms / {} ms",
        num(text_cpu, 2),
        num(img_a.and_then(PhaseResult::cpu_ms_per_turn), 1)
    );
    let peak_text = r.text.iter().filter_map(|t| t.agentd.as_ref()?.rss_peak).max();
    let mem = format!(
        "{} MB / {} MB (image, N={}); text peak {} MB",
        num(mb(r.idle.map(|m| m.rss)), 1),
        num(mb(img_a.and_then(|a| a.rss_peak)), 1),
        img_a.map_or(0, |a| a.clients),
        num(mb(peak_text), 1)
    );
    let db = img_a.map(|a| format!("{} MB", num(a.db_bytes_per_turn().map(|b| b / MB), 3)));
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
    ];
    let _ = writeln!(
        out,
        "\nPython reference (design.md, \"The bar to clear\"; same machine, ±30 %) vs agentd"
    );
    table(
        out,
        &["Python reference".to_owned(), "agentd (this run)".to_owned()],
        &rows,
    );
}
