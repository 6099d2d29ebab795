//! Plain-text report building blocks shared by both benchmarks: numbers with a fixed number of decimals
//! ("n/a" when missing), "a / b" pairs, MB, tables with a label column, and met / MISSED verdicts.

use std::fmt::Write as _;

/// 1 MB = 1,000,000 bytes.
pub const MB: f64 = 1_000_000.0;

pub fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.decimals$}"))
}

pub fn pair(a: Option<f64>, b: Option<f64>, decimals: usize) -> String {
    format!("{} / {}", num(a, decimals), num(b, decimals))
}

pub fn mb(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / MB)
}

pub fn count(v: Option<usize>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |n| n.to_string())
}

/// `met` when `v ≤ limit` (or `≥` with `at_least`), `MISSED` otherwise, `not measured` without a value.
pub fn verdict(v: Option<f64>, limit: f64, at_least: bool) -> &'static str {
    match v {
        None => "not measured",
        Some(x) if (at_least && x >= limit) || (!at_least && x <= limit) => "met",
        Some(_) => "MISSED",
    }
}

/// A table row: label, cells.
pub type Row = (String, Vec<String>);

pub fn row(label: &str, cells: Vec<String>) -> Row {
    (label.to_owned(), cells)
}

pub fn head(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| (*c).to_owned()).collect()
}

/// A table: first column labels, then one column per entry of `head`.
pub fn table(out: &mut String, head: &[String], rows: &[Row]) {
    let label_w = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for (_, cells) in rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let _ = write!(out, "  {:label_w$}", "");
    for (h, w) in head.iter().zip(&widths) {
        let _ = write!(out, " | {h:>w$}");
    }
    out.push('\n');
    let total = label_w + widths.iter().map(|w| w + 3).sum::<usize>();
    let _ = writeln!(out, "  {}", "-".repeat(total));
    for (label, cells) in rows {
        let _ = write!(out, "  {label:label_w$}");
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(out, " | {c:>w$}");
        }
        out.push('\n');
    }
}

/// The targets table: (what, target text, measured, verdict).
pub fn targets(out: &mut String, title: &str, rows: Vec<(String, String, String, &'static str)>) {
    let _ = writeln!(out, "\n{title}");
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(what, target, measured, v)| (what, vec![target, measured, v.to_owned()]))
        .collect();
    table(out, &head(&["target", "measured", "verdict"]), &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(Some(5.0), 5.0, false), "met");
        assert_eq!(verdict(Some(5.1), 5.0, false), "MISSED");
        assert_eq!(verdict(Some(999.0), 1000.0, true), "MISSED");
        assert_eq!(verdict(None, 1.0, true), "not measured");
    }

    #[test]
    fn table_aligns_columns() {
        let mut out = String::new();
        table(
            &mut out,
            &head(&["a", "bb"]),
            &[row("x", vec!["100".into(), "2".into()])],
        );
        assert_eq!(
            out,
            "         |   a | bb\n  -----------------\n  x      | 100 |  2\n"
        );
    }
}
