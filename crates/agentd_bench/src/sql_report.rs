//! The "SQL per turn" block both reports print: statements besides transaction control (and of those, the run
//! event log's), BEGINs and transactions per turn, and the statements that ran most, per turn.

use std::fmt::Write as _;

use crate::fmt::{num, row, table};
use crate::pgstats::SqlDelta;
use crate::turns::clip;

/// Per-turn figures of `d` over `turns` turns.
pub struct PerTurn {
    pub statements: Option<f64>,
    pub run_events: Option<f64>,
    pub begins: Option<f64>,
    pub xacts: f64,
}

pub fn per_turn(d: &SqlDelta, turns: usize) -> Option<PerTurn> {
    if turns == 0 {
        return None;
    }
    let t = turns as f64;
    let s = d.statements.as_ref();
    Some(PerTurn {
        statements: s.map(|s| s.work as f64 / t),
        run_events: s.map(|s| s.run_events as f64 / t),
        begins: s.map(|s| s.begins as f64 / t),
        xacts: d.xacts as f64 / t,
    })
}

/// The block: `what` names the turns (e.g. "text turn").
pub fn render(out: &mut String, d: &SqlDelta, turns: usize, what: &str, top: usize) {
    let Some(p) = per_turn(d, turns) else {
        let _ = writeln!(out, "  (no {what} completed: nothing to divide by)");
        return;
    };
    let rows = vec![
        row(
            "statements besides BEGIN/COMMIT/ROLLBACK",
            vec![num(p.statements, 2)],
        ),
        row(
            "  of which the run log (run_events, pg_notify)",
            vec![num(p.run_events, 2)],
        ),
        row("BEGIN", vec![num(p.begins, 2)]),
        row(
            "transactions (xact_commit + xact_rollback)",
            vec![num(Some(p.xacts), 2)],
        ),
    ];
    table(out, &[format!("per {what} ({turns} turns)")], &rows);
    let Some(s) = &d.statements else {
        return;
    };
    let _ = writeln!(out, "  most frequent statements, calls per {what}:");
    for (calls, q) in s.top.iter().take(top) {
        let _ = writeln!(out, "    {:>6.2}  {}", *calls as f64 / turns as f64, clip(q, 110));
    }
}
