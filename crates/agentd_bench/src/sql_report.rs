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
    /// Of `run_events`: those that commit by themselves.
    pub run_log_writes: Option<f64>,
    pub tenant_reads: Option<f64>,
    pub begins: Option<f64>,
    pub xacts: f64,
    /// The turn's own statements per turn, from the integer counts: a difference of per-turn quotients is off
    /// in the last bit (293/60 − 113/60 > 3) and flipped a verdict printed as "3.00".
    own_statements: Option<f64>,
    /// The transaction counter less the run log's and tenant reads' autocommits, per turn (integer counts).
    own_counted: Option<f64>,
}

impl PerTurn {
    /// The turn's own statements and transactions: without the run log (counted apart by issue 7) and the
    /// auth cache's tenant status reads (once per tenant per `TENANT_CACHE_SECONDS`, not per turn), and
    /// whether the transactions are derived. Without a BEGIN each of the turn's statements commits by
    /// itself, so its transactions are its statements (derived, not counted); with BEGINs they are at most
    /// the statements and at most the database's transaction counter less the run log's and tenant reads'
    /// autocommits (an upper bound: that counter also holds autovacuum's and failed statements').
    pub fn own(&self) -> Option<(f64, f64, bool)> {
        let (statements, counted, begins) = (self.own_statements?, self.own_counted?, self.begins?);
        if begins == 0.0 {
            return Some((statements, statements, true));
        }
        Some((statements, statements.min(counted), false))
    }
}

/// [`PerTurn::own`] as printed: "3.00 / 3.00 (= statements: no BEGIN)" or "3.00 / ≤ 3.40".
pub fn own_text(p: &PerTurn) -> String {
    match p.own() {
        Some((st, x, true)) => format!("{st:.2} / {x:.2} (= statements: no BEGIN)"),
        Some((st, x, false)) => format!("{st:.2} / ≤ {x:.2}"),
        None => "not measured".to_owned(),
    }
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
        run_log_writes: s.map(|s| s.run_log_writes as f64 / t),
        tenant_reads: s.map(|s| s.tenant_reads as f64 / t),
        begins: s.map(|s| s.begins as f64 / t),
        xacts: d.xacts as f64 / t,
        own_statements: s.map(|s| (s.work - s.run_events - s.tenant_reads) as f64 / t),
        own_counted: s.map(|s| (d.xacts - s.run_log_writes - s.tenant_reads) as f64 / t),
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
            "  of which the run log's own (its writes, reads, NOTIFYs)",
            vec![num(p.run_events, 2)],
        ),
        row(
            "  of which tenant status reads (auth cache refill)",
            vec![num(p.tenant_reads, 2)],
        ),
        row("BEGIN", vec![num(p.begins, 2)]),
        row(
            "transactions (xact_commit + xact_rollback)",
            vec![num(Some(p.xacts), 2)],
        ),
        row(
            "the turn's own statements / transactions (no run log, no tenant reads)",
            vec![own_text(&p)],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgstats::Statements;

    fn delta(work: i64, run_events: i64, begins: i64, xacts: i64) -> SqlDelta {
        SqlDelta {
            xacts,
            statements: Some(Statements {
                work,
                run_events,
                run_log_writes: run_events,
                begins,
                ..Statements::default()
            }),
        }
    }

    #[test]
    fn the_turns_own_figures_are_exact_where_the_quotients_are_not() {
        // 293/60 − 113/60 is 3.0000000000000004 in floating point.
        let (work, log) = (std::hint::black_box(293.0_f64), std::hint::black_box(113.0_f64));
        assert!(work / 60.0 - log / 60.0 > 3.0);
        let p = per_turn(&delta(293, 113, 0, 300), 60).unwrap();
        assert_eq!(p.own(), Some((3.0, 3.0, true)));
        assert_eq!(own_text(&p), "3.00 / 3.00 (= statements: no BEGIN)");
        // With BEGINs: the counter less the run log's autocommits, at most the statements.
        let p = per_turn(&delta(293, 113, 60, 113 + 150), 60).unwrap();
        assert_eq!(p.own(), Some((3.0, 2.5, false)));
    }
}
