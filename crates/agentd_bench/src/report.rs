//! The printed report: a plain-text table per section (text turns per N, the big unknown event, the image
//! turn), the issue's targets with met/missed, and the Python reference figures from design.md beside ours.

use std::fmt::Write as _;

use crate::agentd::Mem;
use crate::compare;
use crate::phase::PhaseResult;
use crate::stats::diff;

/// What the run was.
pub struct Header {
    pub binary: String,
    pub database: String,
    pub event_delay_ms: u64,
    pub text_message: String,
    pub turns_per_client: usize,
}

/// Text turns at one concurrency.
pub struct TextRow {
    pub n: usize,
    pub direct: PhaseResult,
    pub agentd: Option<PhaseResult>,
}

/// The same single-client turn with and without the big unknown event, both ways.
pub struct BigEvent {
    pub mb: u32,
    pub direct_plain: PhaseResult,
    pub direct_big: PhaseResult,
    pub agentd_plain: Option<PhaseResult>,
    pub agentd_big: Option<PhaseResult>,
}

/// The image turn, both ways.
pub struct ImageTurn {
    pub message: String,
    pub direct: PhaseResult,
    pub agentd: Option<PhaseResult>,
}

pub struct Report {
    pub header: Header,
    pub idle: Option<Mem>,
    pub text: Vec<TextRow>,
    pub big: Option<BigEvent>,
    pub image: Option<ImageTurn>,
}

pub(crate) const MB: f64 = 1_000_000.0;

pub(crate) fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.decimals$}"))
}

pub(crate) fn pair(a: Option<f64>, b: Option<f64>, decimals: usize) -> String {
    format!("{} / {}", num(a, decimals), num(b, decimals))
}

pub(crate) fn mb(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / MB)
}

/// A table: first column labels, then one column per entry.
pub(crate) fn table(out: &mut String, head: &[String], rows: &[(String, Vec<String>)]) {
    let label_w = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let cols = head.len();
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for (_, cells) in rows {
        for (i, c) in cells.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
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

pub(crate) fn count(v: Option<usize>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |n| n.to_string())
}

type Cell<'a> = Box<dyn Fn(&TextRow) -> String + 'a>;

fn text_section(out: &mut String, rows: &[TextRow]) {
    let head: Vec<String> = rows.iter().map(|r| format!("N={}", r.n)).collect();
    let a = |r: &TextRow| r.agentd.clone().unwrap_or_default();
    let spec: Vec<(&str, Cell<'_>)> = vec![
        (
            "turns ok (agentd / direct)",
            Box::new(|r| format!("{} / {}", count(r.agentd.as_ref().map(|p| p.ok)), r.direct.ok)),
        ),
        (
            "errors (agentd / direct)",
            Box::new(|r| {
                format!(
                    "{} / {}",
                    count(r.agentd.as_ref().map(|p| p.errors)),
                    r.direct.errors
                )
            }),
        ),
        (
            "first event p50 ms (agentd / direct)",
            Box::new(|r| pair(a(r).started.p50(), r.direct.started.p50(), 2)),
        ),
        (
            "TTFE p50 ms (agentd / direct)",
            Box::new(|r| pair(a(r).first_delta.p50(), r.direct.first_delta.p50(), 2)),
        ),
        (
            "TTFE p99 ms (agentd / direct)",
            Box::new(|r| pair(a(r).first_delta.p99(), r.direct.first_delta.p99(), 2)),
        ),
        (
            "added TTFE p50 / p99 ms",
            Box::new(|r| {
                let (ag, d) = (a(r).first_delta, &r.direct.first_delta);
                pair(diff(ag.p50(), d.p50()), diff(ag.p99(), d.p99()), 2)
            }),
        ),
        (
            "TTLE p50 ms (agentd / direct)",
            Box::new(|r| pair(a(r).last.p50(), r.direct.last.p50(), 2)),
        ),
        (
            "TTLE p99 ms (agentd / direct)",
            Box::new(|r| pair(a(r).last.p99(), r.direct.last.p99(), 2)),
        ),
        (
            "added TTLE p50 / p99 ms",
            Box::new(|r| {
                let (ag, d) = (a(r).last, &r.direct.last);
                pair(diff(ag.p50(), d.p50()), diff(ag.p99(), d.p99()), 2)
            }),
        ),
        (
            "turns/s (agentd / direct)",
            Box::new(|r| pair(a(r).turns_per_sec(), r.direct.turns_per_sec(), 1)),
        ),
        (
            "agentd RSS peak, 50 ms samples (MB)",
            Box::new(|r| num(mb(a(r).rss_peak), 1)),
        ),
        (
            "agentd VmHWM after phase (MB)",
            Box::new(|r| {
                let p = a(r);
                format!(
                    "{}{}",
                    num(mb(p.hwm), 1),
                    if p.hwm.is_none() || p.hwm_was_reset {
                        ""
                    } else {
                        " (since start)"
                    }
                )
            }),
        ),
        (
            "agentd CPU ms / turn",
            Box::new(|r| num(a(r).cpu_ms_per_turn(), 2)),
        ),
        (
            "agentd DB files growth KB / turn (≈)",
            Box::new(|r| num(a(r).db_bytes_per_turn().map(|b| b / 1000.0), 1)),
        ),
        (
            "agentd contract deviations",
            Box::new(|r| count(r.agentd.as_ref().map(|p| p.protocol_issues as usize))),
        ),
    ];
    let table_rows: Vec<(String, Vec<String>)> = spec
        .iter()
        .map(|(label, f)| ((*label).to_owned(), rows.iter().map(f).collect()))
        .collect();
    table(out, &head, &table_rows);
}

fn errors_of(out: &mut String, label: &str, p: &PhaseResult) {
    for (msg, n) in &p.error_samples {
        let _ = writeln!(out, "  ! {label}: {n}× {msg}");
    }
}

fn big_section(out: &mut String, b: &BigEvent) -> Option<f64> {
    let ttle = |p: &PhaseResult| p.last.p50();
    let a_plain = b.agentd_plain.as_ref().and_then(ttle);
    let a_big = b.agentd_big.as_ref().and_then(ttle);
    let d_plain = ttle(&b.direct_plain);
    let d_big = ttle(&b.direct_big);
    let a_extra = diff(a_big, a_plain);
    let d_extra = diff(d_big, d_plain);
    let relayed = diff(a_extra, d_extra);
    let head = vec![
        "agentd".to_owned(),
        "direct".to_owned(),
        "agentd − direct".to_owned(),
    ];
    let rows = vec![
        (
            "TTLE p50 ms, plain turn".to_owned(),
            vec![num(a_plain, 2), num(d_plain, 2), num(diff(a_plain, d_plain), 2)],
        ),
        (
            format!("TTLE p50 ms, turn + {} MB event", b.mb),
            vec![num(a_big, 2), num(d_big, 2), num(diff(a_big, d_big), 2)],
        ),
        (
            "extra TTLE p50 ms from the event".to_owned(),
            vec![num(a_extra, 2), num(d_extra, 2), num(relayed, 2)],
        ),
        (
            "turns ok (plain / big)".to_owned(),
            vec![
                b.agentd_plain
                    .as_ref()
                    .zip(b.agentd_big.as_ref())
                    .map_or("n/a".to_owned(), |(p, g)| format!("{} / {}", p.ok, g.ok)),
                format!("{} / {}", b.direct_plain.ok, b.direct_big.ok),
                String::new(),
            ],
        ),
    ];
    table(out, &head, &rows);
    for (label, p) in [("agentd plain", &b.agentd_plain), ("agentd big", &b.agentd_big)] {
        if let Some(p) = p {
            errors_of(out, label, p);
        }
    }
    errors_of(out, "direct plain", &b.direct_plain);
    errors_of(out, "direct big", &b.direct_big);
    relayed
}

fn image_section(out: &mut String, im: &ImageTurn) {
    let a = im.agentd.clone().unwrap_or_default();
    let d = &im.direct;
    let head = vec![
        "agentd".to_owned(),
        "direct".to_owned(),
        "agentd − direct".to_owned(),
    ];
    let rows = vec![
        (
            "turns ok / errors".to_owned(),
            vec![
                format!("{} / {}", a.ok, a.errors),
                format!("{} / {}", d.ok, d.errors),
                String::new(),
            ],
        ),
        (
            "TTLE p50 ms".to_owned(),
            vec![
                num(a.last.p50(), 1),
                num(d.last.p50(), 1),
                num(diff(a.last.p50(), d.last.p50()), 1),
            ],
        ),
        (
            "TTLE p99 ms".to_owned(),
            vec![
                num(a.last.p99(), 1),
                num(d.last.p99(), 1),
                num(diff(a.last.p99(), d.last.p99()), 1),
            ],
        ),
        (
            "turns/s".to_owned(),
            vec![
                num(a.turns_per_sec(), 2),
                num(d.turns_per_sec(), 2),
                String::new(),
            ],
        ),
        (
            "MB streamed / turn".to_owned(),
            vec![
                num((a.ok > 0).then(|| a.bytes as f64 / MB / a.ok as f64), 2),
                num((d.ok > 0).then(|| d.bytes as f64 / MB / d.ok as f64), 2),
                String::new(),
            ],
        ),
        (
            "attachment / image.failed events".to_owned(),
            vec![
                format!("{} / {}", a.attachments, a.images_failed),
                String::new(),
                String::new(),
            ],
        ),
        (
            "agentd RSS peak / CPU ms per turn".to_owned(),
            vec![
                format!("{} MB / {}", num(mb(a.rss_peak), 1), num(a.cpu_ms_per_turn(), 1)),
                String::new(),
                String::new(),
            ],
        ),
        (
            "agentd DB files growth MB / turn (≈)".to_owned(),
            vec![
                num(a.db_bytes_per_turn().map(|b| b / MB), 3),
                String::new(),
                String::new(),
            ],
        ),
    ];
    table(out, &head, &rows);
    if let Some(p) = &im.agentd {
        errors_of(out, "agentd", p);
    }
    errors_of(out, "direct", d);
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
    let _ = writeln!(
        out,
        "  database: {}; storage: memory; fake per-event delay: {} ms",
        h.database, h.event_delay_ms
    );
    let _ = writeln!(
        out,
        "  text turn: {:?}, {} sequential turns per client",
        h.text_message, h.turns_per_client
    );
    let _ = writeln!(
        out,
        "  TTFE = first message.delta (direct: first response.output_text.delta); TTLE = terminal event;"
    );
    let _ = writeln!(
        out,
        "  added = agentd percentile − direct percentile; all times from request send, client side"
    );
    let _ = writeln!(out, "  agentd idle RSS: {} MB", num(mb(r.idle.map(|m| m.rss)), 1));
    out.push('\n');
    let _ = writeln!(out, "Text turns");
    text_section(&mut out, &r.text);
    for row in &r.text {
        if let Some(p) = &row.agentd {
            errors_of(&mut out, &format!("N={} agentd", row.n), p);
        }
        errors_of(&mut out, &format!("N={} direct", row.n), &row.direct);
    }
    let mut relayed = None;
    if let Some(b) = &r.big {
        let _ = writeln!(
            out,
            "\nOne client, {} MB single-line unknown upstream event (big-other={}) vs the same turn without it",
            b.mb, b.mb
        );
        relayed = big_section(&mut out, b);
    }
    if let Some(im) = &r.image {
        let _ = writeln!(
            out,
            "\nImage turn {:?} (agent designer; direct: same tool config)",
            im.message
        );
        image_section(&mut out, im);
        let _ = writeln!(
            out,
            "  (STORAGE_PROVIDER=memory: every stored image stays in agentd's RSS; DB growth = SQLite main + WAL)"
        );
    }

    compare::targets_section(&mut out, r, relayed);
    compare::python_section(&mut out, r);
    out
}
